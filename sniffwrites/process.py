"""Kernel records -> events -> output lines: everything between the ring and the sink.

:class:`Processor` is the ring reader's decoder
(:meth:`Processor.decode_from`: records are handled in place, by offset,
while the ring still holds them; tests call :meth:`Processor.feed` with
records built in memory). It keeps the file table
(:mod:`sniffwrites.resolve`) and the strings waiting for their operation,
applies what filtering could not run in the kernel (the final path of a
path-based operation), formats, and counts what it saw for the summary. It
touches no kernel object.
"""

import struct
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

from sniffwrites.bpf import records

from .config import Config
from .decode import AGG_STRUCT, FILE_STRUCT, IO_STRUCT, TEXT_STRUCT, comm_of
from .events import Aggregate, Event
from .output import Formatter
from .resolve import (FILE_DIRECTORY, FILE_UNCACHED, FILE_WATCHED, FileInfo, FileTable,
                      join_path)

_AT_START = [0]
#: An Io record as (the bytes before ts, ts, ret, the bytes after ret): the
#: hot path's key is everything but the time and the result.
_IO_SPLIT = struct.Struct("<24sQq40s")
assert (records.Io.layout.fields["ts"].offset, records.Io.layout.fields["ret"].offset,
        records.Io.layout.size) == (24, 32, 80), "Io changed: update _IO_SPLIT"
_HOT_MAX = 1 << 16
_NOTHING: List[Any] = []

REC_IO, REC_FILE, REC_TEXT, REC_AGG = (records.REC_IO, records.REC_FILE, records.REC_TEXT,
                                       records.REC_AGG)
OP_NAMES = records.OP_NAMES
OP_OPEN, OP_READ, OP_WRITE, OP_CLOSE, OP_TRUNCATE, OP_RENAME, OP_DUP = (
    records.OP_OPEN, records.OP_READ, records.OP_WRITE, records.OP_CLOSE, records.OP_TRUNCATE,
    records.OP_RENAME, records.OP_DUP)
IO_IMPLICIT, IO_PATH_OP, IO_CAPTURE = records.IO_IMPLICIT, records.IO_PATH_OP, records.IO_CAPTURE
TEXT_GIVEN, TEXT_NAME, TEXT_NEW_NAME = records.TEXT_GIVEN, records.TEXT_NAME, records.TEXT_NEW_NAME


