"""Kernel records -> events -> lines: the ring reader's handler.

One straight path per record, in the order the kernel wrote them:
:meth:`Pipeline.handle` gets a :class:`~pybpf.kernel.reader.Lease` (records
in place in the ring), reads each as its kind's view
(:mod:`sniffwrites.views`), resolves file ids and the names of path-based
operations (:mod:`sniffwrites.resolve`), applies what filtering could not
run in the kernel (the final path of a path-based operation), builds an
:class:`~sniffwrites.events.Event` or :class:`~sniffwrites.events.Aggregate`,
formats it (:class:`~sniffwrites.output.Formatter`) and, at the end of the
batch, hands the lines to ``write`` (the sink). It counts what it reported
for the summary and touches no kernel object.

The hot path (:meth:`Pipeline.handle`'s first branch) is a successful read
or write in JSON whose record matches one seen before in everything but
its time and result (same file, process, thread, fd, syscall, comm): one
``unpack_from`` of :data:`~sniffwrites.views.IO_HOT`, one dict lookup and a
``%`` of three integers into that record's line template.
"""

from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

from .bpf.records import (FILE_DIRECTORY, FILE_PSEUDO, FILE_UNCACHED, FILE_WATCHED, IO_CAPTURE,
                          IO_IMPLICIT, IO_PATH_OP, KIND_NAMES, OP_CLOSE, OP_DUP, OP_FALLOCATE,
                          OP_NAMES, OP_OPEN, OP_READ, OP_RENAME, OP_TRUNCATE, OP_WRITE, REC_AGG,
                          REC_EXTENT, REC_FILE, REC_IO, REC_TEXT, TEXT_GIVEN, TEXT_NAME,
                          TEXT_NEW_NAME)
from .config import Config
from .events import Aggregate, Event, fallocate_mode
from .output import Formatter
from .resolve import FileInfo, FileTable, Names
from .views import (IO_HOT, agg_view, captured, comm_of, extent_view, file_view, io_view,
                    text_view)

#: Templates kept by the hot path at most (then forgotten, counts kept).
HOT_MAX = 1 << 16
Write = Callable[[List[str]], None]


