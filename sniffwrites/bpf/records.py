"""What sniffwrites' kernel side sends to userspace, declared once for both sides.

Every record starts with a ``kind`` byte (``REC_*``). A file's path travels
once, in a :class:`FileRec` with a file id; the operations on it are small
fixed-size :class:`Io` records carrying that id, so that a read costs 80
bytes of ring, not a path. Strings that belong to one operation (the path
an open was given, the names of a rename or unlink) come as :class:`Text`
records just before its :class:`Io` record, from the same thread.
:class:`Agg` carries the counts ``--aggregate`` keeps in the kernel for one
open file; it is also the close event. A copy, splice or space change is
an :class:`IoExtent`: its Io (kind ``REC_EXTENT``) and an :class:`Extent`
(where in the file, the other end of a copy).

The kernel programs store to these declarations' field offsets; userspace
decodes with views derived from the same declarations
(:mod:`sniffwrites.views`). The flags and operation numbers here are the
only copy: both halves import them.
"""

from pybpf.dsl import Struct, char, s32, s64, u8, u16, u32, u64
from pybpf.programs.lib_paths import PATH_BUF, PATH_MAX

# kind, the first byte of every record
REC_IO, REC_FILE, REC_TEXT, REC_AGG, REC_EXTENT = 1, 2, 3, 4, 5
#: The kinds by name, as the ``emitted_*`` / ``dropped_*`` counters and the summary call them.
KIND_NAMES = {REC_IO: "io", REC_FILE: "file", REC_TEXT: "text", REC_AGG: "aggregate",
              REC_EXTENT: "extent"}

# Io.op / Agg (the operations, in the kernel's numbering)
(OP_OPEN, OP_READ, OP_WRITE, OP_CLOSE, OP_TRUNCATE, OP_RENAME, OP_UNLINK, OP_DUP,
 OP_FALLOCATE) = range(1, 10)
OP_NAMES = {OP_OPEN: "open", OP_READ: "read", OP_WRITE: "write", OP_CLOSE: "close",
            OP_TRUNCATE: "truncate", OP_RENAME: "rename", OP_UNLINK: "unlink", OP_DUP: "dup",
            OP_FALLOCATE: "fallocate"}

# Io.flags and Agg.flags
IO_IMPLICIT = 1     # a close nobody called: dup2/dup3 over the fd, close_range, exec, exit
IO_PATH_OP = 2      # path-based (truncate, rename, unlink): file_id is the start directory
IO_CAPTURE = 8      # cap_len bytes of data follow the record

# Text.which
TEXT_GIVEN, TEXT_NAME, TEXT_NEW_NAME = 0, 1, 2

# FileRec.flags, and the low byte of what the fd cache's walk returns
FILE_WATCHED = 1        # under a watched directory (or every file is reported)
FILE_TRUNCATED = 2      # the path lost its start (too long, or deeper than the level bound)
FILE_DELETED = 4        # the inode has no links left
FILE_PSEUDO = 8         # pipe, socket, anonymous inode: no path, a name
FILE_DIRECTORY = 16     # the walk was of a directory (start of a path-based operation)
FILE_UNCACHED = 64      # the fd cache was full: this id is used by one record only

#: --capture N is at most this many bytes.
CAPTURE_MAX = 4096

#: ``Io.aux`` is one u64 whose meaning depends on the operation; these are
#: its names, used by the kernel side (``emit_io(..., open_flags=...)``) and
#: by the userspace view (``io.open_flags``). Other operations leave it 0.
IO_AUX_MEANINGS = {
    OP_OPEN: "open_flags",      # the flags the file was opened with
    OP_TRUNCATE: "length",      # the new length
    OP_DUP: "source_fd",        # the fd that was duplicated
    OP_RENAME: "new_dir_id",    # file id of the directory the new name starts from
    OP_UNLINK: "unlink_flags",  # AT_REMOVEDIR for rmdir and unlinkat(AT_REMOVEDIR)
}


class Io(Struct):
    """One operation on a file (80 bytes)."""
    kind: u8            # REC_IO
    op: u8              # OP_*
    flags: u16          # IO_*
    pid: u32
    tid: u32
    ppid: u32
    uid: u32
    fd: s32
    ts: u64             # bpf_ktime_get_ns (CLOCK_MONOTONIC)
    ret: s64            # the syscall's return value (-errno when it failed)
    file_id: u64        # FileRec.file_id (0: none)
    aux: u64            # by operation: see IO_AUX_MEANINGS
    syscall: u32        # the syscall number
    cap_len: u32        # bytes of captured data after the record
    comm: char[16]


class Extent(Struct):
    """What an :class:`IoExtent` adds to its Io: where in the file, and the
    other end of a copy."""
    peer_id: u64        # copies: FileRec.file_id of the other end (0: none)
    offset: s64         # the offset given (-1: the file position was used)
    length: u64         # fallocate: the length of the range
    mode: u64           # fallocate: its FALLOC_FL_* mode flags


class IoExtent(Struct):
    """A copy or splice end (op read or write) or a fallocate (112 bytes)."""
    io: Io              # io.kind is REC_EXTENT
    extent: Extent


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
    """A closing file: its close event and, with ``--aggregate``, its counts."""
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


class FileRec(Struct):
    """A file's identity and path, sent once per tracked file. Only the
    first ``header + path_len`` bytes go to the ring."""
    kind: u8            # REC_FILE
    pad0: u8
    flags: u16          # FILE_*
    pid: u32
    tid: u32
    fd: s32
    file_id: u64
    ino: u64
    magic: u64
    dev: u32
    mode: u32
    nlink: u32
    watched: u32        # index + 1 of the watched directory, 0 if none
    open_flags: u32
    path_len: u32       # bytes of path, no NUL
    path: char[PATH_BUF]


#: Bytes of a FileRec before its path.
FILE_HEADER = FileRec.layout.fields["path"].offset
#: Bytes of a Text before its string.
TEXT_HEADER = Text.layout.fields["text"].offset


class Watched(Struct):
    """Key of the ``watched`` map: a directory as the kernel sees it (s_dev
    is ``major << 20 | minor``, not userspace's st_dev)."""
    dev: u32
    pad: u32
    ino: u64


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
    """Per-CPU counts of what could not be done, for the loss report, and
    of every record the programs sent or dropped, by kind (``emitted_*``,
    ``dropped_*``: the exact account, ``received + dropped == emitted``;
    the ring's own lost counter, ``events_lost``, is the total of drops)."""
    fd_map_full: u64            # fd cache inserts that failed: the file is walked again each time
    proc_map_full: u64          # per-process entries that could not be made (cleanup at exit)
    walk_failed: u64            # an fd that had no file when walked (closed under us)
    sweep_incomplete: u64       # an exit/exec/close_range sweep that hit its bound
    aggregate_untracked: u64    # --aggregate reads/writes not counted: no cache entry for the fd
    emitted_io: u64             # records the programs tried to send, by kind (KIND_NAMES)
    emitted_file: u64
    emitted_text: u64
    emitted_aggregate: u64
    emitted_extent: u64
    dropped_io: u64             # ... and those the ring had no room for
    dropped_file: u64
    dropped_text: u64
    dropped_aggregate: u64
    dropped_extent: u64


class ProcInfo(Struct):
    """Per process: the highest fd cached, which bounds the sweeps at exec and exit."""
    max_fd: u32