class Processor:
    """Turns record payloads into output lines (``self.lines``, taken by
    the caller after each batch)."""

    def __init__(self, cfg: Config, formatter: Formatter,
                 syscall_names: Optional[Dict[int, str]] = None):
        self.cfg = cfg
        self.fmt = formatter
        self.table = FileTable()
        self.syscalls = syscall_names or {}
        self.lines: List[str] = []
        self._ops: Counter = Counter()         # events reported, by operation (slow path)
        self._op_counts = [0] * (max(OP_NAMES) + 1)   # ... and by the hot path
        self.records = 0                       # records decoded
        self.dropped_outside = 0               # path operations that ended outside the dirs
        self.unknown_kind = 0
        #: open watched files: (pid, fd) -> file id (for --aggregate snapshots)
        self.open_files: Dict[Tuple[int, int], int] = {}
        self._texts: Dict[int, Dict[int, Tuple[bytes, bool]]] = {}
        self._comms: Dict[bytes, bytes] = {}
        #: the JSON hot path for reads and writes, when nothing else wants to
        #: see each event: (record bytes but time and result) -> [line
        #: template, op, count] (see decode_from)
        self._hot: Dict[Tuple[bytes, bytes], list] = {}
        self._hot_ok = formatter.fmt == "json" and not cfg.debug
        self._on_event: Optional[Callable[[Any], None]] = None

    # -- records --------------------------------------------------------------------------

    def feed(self, views: List[Any]) -> None:
        """Decode and handle a batch of record payloads (memoryviews)."""
        for view in views:
            self.decode_from(view, _AT_START, None)

    # The reader's decoder protocol (pybpf.kernel.records.RecordDecoder):
    # records are handled where they lie in the ring, no view per record.
    size = TEXT_STRUCT.size

    def decode_from(self, buffer: Any, offsets: List[int], payloads: Any) -> List[Any]:
        """Handle the records at ``offsets`` in ``buffer``; the lines they
        make go to ``self.lines``. Returns nothing for the reader to keep.

        The hot path: a successful read or write whose record matches one
        seen before in everything but its time and result (same file,
        process, thread, fd, syscall, comm) is one dict lookup and a
        ``%`` of three integers into that record's line template."""
        self.records += len(offsets)
        split = _IO_SPLIT.unpack_from
        hot = self._hot
        lines = self.lines
        offset_ns = self.fmt.offset
        for at in offsets:
            kind = buffer[at]
            if kind == REC_IO:
                head, ts, ret, tail = split(buffer, at)
                if ret >= 0:
                    entry = hot.get((head, tail))
                    if entry is not None:
                        lines.append(entry[0] % (ts + offset_ns, ret, ret))
                        entry[2] += 1
                        continue
                t = IO_STRUCT.unpack_from(buffer, at)
                if not self._hot_line(t, buffer, at):
                    self._io(t, buffer, at)
            elif kind == REC_FILE:
                self._file(buffer, at)
            elif kind == REC_TEXT:
                self._text(buffer, at)
            elif kind == REC_AGG:
                self._agg(AGG_STRUCT.unpack_from(buffer, at))
            else:
                self.unknown_kind += 1
        return _NOTHING

    def _hot_line(self, t: tuple, buffer: Any, at: int) -> bool:
        """A JSON read/write line through the template of its kind of
        record (made here the first time); False if it is not that kind."""
        op = t[1]
        if not self._hot_ok or t[2] != 0 or t[9] < 0 or (op != OP_READ and op != OP_WRITE):
            return False
        info = self.table.files.get(t[10])
        if info is None or info.flags & FILE_UNCACHED:
            return False
        template = self.fmt.json_io_template(
            OP_NAMES[op], t[3], t[4], t[5], t[6], comm_of(t[14]), t[7], info.path,
            info.truncated, info.deleted, self.syscalls.get(t[12], ""))
        hot = self._hot
        if len(hot) >= _HOT_MAX:
            self._fold_hot()
        head, _ts, _ret, tail = _IO_SPLIT.unpack_from(buffer, at)
        hot[(head, tail)] = [template, op, 1]
        self.lines.append(template % (t[8] + self.fmt.offset, t[9], t[9]))
        return True

    def _fold_hot(self) -> None:
        """Forget the templates (bounding memory), keeping their counts."""
        for _template, op, n in self._hot.values():
            self._op_counts[op] += n
        self._hot.clear()

    @property
    def ops(self) -> Counter:
        """Events reported, by operation."""
        counts = Counter(self._ops)
        totals = list(self._op_counts)
        for _template, op, n in self._hot.values():
            totals[op] += n
        for op, n in enumerate(totals):
            if n:
                counts[OP_NAMES[op]] += n
        return counts

    def _file(self, buffer: Any, at: int) -> None:
        (_kind, _pad, flags, pid, _tid, fd, file_id, ino, magic, dev, mode, _nlink, watched,
         _open_flags, path_len) = FILE_STRUCT.unpack_from(buffer, at)
        start = at + FILE_STRUCT.size
        path = bytes(buffer[start:start + path_len])
        self.table.add(file_id, flags, dev, ino, magic, mode, watched, path)
        if flags & FILE_UNCACHED:
            return      # used by the next record only (see _used_once)
        if self.cfg.aggregate and flags & FILE_WATCHED and fd >= 0 and \
                not flags & FILE_DIRECTORY:
            self.open_files[(pid, fd)] = file_id

    def _text(self, buffer: Any, at: int) -> None:
        _kind, which, truncated, _pad, tid, length, _pad2 = TEXT_STRUCT.unpack_from(buffer, at)
        start = at + TEXT_STRUCT.size
        text = bytes(buffer[start:start + max(length - 1, 0)]) if length > 0 else b""
        self._texts.setdefault(tid, {})[which] = (text, bool(truncated))

    def _comm(self, raw: bytes) -> bytes:
        comm = self._comms.get(raw)
        if comm is None:
            comm = self._comms[raw] = comm_of(raw)
        return comm

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

    def _io(self, t: tuple, buffer: Any, at: int) -> None:
        (_kind, op, flags, pid, tid, ppid, uid, fd, ts, ret, file_id, aux, nr, cap_len,
         comm) = t
        table = self.table
        if op == OP_DUP:
            table.ref(file_id)
            if self.cfg.aggregate and file_id in table.files:
                self.open_files[(pid, fd)] = file_id
            return
        given = new_path = None
        truncated = deleted = False
        if flags & IO_PATH_OP:
            texts = self._texts.pop(tid, {})
            path, given, truncated = self._path_op_name(texts, file_id, TEXT_GIVEN
                                                        if op == OP_OPEN else TEXT_NAME)
            if op == OP_RENAME:
                new_path, _, cut = self._path_op_name(texts, aux, TEXT_NEW_NAME)
                truncated = truncated or cut
            if path is None or not self._wanted_path(path, new_path):
                self.dropped_outside += 1
                return
            if op != OP_OPEN:
                given = None
        else:
            info = table.files.get(file_id)
            if info is None:
                info, _ = table.lookup(file_id, pid, fd)
            path = info.path
            truncated = info.truncated
            deleted = info.deleted
            if op == OP_OPEN:
                texts = self._texts.pop(tid, None)
                if texts and TEXT_GIVEN in texts:
                    given = texts[TEXT_GIVEN][0]
        data = None
        if flags & IO_CAPTURE:
            start = at + IO_STRUCT.size
            data = bytes(buffer[start:start + cap_len])
        if op == OP_READ or op == OP_WRITE:
            moved = ret if ret >= 0 else None
        elif op == OP_TRUNCATE:
            moved = aux          # the new length
        else:
            moved = None
        name = OP_NAMES.get(op, str(op))
        event = Event(ts, name, pid, tid, ppid, uid, self._comm(comm), fd, path, moved, ret,
                      aux if op == OP_OPEN else 0, given, new_path, truncated, deleted, data,
                      self.syscalls.get(nr), bool(flags & IO_IMPLICIT),
                      self._debug(t, file_id) if self.cfg.debug else None)
        self._ops[name] += 1
        self.lines.append(self.fmt.event(event))
        if self.on_event is not None:
            self.on_event(event)
        if op == OP_CLOSE:
            self._release(file_id)
            self.open_files.pop((pid, fd), None)
        elif not flags & IO_PATH_OP:
            self._used_once(file_id)

    def _used_once(self, file_id: int) -> None:
        """A file walked while the fd cache was full has an id per record."""
        info = self.table.files.get(file_id)
        if info is not None and info.flags & FILE_UNCACHED:
            self.table.pop(file_id)

    def _path_op_name(self, texts: Dict[int, Tuple[bytes, bool]], dir_id: int,
                      which: int) -> Tuple[Optional[bytes], Optional[bytes], bool]:
        """(absolute path, name as given, truncated) of one name of a
        path-based operation: the name joined to the walked start directory."""
        name, cut = texts.get(which, (None, False))
        if name is None:
            return None, None, False
        directory = self.table.pop(dir_id) if dir_id else None
        if name.startswith(b"/"):
            return join_path(b"/", name), name, cut
        if directory is None:
            return None, name, cut
        return join_path(directory.path, name), name, cut or directory.truncated

    def _wanted_path(self, path: bytes, new_path: Optional[bytes]) -> bool:
        cfg = self.cfg
        if cfg.debug or not cfg.dirs:
            return True
        return cfg.inside(path) or (new_path is not None and cfg.inside(new_path))

    def _agg(self, t: tuple) -> None:
        """A closing file's record: its close event, or with --aggregate its counts."""
        (_kind, _op, flags, pid, tid, ppid, uid, fd, ts, file_id, reads, read_bytes, writes,
         write_bytes, comm) = t
        info = self.table.files.get(file_id)
        if info is None:
            info, _ = self.table.lookup(file_id, pid, fd)
        if self.cfg.aggregate:
            self.emit_aggregate(Aggregate(ts, pid, tid, ppid, uid, self._comm(comm), fd,
                                          info.path, reads, read_bytes, writes, write_bytes,
                                          True, info.truncated))
        elif "close" in self.cfg.operations or self.cfg.debug:
            event = Event(ts, "close", pid, tid, ppid, uid, self._comm(comm), fd, info.path,
                          None, 0, 0, None, None, info.truncated, info.deleted, None,
                          None if flags & IO_IMPLICIT else "close", bool(flags & IO_IMPLICIT),
                          self._debug(t, file_id) if self.cfg.debug else None)
            self._ops["close"] += 1
            self.lines.append(self.fmt.event(event))
            if self.on_event is not None:
                self.on_event(event)
        self._release(file_id)
        self.open_files.pop((pid, fd), None)

    def _release(self, file_id: int) -> None:
        self.table.release(file_id)

    def emit_aggregate(self, agg: Aggregate) -> None:
        self._ops["aggregate"] += 1
        self.lines.append(self.fmt.aggregate(agg))
        if self.on_event is not None:
            self.on_event(agg)

    def _debug(self, t: tuple, file_id: int) -> str:
        info: Optional[FileInfo] = self.table.files.get(file_id)
        parts = ["file_id=%#x" % file_id, "kflags=%#x" % t[2], "syscall_nr=%d" % t[12]]
        if info is not None:
            parts += ["watched=%d" % info.watched, "dev=%d:%d" % (info.dev >> 20,
                                                               info.dev & 0xFFFFF),
                      "ino=%d" % info.ino, "fileflags=%#x" % info.flags,
                      "in_dirs=%s" % ("yes" if self.cfg.inside(info.path) else "no")]
        return " ".join(parts)

    def take_lines(self) -> List[str]:
        lines, self.lines = self.lines, []
        return lines
