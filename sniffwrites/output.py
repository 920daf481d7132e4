"""Formatting events as text, a table, or JSON Lines.

This is the hottest userspace path after decoding: every event is formatted
once. Names (paths, comms) recur, so their escaped and JSON-quoted forms are
cached; the rest is plain string formatting, not ``json.dumps`` per event.
One :class:`Formatter` per format; for JSON, :meth:`Formatter.json_template`
is the one writer of an event line (the pipeline's hot path reuses its
templates).

Every name goes through :func:`sniffwrites.escape.display`: control
characters and invalid UTF-8 are escaped, so one event is one line.
"""

import json
import time
from functools import lru_cache
from typing import Callable, Dict, List, Optional

from .escape import display
from .events import READ, Aggregate, Event, Lost

FORMATS = ("text", "table", "json")


@lru_cache(maxsize=65536)
def _json_name(name: bytes) -> str:
    return json.dumps(display(name), ensure_ascii=False)


@lru_cache(maxsize=65536)
def _json_literal(name: bytes) -> str:
    """:func:`_json_name` for a ``%`` template (``%`` doubled)."""
    return _json_name(name).replace("%", "%%")


def _clock(ts_ns: int, boot_to_wall_ns: int) -> str:
    """``HH:MM:SS.micro`` local time of a kernel (boot clock) timestamp."""
    wall = (ts_ns + boot_to_wall_ns) / 1e9
    return time.strftime("%H:%M:%S", time.localtime(wall)) + ".%06d" % (wall % 1 * 1e6)


def boot_to_wall_offset() -> int:
    """Add to a ``bpf_ktime_get_ns`` (CLOCK_MONOTONIC) time to get wall time."""
    return time.time_ns() - time.monotonic_ns()


