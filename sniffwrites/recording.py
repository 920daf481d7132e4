"""``sniffwrites record``: the kernel's records to a file, formatted later.

Formatting a record in Python costs microseconds; copying it costs
nanoseconds. :class:`Recorder` is a :class:`~sniffwrites.monitor.Monitor`
whose reader lends each batch to :meth:`RecordFile.write_lease` instead of
the pipeline: the batch's stretch of the ring (one or two, see
:func:`~sniffwrites.recfile.ring_stretches`) goes to the file as it is, in
one write each, with no look at the records but their kind byte (counted,
for the exact account, and FileRecs kept for a SIGHUP's new file). Loss
notices, ``--aggregate``'s looks at the fd cache and the kernel's counters
at the end go in line (:mod:`sniffwrites.recfile`); ``sniffwrites report``
turns the file into what ``monitor`` would have printed.

* SIGHUP starts a new file at the same path (move the old one away first,
  as logrotate does), self-describing again, with the FileRecs of the
  files still open in the fd cache, so it can be reported on its own.
* ``--max-size BYTES`` stops the recording (as ``--duration`` does: detach,
  drain, end) once the file has reached that size; the drain can add up to
  the ring's size, and nothing is ever dropped to keep to it.
* The file follows the output-file rules: :func:`~pybpf.safe_files.open_output_file`.
"""

import io
import os
import platform
import socket
import struct
import time
from operator import itemgetter
from typing import Any, Callable, Dict, List

from pybpf import __version__
from pybpf.kernel.ringbuf import BPF_RINGBUF_HDR_SZ
from pybpf.safe_files import open_output_file

from .bpf.fdcache import fds as fd_cache
from .bpf.records import KIND_NAMES, REC_FILE, FileRec
from .bpf.syscalls import syscall_names
from .config import Config
from .events import Lost
from .losses import balance_text
from .monitor import Monitor
from .recfile import END, FILE, LOST, RING, SNAP, Writer, config_fields, ring_stretches
from .snapshots import comm_of_pid, fd_cache_view
from .views import MIN_RECORD_SIZE

_FILE_ID = FileRec.layout.fields["file_id"].offset
_U64 = struct.Struct("<Q")
#: Kept FileRecs (for a SIGHUP's new file) beyond which those of closed files are dropped.
KEEP_FILES_MIN = 1 << 12


def host_facts() -> Dict[str, Any]:
    """Where the recording was made."""
    uname = platform.uname()
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        boot_id = None
    return {"hostname": socket.gethostname(), "system": uname.system,
            "release": uname.release, "version": uname.version, "machine": uname.machine,
            "boot_id": boot_id, "cpus": os.cpu_count(), "page_size": os.sysconf("SC_PAGESIZE"),
            "sniffwrites": __version__, "pid": os.getpid()}


