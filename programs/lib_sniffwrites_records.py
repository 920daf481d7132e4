"""What sniffwrites' kernel side sends to userspace, declared once for both sides.

Every record starts with a ``kind`` byte. A file's path travels once, in a
:class:`~pybpf.programs.lib_sniffwrites_walk.FileRec` with a file id; the
operations on it are small fixed-size :class:`Io` records carrying that id,
so that a read costs 80 bytes of ring, not a path. Strings that belong to
one operation (the path an open was given, the names of a rename or
unlink) come as :class:`Text` records just before its :class:`Io` record,
from the same thread. :class:`Agg` carries the counts ``--aggregate`` keeps
in the kernel for one open file.

Userspace decodes these with the fast struct decoder built from these same
declarations (:mod:`sniffwrites.decode`).
"""

from pybpf.dsl import Struct, char, s32, s64, u8, u16, u32, u64

from .lib_sniffwrites_walk import PATH_MAX

# kind, the first byte of every record
REC_IO, REC_FILE, REC_TEXT, REC_AGG = 1, 2, 3, 4

# Io.op / Agg (the operations, in the kernel's numbering)
OP_OPEN, OP_READ, OP_WRITE, OP_CLOSE, OP_TRUNCATE, OP_RENAME, OP_UNLINK, OP_DUP = range(1, 9)
OP_NAMES = {OP_OPEN: "open", OP_READ: "read", OP_WRITE: "write", OP_CLOSE: "close",
            OP_TRUNCATE: "truncate", OP_RENAME: "rename", OP_UNLINK: "unlink", OP_DUP: "dup"}

# Io.flags
IO_IMPLICIT = 1     # a close nobody called: dup2/dup3 over the fd, close_range, exec, exit
IO_PATH_OP = 2      # path-based (truncate, rename, unlink): file_id is the start directory
IO_CAPTURE = 8      # cap_len bytes of data follow the record

# Text.which
TEXT_GIVEN, TEXT_NAME, TEXT_NEW_NAME = 0, 1, 2

#: --capture N is at most this many bytes.
CAPTURE_MAX = 4096


class Io(Struct):
    """One operation on a file (80 bytes)."""
    kind: u8            # REC_IO
    op: u8              # OP_*
    flags: u16         # IO_*
    pid: u32
    tid: u32
    ppid: u32
    uid: u32
    fd: s32
    ts: u64             # bpf_ktime_get_ns (CLOCK_MONOTONIC)
    ret: s64            # the syscall's return value (-errno when it failed)
    file_id: u64        # FileRec.file_id (0: none)
    aux: u64            # open: flags; truncate: length; dup: the copied file id;
                        # rename: the destination's start directory id
    syscall: u32        # the syscall number
    cap_len: u32        # bytes of captured data after the record
    comm: char[16]


class IoCapture(Struct):
    """An :class:`Io` with the first bytes a read or write moved (``--capture``)."""
    io: Io
    data: u8[CAPTURE_MAX]


class Text(Struct):
    """A string for the next Io record of thread ``tid``. Only the first
    ``header + length`` bytes go to the ring."""
    kind: u8            # REC_TEXT
    which: u8           # TEXT_*
    truncated: u8       # the user's string went on past PATH_MAX
    pad: u8
    tid: u32
    length: s32         # bytes with the NUL, as bpf_probe_read_user_str returned
    pad2: u32
    text: char[PATH_MAX]


class Agg(Struct):
    """Counts for one open file (``--aggregate``), sent when it is closed."""
    kind: u8            # REC_AGG
    op: u8
    flags: u16          # IO_IMPLICIT when closed implicitly
    pid: u32
    tid: u32
    ppid: u32
    uid: u32
    fd: s32
    ts: u64
    file_id: u64
    reads: u64
    read_bytes: u64
    writes: u64
    write_bytes: u64
    comm: char[16]


class FdInfo(Struct):
    """Value of the fd cache: what the walk found for (tgid, fd), and the
    counts kept for it with --aggregate."""
    file_id: u64
    flags: u32          # FILE_* (FILE_WATCHED: report operations on it)
    watched: u32        # index + 1 of the watched directory
    reads: u64
    read_bytes: u64
    writes: u64
    write_bytes: u64


class FdKey(Struct):
    tgid: u32
    fd: u32


class Counters(Struct):
    """Per-CPU counts of what could not be done, for the loss report."""
    fd_map_full: u64        # fd cache inserts that failed: the file is walked again each time
    proc_map_full: u64      # per-process entries that could not be made (cleanup at exit)
    walk_failed: u64        # an fd that had no file when walked (closed under us)
    sweep_incomplete: u64   # an exit/exec/close_range sweep that hit its bound
    text_lost: u64          # strings that did not fit the ring
    agg_lost: u64           # aggregate records that did not fit the ring


class ProcInfo(Struct):
    """Per process: the highest fd cached, which bounds the sweeps at exec and exit."""
    max_fd: u32
    watched: u32            # watched files tracked (sweeps emit closes only if any)


def sizes():
    """Sizes userspace checks against (records are read by length)."""
    return {name: cls.layout.size for name, cls in
            (("Io", Io), ("Agg", Agg), ("Text", Text), ("FdInfo", FdInfo))}
