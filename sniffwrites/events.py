"""What sniffwrites reports: file events, loss notices and the exit summary.

These are the userspace records, after the kernel's records were decoded
and their file references resolved to paths. Their JSON form (one object per
line) is the documented, stable schema; see :data:`EVENT_FIELDS`.
"""

import errno as _errno
from typing import NamedTuple, Optional

# The operations, as named in every output format.
OPEN, READ, WRITE, CLOSE = "open", "read", "write", "close"
TRUNCATE, RENAME, UNLINK = "truncate", "rename", "unlink"
OPERATIONS = (OPEN, READ, WRITE, CLOSE, TRUNCATE, RENAME, UNLINK)

#: JSON keys of a file event, in output order. ``bytes`` is the count moved
#: (reads/writes), ``ret`` the syscall's return value, ``errno`` its error
#: name when it failed (only reported with ``--failed``).
EVENT_FIELDS = ("ts_ns", "op", "pid", "tid", "ppid", "uid", "comm", "fd", "path", "bytes",
                "ret", "errno", "flags")


class Event(NamedTuple):
    """One file operation.

    ``path`` is the file's absolute, canonical path from the kernel.
    ``given_path`` (opens) is the path as the process passed it; ``new_path``
    (renames) the destination. ``truncated`` says the path was longer than
    the kernel walk's bound and was cut at its start; ``deleted`` that the
    file had no name left (unlinked while open). ``data`` holds the first
    bytes moved with ``--capture``.
    """

    ts_ns: int
    op: str
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    fd: int
    path: bytes
    bytes: Optional[int]
    ret: int
    flags: int = 0
    given_path: Optional[bytes] = None
    new_path: Optional[bytes] = None
    truncated: bool = False
    deleted: bool = False
    data: Optional[bytes] = None

    @property
    def errno(self) -> Optional[str]:
        """``ENOENT``-style name of a failed call's error, else None."""
        if self.ret >= 0:
            return None
        return _errno.errorcode.get(-self.ret, "E%d" % -self.ret)


class Aggregate(NamedTuple):
    """Counts for one open file, kept in the kernel (``--aggregate``) and
    reported when it is closed or at each interval."""

    ts_ns: int
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    fd: int
    path: bytes
    reads: int
    read_bytes: int
    writes: int
    write_bytes: int
    closed: bool


class Lost(NamedTuple):
    """Records the kernel could not deliver since the last notice.

    ``ring`` counts records dropped because the ring buffer was full;
    ``map_full`` counts files whose tracking entry could not be inserted.
    """

    ts_ns: int
    ring: int
    map_full: int
