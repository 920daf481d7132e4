"""What sniffwrites reports: file events, loss notices and the exit summary.

These are the userspace records, after the kernel's records were decoded
and their file references resolved to paths. Their JSON form (one object per
line) is the documented, stable schema; new keys may be added, none removed
or renamed. Every line has ``"type"``:

``"event"`` — one file operation. Always the keys of :data:`EVENT_FIELDS`,
in that order:

* ``ts_ns``: wall-clock time, ns since the epoch (the kernel's monotonic
  clock plus the offset measured at start);
* ``op``: open, read, write, close, truncate, rename, unlink or fallocate
  (a copy or splice is a ``write`` on its destination and a ``read`` on its
  source, each end reported when it is watched);
* ``pid`` (process, tgid), ``tid`` (thread), ``ppid``, ``uid``, ``comm``;
* ``fd``: the descriptor (-1 for path-based operations: truncate(2),
  rename, unlink, a failed open);
* ``path``: absolute, canonical, from the kernel's dentries (``pipe:[ino]``,
  ``socket:[ino]``, ``anon_inode:[name]`` for files without one; relative to
  the process's root under chroot);
* ``bytes``: bytes moved by a read or write (the return value; for a
  copy, the bytes copied), the new length for truncate, the length of the
  range for fallocate, else null;
* ``ret``: the syscall's return value; ``errno``: its name when it failed
  (failed calls only with ``--failed``), else null;
* ``flags``: the open flags (opens), else 0.

Then, only when they apply: ``given_path`` (opens: the path as the process
passed it), ``new_path`` (rename), ``truncated`` (true: the path is longer
than PATH_MAX and is its tail), ``deleted`` (true: unlinked when walked),
``data`` (``--capture``: the first bytes, escaped), ``syscall`` (its name:
``pread64``, ``openat2``), ``implicit`` (true: a close nobody called: dup2
or dup3 over the fd, close_range, exec of a close-on-exec fd, process exit),
``debug`` (``--debug``: the kernel's raw facts), ``peer_path`` (copies
and splices: the other end's path, when it is a file, watched or not),
``offset`` (copies: the offset given, absent when the file position was
used; fallocate: where the range starts), ``length`` (fallocate: the
range's length), ``mode`` (fallocate: its mode flags as a list of names,
:data:`FALLOCATE_MODES`, ``[]`` for a plain allocation).

Bytes stored through a shared writable ``mmap`` and io_uring requests are
not syscalls on the file and are not reported.

``"aggregate"`` — ``--aggregate``: counts of one open file (:class:`Aggregate`),
``closed`` false at each interval, true once when it is closed.

``"lost"`` — records the kernel could not deliver since the last notice:
``ring`` (ring buffer full), ``map_full`` (files the fd cache could not hold).

``"summary"`` — the last line: ``events``, ``op_<name>`` per operation,
``aggregate``, ``lost_records``, ``map_full``, ``walk_failed``,
``sweep_incomplete``, ``aggregate_untracked``, ``unresolved_files``.
"""

import errno as _errno
from typing import NamedTuple, Optional, Tuple

# The operations, as named in every output format.
OPEN, READ, WRITE, CLOSE = "open", "read", "write", "close"
TRUNCATE, RENAME, UNLINK, FALLOCATE = "truncate", "rename", "unlink", "fallocate"
OPERATIONS = (OPEN, READ, WRITE, CLOSE, TRUNCATE, RENAME, UNLINK, FALLOCATE)

# include/uapi/linux/falloc.h
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_NO_HIDE_STALE = 0x04
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_UNSHARE_RANGE = 0x40
FALLOC_FL_WRITE_ZEROES = 0x80
#: fallocate's mode bits, as the ``mode`` key names them.
FALLOCATE_MODES = ((FALLOC_FL_KEEP_SIZE, "keep_size"), (FALLOC_FL_PUNCH_HOLE, "punch_hole"),
                   (FALLOC_FL_NO_HIDE_STALE, "no_hide_stale"),
                   (FALLOC_FL_COLLAPSE_RANGE, "collapse_range"),
                   (FALLOC_FL_ZERO_RANGE, "zero_range"), (FALLOC_FL_INSERT_RANGE, "insert_range"),
                   (FALLOC_FL_UNSHARE_RANGE, "unshare_range"),
                   (FALLOC_FL_WRITE_ZEROES, "write_zeroes"))


def fallocate_mode(mode: int) -> Tuple[str, ...]:
    """The names of fallocate's ``mode`` bits (unknown ones in hex).

    >>> fallocate_mode(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)
    ('keep_size', 'punch_hole')
    """
    names = tuple(name for bit, name in FALLOCATE_MODES if mode & bit)
    rest = mode & ~sum(bit for bit, _ in FALLOCATE_MODES)
    return names + ("%#x" % rest,) if rest else names

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
    peer_path: Optional[bytes] = None   # a copy's other end, when it is a file
    offset: Optional[int] = None        # copies (when given) and fallocate
    length: Optional[int] = None        # fallocate
    mode: Optional[Tuple[str, ...]] = None  # fallocate: names of its mode flags

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