class RecordFile:
    """The recording being written: where the Recorder's reader lends its
    batches. :meth:`start` opens it; ``header`` makes the header of each
    new file, ``carry`` the FileRecs a new file starts with."""

    def __init__(self, path: str):
        self.path = path
        self._header: Callable[[], Dict[str, Any]] = dict
        self.carry: Callable[[Dict[int, bytes]], List[bytes]] = lambda kept: []
        self.received = dict.fromkeys(KIND_NAMES.values(), 0)     # records, by kind name
        self.records = 0
        self.bytes_total = 0            # over every file of this run
        self._kept: Dict[int, bytes] = {}
        self._prune_at = KEEP_FILES_MIN
        self.writer = Writer(io.BytesIO())      # until start()

    def start(self, header: Callable[[], Dict[str, Any]]) -> None:
        """Open the file (refusing what another user could redirect) and write the header."""
        self._header = header
        self.writer = self._open()

    def _open(self) -> Writer:
        fd = open_output_file(self.path, truncate=True)
        try:
            writer = Writer(io.open(fd, "wb", buffering=1 << 20))
        except BaseException:
            os.close(fd)
            raise
        writer.start(self._header())
        return writer

    @property
    def size(self) -> int:
        """Bytes of the current file."""
        return self.writer.size

    def write_lease(self, lease: Any) -> None:
        """A batch of the ring, as it is: counted by kind, copied in bulk."""
        buffer, offsets = lease.buffer, lease.offsets
        kinds = bytes(itemgetter(*offsets)(buffer)) if len(offsets) > 1 \
            else bytes((buffer[offsets[0]],))
        self.records += len(offsets)
        for kind, name in KIND_NAMES.items():
            self.received[name] += kinds.count(kind)
        if REC_FILE in kinds:
            self._keep_files(buffer, offsets, kinds)
        writer = self.writer
        for start, end in ring_stretches(buffer, offsets):
            writer.frame(RING, buffer[start:end])

    def _keep_files(self, buffer: Any, offsets: List[int], kinds: bytes) -> None:
        at = kinds.find(REC_FILE)
        while at >= 0:
            offset = offsets[at]
            start, end = ring_stretches(buffer, [offset])[0]
            file_id, = _U64.unpack_from(buffer, offset + _FILE_ID)
            self._kept[file_id] = bytes(buffer[start:end])
            at = kinds.find(REC_FILE, at + 1)

    def prune(self, live: Callable[[], set]) -> None:
        """Forget the FileRecs of files no fd holds any more (``live``: the
        file ids in the fd cache), once they are many: twice as many as
        after the last pruning, so that many open files do not make every
        interval walk the cache."""
        if len(self._kept) >= self._prune_at:
            ids = live()
            self._kept = {i: rec for i, rec in self._kept.items() if i in ids}
            self._prune_at = max(KEEP_FILES_MIN, 2 * len(self._kept))

    def json(self, tag: bytes, value: Any) -> None:
        self.writer.json(tag, value)

    def flush(self) -> None:
        self.writer.stream.flush()

    def reopen(self) -> None:
        """SIGHUP: end this file and start a new one at the path."""
        self.close()
        self.writer = self._open()
        carried = self.carry(self._kept)
        if carried:
            self.writer.frame(FILE, b"".join(carried))

    def close(self) -> None:
        stream = self.writer.stream
        if not stream.closed:
            self.bytes_total += self.writer.size
            stream.close()


class Recorder(Monitor):
    """One run of ``record``: the monitor's kernel side and loop, the
    batches to a :class:`RecordFile`."""

    def __init__(self, cfg: Config, path: str, max_size: int = 0, log=None):
        self.file = RecordFile(path)
        super().__init__(cfg, self.file, log=log)
        self.file.start(self._header)
        self.file.carry = self._carry
        self.max_size = max_size
        self.handler = self._record

    def _header(self) -> Dict[str, Any]:
        return {"options": config_fields(self.cfg), "boot_to_wall_ns": self.formatter.offset,
                "syscalls": {str(nr): name for nr, name in syscall_names().items()},
                "min_record_size": MIN_RECORD_SIZE, "ring_header": BPF_RINGBUF_HDR_SZ,
                "started_wall_ns": time.time_ns(), "host": host_facts()}

    def _record(self, lease: Any) -> None:
        self.file.write_lease(lease)
        if self.max_size and self.file.size >= self.max_size:
            self.request_stop("max-size")

    def begin(self) -> None:
        """The header is written when the file is opened."""

    def _cache(self) -> Any:
        return None if self._collection is None else self._collection.maps[fd_cache.name]

    def _carry(self, kept: Dict[int, bytes]) -> List[bytes]:
        """A kept FileRec for each fd of the cache that refers to it."""
        fds = self._cache()
        if fds is None:
            return []
        return [kept[value.file_id] for value in fds.values() if value.file_id in kept]

    def tick(self) -> None:
        super().tick()
        fds = self._cache()
        if fds is not None:
            self.file.prune(lambda: {value.file_id for value in fds.values()})

    def write_lost(self, lost: Lost) -> None:
        """A loss notice, in line."""
        self.file.json(LOST, lost._asdict())

    def _snapshot(self) -> None:
        """--aggregate: what a snapshot needs of the fd cache, for report to take it."""
        fds = self._cache()
        if fds is None:
            return
        now = time.monotonic_ns()
        view = fd_cache_view(fds)
        self.file.json(SNAP, {
            "ts_ns": now,
            "entries": [[pid, fd, file_id] + list(counts)
                        for (pid, fd), (file_id, counts) in view.items()],
            "comms": {str(pid): comm_of_pid(pid).decode("latin-1")
                      for pid in {pid for pid, _fd in view}}})

    def write_summary(self) -> None:
        """The kernel's counters to the file's end; one line on stderr."""
        self.file.json(END, dict(self.losses.state(), exit_reason=self.exit_reason))
        balance = self.losses.balance(self.file.received)
        self.log("recorded %d records to %s (%d bytes); %s" % (
            self.file.records, self.file.path, self.file.bytes_total + self.file.size,
            balance_text(balance)))