class Pipeline:
    """The handler of the ring reader: records in, lines out through ``write``."""

    def __init__(self, cfg: Config, formatter: Formatter, write: Write,
                 syscall_names: Optional[Dict[int, str]] = None,
                 wanted: Optional[Callable[[Any], bool]] = None):
        """``wanted``: a filter of events and aggregates after the kernel's
        (``report``'s filters); only what it keeps is formatted and counted."""
        self.cfg = cfg
        self.fmt = formatter
        self.write = write
        self.table = FileTable()
        self.names = Names(self.table)
        self.syscalls = syscall_names or {}
        self.records = 0                       # records handled
        self.dropped_outside = 0               # path operations that ended outside the dirs
        self.unknown_kind = 0
        self._kinds: Counter = Counter()       # records received by kind, but Io (see received)
        #: open watched files: (pid, fd) -> file id (for --aggregate snapshots)
        self.open_files: Dict[Tuple[int, int], int] = {}
        self._ops: Counter = Counter()         # events reported, by operation (slow path)
        self._comms: Dict[bytes, bytes] = {}
        #: the hot path: (Io bytes but time and result) -> [line template, op, count]
        self._hot: Dict[Tuple[bytes, bytes], list] = {}
        self._wanted = wanted
        self._hot_ok = formatter.fmt == "json" and not cfg.debug and wanted is None
        self._on_event: Optional[Callable[[Any], None]] = None

    # -- the reader's handler -------------------------------------------------------------

    def handle(self, lease: Any) -> None:
        """Handle the records of ``lease`` (``buffer``, ``offsets``) and write
        the lines they make, in order."""
        buffer, offsets = lease.buffer, lease.offsets
        self.records += len(offsets)
        split = IO_HOT.unpack_from
        hot = self._hot
        lines: List[str] = []
        append = lines.append
        offset_ns = self.fmt.offset
        for at in offsets:
            kind = buffer[at]
            if kind == REC_IO:
                head, ts, ret, tail = split(buffer, at)
                if ret >= 0:
                    entry = hot.get((head, tail))
                    if entry is not None:
                        append(entry[0] % (ts + offset_ns, ret, ret))
                        entry[2] += 1
                        continue
                self._io(io_view(buffer, at), buffer, at, lines)
            elif kind == REC_FILE:
                self._kinds[kind] += 1
                self._file(file_view(buffer, at))
            elif kind == REC_TEXT:
                self._kinds[kind] += 1
                self.names.add(text_view(buffer, at))
            elif kind == REC_AGG:
                self._kinds[kind] += 1
                self._agg(agg_view(buffer, at), lines)
            elif kind == REC_EXTENT:
                self._kinds[kind] += 1
                self._extent(extent_view(buffer, at), lines)
            else:
                self.unknown_kind += 1
        if lines:
            self.write(lines)

    @property
    def received(self) -> Dict[str, int]:
        """Records handled, by kind name (Io records are the rest: the hot
        path does not stop to count them); ``unknown`` for kinds not declared."""
        counts = {KIND_NAMES[kind]: n for kind, n in self._kinds.items()}
        counts[KIND_NAMES[REC_IO]] = self.records - sum(self._kinds.values()) - self.unknown_kind
        if self.unknown_kind:
            counts["unknown"] = self.unknown_kind
        return counts

    def feed(self, views: List[Any]) -> None:
        """Handle records given as separate buffers (tests, replay)."""
        for record in views:
            self.handle(_Single(record))

    # -- events ---------------------------------------------------------------------------

    @property
    def on_event(self) -> Optional[Callable[[Any], None]]:
        """Called with every Event and Aggregate (``top`` listens here)."""
        return self._on_event

    @on_event.setter
    def on_event(self, callback: Optional[Callable[[Any], None]]) -> None:
        self._on_event = callback
        if callback is not None:
            self._hot_ok = False       # every event must go through the callback
            self._fold_hot()

    def _report(self, event: Event, lines: List[str]) -> None:
        if self._wanted is not None and not self._wanted(event):
            return
        self._ops[event.op] += 1
        lines.append(self.fmt.event(event))
        if self._on_event is not None:
            self._on_event(event)

    def _io(self, io: Any, buffer: Any, at: int, lines: List[str]) -> None:
        table = self.table
        op = io.op
        if op == OP_DUP:
            table.ref(io.file_id)
            if self.cfg.aggregate and io.file_id in table.files:
                self.open_files[(io.pid, io.fd)] = io.file_id
            return
        given = new_path = None
        truncated = deleted = False
        if io.flags & IO_PATH_OP:
            texts = self.names.take(io.tid)
            path, given, truncated = self.names.path_op_name(
                texts, io.file_id, TEXT_GIVEN if op == OP_OPEN else TEXT_NAME)
            if op == OP_RENAME:
                new_path, _, cut = self.names.path_op_name(texts, io.new_dir_id, TEXT_NEW_NAME)
                truncated = truncated or cut
            if path is None or not self._wanted_path(path, new_path):
                self.dropped_outside += 1
                return
            if op != OP_OPEN:
                given = None
        else:
            info = self._file_of(io)
            path, truncated, deleted = info.path, info.truncated, info.deleted
            if op == OP_OPEN:
                given = self.names.given(io.tid)
        if op == OP_READ or op == OP_WRITE:
            moved = io.ret if io.ret >= 0 else None
        elif op == OP_TRUNCATE:
            moved = io.length
        else:
            moved = None
        event = Event(io.ts, OP_NAMES.get(op, str(op)), io.pid, io.tid, io.ppid, io.uid,
                      self._comm(io.comm), io.fd, path, moved, io.ret,
                      io.open_flags if op == OP_OPEN else 0, given, new_path, truncated,
                      deleted, captured(buffer, at, io) if io.flags & IO_CAPTURE else None,
                      self.syscalls.get(io.syscall), bool(io.flags & IO_IMPLICIT),
                      self._debug(io, io.file_id) if self.cfg.debug else None)
        self._report(event, lines)
        if self._hot_ok and (op == OP_READ or op == OP_WRITE) and io.ret >= 0 and io.flags == 0:
            self._keep_template(event, io.file_id, buffer, at)
        if op == OP_CLOSE:
            table.release(io.file_id)
            self.open_files.pop((io.pid, io.fd), None)
        elif not io.flags & IO_PATH_OP:
            self._used_once(io.file_id)

    def _file_of(self, io: Any) -> FileInfo:
        """The file an Io record's ``file_id`` names."""
        info = self.table.files.get(io.file_id)
        if info is None:
            info, _ = self.table.lookup(io.file_id, io.pid, io.fd)
        return info

    def _extent(self, io: Any, lines: List[str]) -> None:
        """A copy's end (read or write, with the other end as ``peer_path``)
        or a fallocate (offset, length, mode)."""
        info = self._file_of(io)
        peer = self.table.files.get(io.peer_id) if io.peer_id else None
        self._used_once(io.peer_id)
        fallocate = io.op == OP_FALLOCATE
        if fallocate:
            moved: Optional[int] = io.length
        else:
            moved = io.ret if io.ret >= 0 else None
        event = Event(io.ts, OP_NAMES.get(io.op, str(io.op)), io.pid, io.tid, io.ppid, io.uid,
                      self._comm(io.comm), io.fd, info.path, moved, io.ret,
                      truncated=info.truncated, deleted=info.deleted,
                      syscall=self.syscalls.get(io.syscall),
                      debug=self._debug(io, io.file_id) if self.cfg.debug else None,
                      peer_path=None if peer is None or peer.flags & FILE_PSEUDO else peer.path,
                      offset=io.offset if io.offset >= 0 else None,
                      length=io.length if fallocate else None,
                      mode=fallocate_mode(io.mode) if fallocate else None)
        self._report(event, lines)
        self._used_once(io.file_id)

    def _keep_template(self, event: Event, file_id: int, buffer: Any, at: int) -> None:
        """The line template of a successful read or write of a file the
        table keeps, for the next records like this one (see :meth:`handle`)."""
        info = self.table.files.get(file_id)
        if info is None or info.flags & FILE_UNCACHED:
            return
        if len(self._hot) >= HOT_MAX:
            self._fold_hot()
        head, _ts, _ret, tail = IO_HOT.unpack_from(buffer, at)
        self._hot[(head, tail)] = [self.fmt.json_template(event), event.op, 0]

    def _fold_hot(self) -> None:
        """Forget the templates (bounding memory), keeping their counts."""
        for _template, op, n in self._hot.values():
            self._ops[op] += n
        self._hot.clear()

    @property
    def ops(self) -> Counter:
        """Events reported, by operation."""
        counts = Counter(self._ops)
        for _template, op, n in self._hot.values():
            counts[op] += n
        return counts

    def _file(self, rec: Any) -> None:
        self.table.add(rec.file_id, rec.flags, rec.dev, rec.ino, rec.magic, rec.mode,
                       rec.watched, rec.path)
        if rec.flags & FILE_UNCACHED:
            return      # used by the next record only (see _used_once)
        if self.cfg.aggregate and rec.flags & FILE_WATCHED and rec.fd >= 0 and \
                not rec.flags & FILE_DIRECTORY:
            self.open_files[(rec.pid, rec.fd)] = rec.file_id

    def _comm(self, raw: bytes) -> bytes:
        comm = self._comms.get(raw)
        if comm is None:
            comm = self._comms[raw] = comm_of(raw)
        return comm

    def _used_once(self, file_id: int) -> None:
        """A file walked while the fd cache was full has an id per record."""
        info = self.table.files.get(file_id)
        if info is not None and info.flags & FILE_UNCACHED:
            self.table.pop(file_id)

    def _wanted_path(self, path: bytes, new_path: Optional[bytes]) -> bool:
        cfg = self.cfg
        if cfg.debug or not cfg.dirs:
            return True
        return cfg.inside(path) or (new_path is not None and cfg.inside(new_path))

    def _agg(self, agg: Any, lines: List[str]) -> None:
        """A closing file's record: its close event, or with --aggregate its counts."""
        info = self.table.files.get(agg.file_id)
        if info is None:
            info, _ = self.table.lookup(agg.file_id, agg.pid, agg.fd)
        if self.cfg.aggregate:
            self._aggregate(Aggregate(agg.ts, agg.pid, agg.tid, agg.ppid, agg.uid,
                                      self._comm(agg.comm), agg.fd, info.path, agg.reads,
                                      agg.read_bytes, agg.writes, agg.write_bytes, True,
                                      info.truncated), lines)
        elif "close" in self.cfg.operations or self.cfg.debug:
            implicit = bool(agg.flags & IO_IMPLICIT)
            self._report(Event(agg.ts, "close", agg.pid, agg.tid, agg.ppid, agg.uid,
                               self._comm(agg.comm), agg.fd, info.path, None, 0, 0, None, None,
                               info.truncated, info.deleted, None,
                               None if implicit else "close", implicit,
                               self._debug(agg, agg.file_id) if self.cfg.debug else None),
                         lines)
        self.table.release(agg.file_id)
        self.open_files.pop((agg.pid, agg.fd), None)

    def _aggregate(self, agg: Aggregate, lines: List[str]) -> None:
        if self._wanted is not None and not self._wanted(agg):
            return
        self._ops["aggregate"] += 1
        lines.append(self.fmt.aggregate(agg))
        if self._on_event is not None:
            self._on_event(agg)

    def report_aggregate(self, agg: Aggregate) -> None:
        """An aggregate snapshot of a file still open (made by the monitor)."""
        lines: List[str] = []
        self._aggregate(agg, lines)
        self.write(lines)

    def _debug(self, record: Any, file_id: int) -> str:
        info: Optional[FileInfo] = self.table.files.get(file_id)
        parts = ["file_id=%#x" % file_id, "kflags=%#x" % record.flags]
        if hasattr(record, "syscall"):
            parts.append("syscall_nr=%d" % record.syscall)
        if info is not None:
            parts += ["watched=%d" % info.watched, "dev=%d:%d" % (info.dev >> 20,
                                                               info.dev & 0xFFFFF),
                      "ino=%d" % info.ino, "fileflags=%#x" % info.flags,
                      "in_dirs=%s" % ("yes" if self.cfg.inside(info.path) else "no")]
        return " ".join(parts)


class _Single:
    """A lease of one record in a buffer of its own (:meth:`Pipeline.feed`)."""

    __slots__ = ("buffer", "offsets")

    def __init__(self, record: Any):
        self.buffer = record
        self.offsets = [0]
