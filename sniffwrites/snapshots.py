"""``--aggregate``'s interval look at files still open, for live and replay.

The kernel keeps the counts of an open file in its fd cache entry; a file
closed sends them in its Agg record, but one still open is seen only by
looking. Every interval, :meth:`Snapshots.take` reports the counts of each
watched file the pipeline knows to be open whose counts changed since the
last look. ``monitor`` looks in the live fd cache; ``record`` writes down
what it saw (:func:`fd_cache_view`) and ``report`` replays that through the
same :meth:`Snapshots.take`, so both print the same records.
"""

from typing import Any, Callable, Dict, Optional, Tuple

from .bpf.records import FILE_WATCHED
from .events import Aggregate

Counts = Tuple[int, int, int, int]
#: (pid, fd) -> (file id, counts) of that fd cache entry, or None
Lookup = Callable[[int, int], Optional[Tuple[int, Counts]]]


def counts_of(value: Any) -> Tuple[int, Counts]:
    """An fd cache value's file id and (reads, read bytes, writes, write bytes)."""
    return value.file_id, (value.reads, value.read_bytes, value.writes, value.write_bytes)


def fd_cache_view(fds: Any) -> Dict[Tuple[int, int], Tuple[int, Counts]]:
    """The watched entries of the live fd cache ``fds``: all a snapshot can use."""
    return {(key.tgid, key.fd): counts_of(value) for key, value in fds.items()
            if value.flags & FILE_WATCHED}


def comm_of_pid(pid: int) -> bytes:
    """A process's name for a snapshot (the kernel sent none)."""
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().rstrip(b"\n")
    except OSError:
        return b"?"


class Snapshots:
    """The counts last reported per open file, so that unchanged ones are not repeated."""

    def __init__(self):
        self._seen: Dict[Tuple[int, int, int], Counts] = {}

    def take(self, pipeline: Any, now: int, lookup: Lookup,
             comm: Callable[[int], bytes]) -> None:
        """Report (through ``pipeline``) the changed counts of the files it
        knows to be open, as ``lookup`` finds them at time ``now``."""
        seen = self._seen
        for (pid, fd), file_id in list(pipeline.open_files.items()):
            found = lookup(pid, fd)
            if found is None or found[0] != file_id:
                continue
            counts = found[1]
            if seen.get((pid, fd, file_id)) == counts:
                continue
            seen[(pid, fd, file_id)] = counts
            info, _ = pipeline.table.lookup(file_id, pid, fd)
            pipeline.report_aggregate(Aggregate(now, pid, pid, 0, 0, comm(pid), fd,
                                                info.path, *counts, False, info.truncated))
        live = set(pipeline.open_files.items())
        for key in list(seen):
            if ((key[0], key[1]), key[2]) not in live:
                del seen[key]
