"""What sniffwrites reports: file events, loss notices and the exit summary.

These are the userspace records, after the kernel's records were decoded
and their file references resolved to paths. Their JSON form (one object per
line) is the documented, stable schema; new keys may be added, none removed
or renamed. Every line has ``"type"``:

``"event"`` — one file operation. Always the keys of :data:`EVENT_FIELDS`,
in that order:

* ``ts_ns``: wall-clock time, ns since the epoch (the kernel's monotonic
  clock plus the offset measured at start);
* ``op``: open, read, write, close, truncate, rename or unlink;
* ``pid`` (process, tgid), ``tid`` (thread), ``ppid``, ``uid``, ``comm``;
* ``fd``: the descriptor (-1 for path-based operations: truncate(2),
  rename, unlink, a failed open);
* ``path``: absolute, canonical, from the kernel's dentries (``pipe:[ino]``,
  ``socket:[ino]``, ``anon_inode:[name]`` for files without one; relative to
  the process's root under chroot);
* ``bytes``: bytes moved by a read or write (the return value), the new
  length for truncate, else null;
* ``ret``: the syscall's return value; ``errno``: its name when it failed
  (failed calls only with ``--failed``), else null;
* ``flags``: the open flags (opens), else 0.

Then, only when they apply: ``given_path`` (opens: the path as the process
passed it), ``new_path`` (rename), ``truncated`` (true: the path is longer
than PATH_MAX and is its tail), ``deleted`` (true: unlinked when walked),
``data`` (``--capture``: the first bytes, escaped), ``syscall`` (its name:
``pread64``, ``openat2``), ``implicit`` (true: a close nobody called: dup2
or dup3 over the fd, close_range, exec of a close-on-exec fd, process exit),
``debug`` (``--debug``: the kernel's raw facts).

``"aggregate"`` — ``--aggregate``: counts of one open file (:class:`Aggregate`),
``closed`` false at each interval, true once when it is closed.

``"lost"`` — records the kernel could not deliver since the last notice:
``ring`` (ring buffer full), ``map_full`` (files the fd cache could not hold).

``"summary"`` — the last line: ``events``, ``op_<name>`` per operation,
``aggregate``, ``lost_records``, ``map_full``, ``walk_failed``,
``sweep_incomplete``, ``aggregate_untracked``, ``unresolved_files``.
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
    syscall: Optional[str] = None   # the syscall's name (``pread64``, ``openat2``)
    implicit: bool = False          # a close nobody called (dup2 over it, close_range, exec, exit)
    debug: Optional[str] = None     # --debug: the raw kernel facts, as text

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
    truncated: bool = False


class Lost(NamedTuple):
    """Records the kernel could not deliver since the last notice.

    ``ring`` counts records dropped because the ring buffer was full;
    ``map_full`` counts files whose tracking entry could not be inserted.
    """

    ts_ns: int
    ring: int
    map_full: int