class Formatter:
    """Turns records into lines (without the newline). ``verbose`` adds the
    open flags and, for opens, the path as the process gave it."""

    def __init__(self, fmt: str, *, verbose: bool = False, boot_to_wall_ns: Optional[int] = None):
        if fmt not in FORMATS:
            raise ValueError("unknown format %r (choose from %s)" % (fmt, ", ".join(FORMATS)))
        self.fmt = fmt
        self.verbose = verbose
        self.offset = boot_to_wall_offset() if boot_to_wall_ns is None else boot_to_wall_ns
        self._event: Callable[[Event], str] = getattr(self, "_%s_event" % fmt)
        self._aggregate: Callable[[Aggregate], str] = getattr(self, "_%s_aggregate" % fmt)

    def header(self) -> Optional[str]:
        if self.fmt != "table":
            return None
        return "%-15s %-9s %7s %7s %-16s %4s %10s  %s" % (
            "TIME", "OP", "PID", "TID", "COMM", "FD", "BYTES", "PATH")

    def event(self, ev: Event) -> str:
        return self._event(ev)

    def aggregate(self, agg: Aggregate) -> str:
        return self._aggregate(agg)

    def lost(self, lost: Lost) -> str:
        if self.fmt == "json":
            return '{"type": "lost", "ts_ns": %d, "ring": %d, "map_full": %d}' % (
                lost.ts_ns + self.offset, lost.ring, lost.map_full)
        return "%s LOST %d records (ring buffer full), %d files untracked (map full)" % (
            _clock(lost.ts_ns, self.offset), lost.ring, lost.map_full)

    def summary(self, counts: Dict[str, int]) -> str:
        if self.fmt == "json":
            return json.dumps(dict(type="summary", **counts), sort_keys=True)
        return "sniffwrites: " + ", ".join("%s %d" % (k.replace("_", " "), v)
                                           for k, v in sorted(counts.items()))

    # -- text ------------------------------------------------------------------------

    def _detail(self, ev: Event) -> str:
        parts = []
        if ev.bytes is not None and ev.ret >= 0:
            parts.append("%d bytes" % ev.bytes)
        if ev.ret < 0:
            parts.append("failed %s" % ev.errno)
        if ev.new_path is not None:
            parts.append("-> %s" % display(ev.new_path))
        parts.extend(self._extent(ev))
        if ev.truncated:
            parts.append("[path truncated]")
        if ev.deleted:
            parts.append("[deleted]")
        if ev.implicit:
            parts.append("(implicit)")
        if self.verbose:
            if ev.syscall is not None:
                parts.append("syscall=%s" % ev.syscall)
            parts.append("flags=%#o" % ev.flags)
            if ev.given_path is not None:
                parts.append("as %s" % display(ev.given_path))
        if ev.data is not None:
            parts.append("data=%s" % display(ev.data))
        if ev.debug is not None:
            parts.append("[DEBUG %s]" % ev.debug)
        return "  " + " ".join(parts) if parts else ""

    @staticmethod
    def _extent(ev: Event) -> List[str]:
        """A copy's other end and offset, a fallocate's range and mode."""
        parts = []
        if ev.peer_path is not None:
            parts.append("%s %s" % ("to" if ev.op == READ else "from", display(ev.peer_path)))
        if ev.offset is not None:
            parts.append("offset=%d" % ev.offset)
        if ev.length is not None:
            parts.append("length=%d" % ev.length)
        if ev.mode is not None:
            parts.append("mode=%s" % ("|".join(ev.mode) or "0"))
        return parts

    def _text_event(self, ev: Event) -> str:
        return "%s %s pid=%d tid=%d ppid=%d uid=%d comm=%s fd=%d %s%s" % (
            _clock(ev.ts_ns, self.offset), ev.op, ev.pid, ev.tid, ev.ppid, ev.uid,
            display(ev.comm), ev.fd, display(ev.path), self._detail(ev))

    def _table_event(self, ev: Event) -> str:
        moved = "" if ev.bytes is None else str(ev.bytes)
        if ev.ret < 0:
            moved = ev.errno or ""
        extent = self._extent(ev)
        return "%-15s %-9s %7d %7d %-16s %4d %10s  %s%s%s%s" % (
            _clock(ev.ts_ns, self.offset), ev.op, ev.pid, ev.tid, display(ev.comm), ev.fd,
            moved, display(ev.path),
            "" if ev.new_path is None else " -> " + display(ev.new_path),
            " [truncated]" if ev.truncated else " [deleted]" if ev.deleted else "",
            "  " + " ".join(extent) if extent else "")

    def _json_event(self, ev: Event) -> str:
        return self.json_template(ev) % (ev.ts_ns + self.offset,
                                         "null" if ev.bytes is None else ev.bytes, ev.ret)

    def json_template(self, ev: Event) -> str:
        """The JSON line of ``ev`` with its time, bytes and result left as
        ``%d``, ``%s`` and ``%d`` (ts_ns on the wall clock, bytes as a
        number or ``null``). The one JSON writer of events: the pipeline
        keeps the template of a successful read or write and makes each
        later one like it with a single ``%``."""
        line = ('{"type": "event", "ts_ns": %%d, "op": "%s", "pid": %d, "tid": %d, "ppid": %d, '
                '"uid": %d, "comm": %s, "fd": %d, "path": %s, "bytes": %%s, "ret": %%d, '
                '"errno": %s, "flags": %d' % (
                    ev.op, ev.pid, ev.tid, ev.ppid, ev.uid, _json_literal(ev.comm), ev.fd,
                    _json_literal(ev.path), "null" if ev.ret >= 0 else '"%s"' % ev.errno,
                    ev.flags))
        if ev.given_path is not None:
            line += ', "given_path": ' + _json_literal(ev.given_path)
        if ev.new_path is not None:
            line += ', "new_path": ' + _json_literal(ev.new_path)
        if ev.truncated:
            line += ', "truncated": true'
        if ev.deleted:
            line += ', "deleted": true'
        if ev.data is not None:
            line += ', "data": ' + _json_literal(ev.data)
        if ev.syscall is not None:
            line += ', "syscall": "%s"' % ev.syscall
        if ev.implicit:
            line += ', "implicit": true'
        if ev.debug is not None:
            line += ', "debug": ' + json.dumps(ev.debug).replace("%", "%%")
        if ev.peer_path is not None:
            line += ', "peer_path": ' + _json_literal(ev.peer_path)
        if ev.offset is not None:
            line += ', "offset": %d' % ev.offset
        if ev.length is not None:
            line += ', "length": %d' % ev.length
        if ev.mode is not None:
            line += ', "mode": [%s]' % ", ".join('"%s"' % name for name in ev.mode)
        return line + "}"

    # -- aggregates ------------------------------------------------------------------

    def _text_aggregate(self, agg: Aggregate) -> str:
        return "%s %s pid=%d comm=%s fd=%d %s  reads=%d (%d bytes) writes=%d (%d bytes)" % (
            _clock(agg.ts_ns, self.offset), "closed" if agg.closed else "open",
            agg.pid, display(agg.comm), agg.fd, display(agg.path), agg.reads, agg.read_bytes,
            agg.writes, agg.write_bytes)

    def _table_aggregate(self, agg: Aggregate) -> str:
        return "%-15s %-9s %7d %7d %-16s %4d %10d  %s" % (
            _clock(agg.ts_ns, self.offset), "total", agg.pid, agg.tid, display(agg.comm),
            agg.fd, agg.read_bytes + agg.write_bytes, display(agg.path))

    def _json_aggregate(self, agg: Aggregate) -> str:
        return ('{"type": "aggregate", "ts_ns": %d, "pid": %d, "tid": %d, "ppid": %d, '
                '"uid": %d, "comm": %s, "fd": %d, "path": %s, "reads": %d, "read_bytes": %d, '
                '"writes": %d, "write_bytes": %d, "closed": %s}' % (
                    agg.ts_ns + self.offset, agg.pid, agg.tid, agg.ppid, agg.uid,
                    _json_name(agg.comm), agg.fd, _json_name(agg.path), agg.reads,
                    agg.read_bytes, agg.writes, agg.write_bytes,
                    "true" if agg.closed else "false"))
