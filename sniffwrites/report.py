"""``sniffwrites report FILE``: a recording, printed as ``monitor`` would have.

The records of a recording (:mod:`sniffwrites.recfile`) go through the
same :class:`~sniffwrites.pipeline.Pipeline`, :class:`~sniffwrites.output.Formatter`
and summary as live ones, with what the recording host knew: its clock
offset, its syscall names, the options the kernel side ran with. Loss
notices and ``--aggregate`` snapshots are replayed where they were taken,
so the output is line for line what ``monitor`` printed (``-f`` may choose
another format). Filters narrow it further, after the kernel's: they can
only take away. Unknown file ids are not looked up in this host's ``/proc``.
"""

import mmap
import os
from typing import Any, Callable, FrozenSet, List, NamedTuple, Optional, Tuple

from .config import Config
from .events import Lost
from .losses import LossAccount
from .output import Formatter
from .pipeline import Pipeline
from .recfile import (END, FILE, LOST, RING, SNAP, RecordingError, RecordingReader,
                      config_from_fields, frame_records)
from .sink import Sink
from .snapshots import Snapshots
from .summary import summary_counts, write_summary


class Batch(NamedTuple):
    """Records of one frame, lent to the pipeline as the ring reader lends them."""
    buffer: Any
    offsets: List[int]


class Filters(NamedTuple):
    """What ``report`` keeps: operations (events only), process name, pid, and
    paths under directories (absolute, normalised); empty: everything."""
    operations: FrozenSet[str] = frozenset()
    comm: Optional[bytes] = None
    pid: int = 0
    dirs: Tuple[bytes, ...] = ()

    def predicate(self) -> Optional[Callable[[Any], bool]]:
        """A test of an Event or Aggregate, or None when nothing is filtered."""
        if self == Filters():
            return None
        roots = tuple(d.rstrip(b"/") + b"/" for d in self.dirs)

        def wanted(item: Any) -> bool:
            if self.operations and hasattr(item, "op") and item.op not in self.operations:
                return False
            if self.comm is not None and item.comm != self.comm:
                return False
            if self.pid and item.pid != self.pid:
                return False
            return not roots or any(item.path.startswith(r) or item.path + b"/" == r
                                    for r in roots)
        return wanted


def report(path: str, fmt: Optional[str], filters: Filters, output: Optional[str],
           log: Callable[[str], None]) -> None:
    """Print the recording at ``path`` in ``fmt`` (None: the recorded
    one) to ``output`` (or stdout). The file is mapped, not read in. Raises :class:`RecordingError` for a file that cannot be read,
    after printing what came before the bad frame; a file cut short (no
    end) is printed up to its last whole record, then raises too."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size else b""
    reader = RecordingReader(path, data)
    header = reader.header
    fmt = fmt or header["options"]["fmt"]
    cfg: Config = config_from_fields(header["options"], fmt=fmt)
    formatter = Formatter(fmt, verbose=cfg.verbose or cfg.debug,
                          boot_to_wall_ns=header["boot_to_wall_ns"])
    sink = Sink(output)
    try:
        _replay(reader, cfg, formatter, filters, sink, log)
    finally:
        sink.close()


def _replay(reader: RecordingReader, cfg: Config, formatter: Formatter, filters: Filters,
            sink: Sink, log: Callable[[str], None]) -> None:
    header = reader.header
    syscalls = {int(nr): name for nr, name in header["syscalls"].items()}
    pipeline = Pipeline(cfg, formatter, sink.write_lines, syscalls, filters.predicate())
    pipeline.table.proc_fallback = False
    snapshots = Snapshots()
    min_size = header["min_record_size"]
    top = formatter.header()
    if top:
        sink.write_lines([top])
    losses: Optional[LossAccount] = None
    for frame in reader.frames():
        if frame.tag in (RING, FILE):
            offsets, _framed, problem = frame_records(frame.payload, min_size)
            if offsets:
                pipeline.handle(Batch(frame.payload, offsets))
            if problem and reader.cut_at is None:
                raise RecordingError(reader.path, frame.offset,
                                     "corrupt %s frame (%s)" % (frame.tag.decode(), problem))
        elif frame.tag == LOST:
            sink.write_lines([formatter.lost(Lost(**frame.payload))])
        elif frame.tag == SNAP:
            entries = {(e[0], e[1]): (e[2], tuple(e[3:])) for e in frame.payload["entries"]}
            comms = frame.payload["comms"]
            snapshots.take(pipeline, frame.payload["ts_ns"],
                           lambda pid, fd: entries.get((pid, fd)),
                           lambda pid: comms.get(str(pid), "?").encode("latin-1"))
        elif frame.tag == END:
            losses = LossAccount.restored(frame.payload)
    if losses is None:
        sink.flush()
        raise RecordingError(reader.path, reader.cut_at or 0,
                             "cut short (no end of recording); reported the whole records "
                             "before the partial frame")
    write_summary(summary_counts(pipeline, losses), formatter, sink.write_lines, log)
