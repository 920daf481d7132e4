"""From an fd to its file's canonical path, in the kernel: sniffwrites' walk.

``task->files->fdt->fd[fd]`` is the ``struct file``; its ``f_path`` is a
(vfsmount, dentry) pair. Walking ``dentry->d_parent`` up to the root,
crossing to the parent mount at each mount root (``struct mount`` holds the
``vfsmount`` as member ``mnt``; ``mnt_mountpoint`` and ``mnt_parent`` lead
up), gives the same path as ``readlink(/proc/PID/fd/FD)`` and, on the way,
every ancestor's (device, inode): that is the directory filter. Members are
read at this kernel's BTF offsets (``p.fetch``, kernel pointers of
:mod:`pybpf.dsl.kernel_memory`); ``file_of_fd`` is
:func:`pybpf.programs.lib_paths.file_of_fd`.

Two passes, both ``bpf_loop`` callbacks (verified once, however deep the
path), with their state in per-CPU map memory rather than in verifier-tracked
registers (see KERNEL_NOTES.md: two exact loop counters blow the verifier's
budget):

1. :func:`walk_step`, per level: one read of the dentry's parent, name and
   inode, one read of the inode number, one lookup in ``watched`` (until an
   ancestor matched); the name's address and length are only remembered.
2. :func:`compose_step`, only for a file that will be reported: the names
   are copied top-down into the record, cut at the *start* when the whole
   path would pass PATH_MAX (then ``FILE_TRUNCATED`` is set). A path is never
   cut silently.

The walk stops at the process's root (``task->fs->root``: chroot), at the
global root (a mount that is its own parent), or at a dentry that is its own
parent without being a mount root: a pipe, socket or anonymous inode
(``FILE_PSEUDO``: userspace names it ``pipe:[ino]`` from the superblock
magic). A file whose inode has no links left is ``FILE_DELETED``.

No locks are taken: a rename racing with the walk can tear a path (the
result is still a string of real names, bounded, and safe to read).
"""

from pybpf.dsl import (HashMap, KernelPtr, PerCPUArray, Struct, char, s32, s64, subprogram, u8,
                       u16, u32, u64)
from pybpf.dsl.values import as_value

PATH_MAX = 4096
NAME_MAX = 255
#: Components remembered by pass 1: a path that fits PATH_MAX has at most
#: 2048 ("/a" repeated), so nothing that fits is ever cut for want of slots.
MAX_COMPONENTS = 2048
#: Levels pass 1 climbs at most (a path deeper than this is reported cut).
MAX_LEVELS = 8192
#: The path buffer: PATH_MAX plus room for the last name copy the verifier
#: must see fit (the offset is masked to PATH_MAX - 1, the size to 2 * 256).
PATH_BUF = PATH_MAX + 2 * 256

# FileRec.flags
FILE_WATCHED = 1        # under a watched directory (or every file is reported)
FILE_TRUNCATED = 2      # the path lost its start (deeper than PATH_MAX or MAX_LEVELS)
FILE_DELETED = 4        # the inode has no links left
FILE_PSEUDO = 8         # pipe, socket, anonymous inode: no path, a name
FILE_DIRECTORY = 16     # the walk was of a directory (start of a path-based operation)
FILE_UNCACHED = 64      # the fd cache was full: this id is used by one record only

# Walk.status
WALK_RUNNING, WALK_DONE, WALK_PSEUDO, WALK_TOO_DEEP = 0, 1, 2, 3

REC_FILE = 2


class Watched(Struct):
    """Key of ``watched``: a directory as the kernel sees it (s_dev is
    ``major << 20 | minor``, not userspace's st_dev)."""
    dev: u32
    pad: u32
    ino: u64


class Walk(Struct):
    """Per-CPU state of one walk (map memory: see the module docstring)."""
    dentry: u64
    mnt: u64            # struct vfsmount *
    mnt_root: u64       # its root dentry
    root_dentry: u64    # where the process's root is (chroot)
    root_mnt: u64
    next_id: u64        # file ids handed out on this CPU
    dev: u32            # s_dev of the current mount
    depth: u32          # components remembered
    total: u32          # bytes of the components that fit (each with its '/')
    fit: u32            # how many of the lowest components fit in PATH_MAX - 1
    watched: u32        # index + 1 of the watched directory found among ancestors
    status: u32
    levels: u32         # levels climbed
    all_files: u32      # 1: skip the ancestry lookups (every file is reported)
    pos: u32            # pass 2: where the next component goes
    cut: u32            # a name longer than NAME_MAX was cut
    rooted: u32         # above the process's root: ancestry only, no more names
    names: u64[MAX_COMPONENTS]
    lens: u16[MAX_COMPONENTS]


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


FILE_HEADER = FileRec.layout.fields["path"].offset

walks = PerCPUArray(value=Walk, max_entries=1)
file_recs = PerCPUArray(value=FileRec, max_entries=1)
watched = HashMap(key=Watched, value=u32, max_entries=64)


def kaddr(value):
    """``value`` as an untyped kernel address, for byte arithmetic
    (``kaddr(table) + 8 * fd``) and the probe-read helpers."""
    return as_value(KernelPtr(value))


def scratch_box(p, vtype):
    """A stack slot of ``vtype`` in this function, reused by every
    :func:`kread` of that type (each loads the value out of it at once)."""
    boxes = getattr(p, "_sniffwrites_boxes", None)
    if boxes is None:
        boxes = p._sniffwrites_boxes = {}
    if vtype not in boxes:
        boxes[vtype] = p.stack(vtype)
    return boxes[vtype]


def kread(p, vtype, address):
    """``*(vtype *)address`` from kernel memory at a computed address (0 if
    it cannot be read: bpf_probe_read_kernel zeroes its buffer on failure)."""
    box = scratch_box(p, vtype)
    p.helpers.probe_read_kernel(box, kaddr(address))
    return box[0]


def load_mount(p, s):
    """The root dentry and device of the mount ``s.mnt``."""
    mnt = p.fetch(KernelPtr("vfsmount")(s.mnt), "mnt_root", "mnt_sb")
    s.mnt_root = u64(mnt.mnt_root)
    s.dev = mnt.mnt_sb.s_dev


def walk_begin(p, s, task, mnt, dentry, all_files):
    """Set up pass 1 from (mnt, dentry), stopping names at ``task``'s root."""
    s.dentry = u64(dentry)
    s.mnt = u64(mnt)
    load_mount(p, s)
    fs = p.fetch(task.fs, "root")
    s.root_mnt = u64(fs.root.mnt)
    s.root_dentry = u64(fs.root.dentry)
    s.depth = 0
    s.total = 0
    s.fit = 0
    s.watched = 0
    s.status = WALK_RUNNING
    s.cut = 0
    s.rooted = 0
    s.pos = 0
    s.all_files = all_files


def _remember(p, s, name, length):
    """Keep a component's name address and length (pass 2 reads it), below
    the process's root only."""
    depth = s.depth
    with p.if_((depth < MAX_COMPONENTS) & (s.rooted == 0)):
        s.names[depth] = name
        shown = p.var(u32, length)
        with p.if_(shown > NAME_MAX):
            shown.set(NAME_MAX)
            s.cut = 1
        s.lens[depth] = u16(shown)
        s.depth = depth + 1
        with p.if_(s.fit == depth):
            total = s.total + shown + 1
            with p.if_(total <= PATH_MAX - 1):
                s.total = total
                s.fit = depth + 1


@subprogram
def walk_step(p, level: u64, unused: u64) -> s64:
    """Pass 1, one level up: ancestry test, name remembered, then the parent
    (or the mount below). Returns 1 to stop."""
    s = walks.lookup(0)
    with p.if_(s.is_null):
        p.return_(1)
    d = s.dentry
    with p.if_((d == s.root_dentry) & (s.mnt == s.root_mnt)):
        # The process's root (chroot): the path ends here. The ancestry
        # test goes on above it, unless it has its answer already.
        with p.if_((s.watched != 0) | (s.all_files != 0)):
            s.status = WALK_DONE
            p.return_(1)
        s.rooted = 1
    dentry = p.fetch(KernelPtr("dentry")(d), "d_parent", "d_name", "d_inode")
    with p.if_((s.watched == 0) & (s.all_files == 0)):
        key = p.stack(Watched)
        key.dev = s.dev
        key.pad = 0
        key.ino = dentry.d_inode.i_ino
        hit = watched.lookup(key)
        with p.if_(hit):
            s.watched = hit[0]
    with p.if_(d == s.mnt_root):
        mount = p.container_of(KernelPtr("vfsmount")(s.mnt), "mount", "mnt")
        links = p.fetch(mount, "mnt_parent", "mnt_mountpoint")
        with p.if_((links.mnt_parent == mount) | links.mnt_parent.is_null):
            s.status = WALK_DONE            # the global root
            p.return_(1)
        s.mnt = u64(links.mnt_parent.mnt)   # &parent->mnt
        s.dentry = u64(links.mnt_mountpoint)
        load_mount(p, s)
        p.return_(0)
    with p.if_((dentry.d_parent == d) | dentry.d_parent.is_null):
        _remember(p, s, dentry.d_name.name, dentry.d_name.len)
        s.status = WALK_PSEUDO              # pipe, socket, anonymous inode
        p.return_(1)
    _remember(p, s, dentry.d_name.name, dentry.d_name.len)
    s.dentry = u64(dentry.d_parent)
    p.return_(0)


@subprogram
def compose_step(p, index: u64, unused: u64) -> s64:
    """Pass 2, one component, top first: '/' and the name into the record."""
    s = walks.lookup(0)
    with p.if_(s.is_null):
        p.return_(1)
    rec = file_recs.lookup(0)
    with p.if_(rec.is_null):
        p.return_(1)
    fit = s.fit
    with p.if_(index >= fit):
        p.return_(1)
    slot = fit - 1 - u32(index)
    with p.if_(slot >= MAX_COMPONENTS):
        p.return_(1)
    length = u32(s.lens[slot]) & NAME_MAX
    pos = s.pos & (PATH_MAX - 1)
    rec.path[pos] = ord("/")
    p.helpers.probe_read_kernel_str(p.addr(rec.path)[pos + 1], length + 1,
                                    kaddr(s.names[slot]))
    s.pos = pos + 1 + length
    p.return_(0)


def walk(p, s, task, mnt, dentry, all_files):
    """Pass 1 over (mnt, dentry): ``s.watched``, ``s.status`` and the
    remembered components are the result."""
    walk_begin(p, s, task, mnt, dentry, all_files)
    p.loop(MAX_LEVELS, walk_step)


def compose(p, s, rec):
    """Pass 2: the path into ``rec.path``; sets ``rec.path_len`` and the
    truncation flag in ``rec.flags``."""
    p.loop(MAX_COMPONENTS, compose_step)
    length = p.var(u32, s.pos & (PATH_MAX - 1))
    with p.if_(length == 0):
        rec.path[0] = ord("/")
        length.set(1)
    rec.path_len = length
    flags = p.var(u16, rec.flags)
    with p.if_((s.fit != s.depth) | (s.status == WALK_RUNNING) | (s.cut != 0)):
        flags |= FILE_TRUNCATED
    with p.if_(s.status == WALK_PSEUDO):
        flags |= FILE_PSEUDO
    rec.flags = flags
    return length


def describe_file(p, rec, inode):
    """Inode facts of a file for its record: number, mode, links, device
    and filesystem magic (``inode``: a ``struct inode`` kernel pointer)."""
    i = p.fetch(inode, "i_ino", "__i_nlink")       # adjacent: one read
    rec.ino = i.i_ino
    rec.nlink = i.__i_nlink
    rec.mode = inode.i_mode
    sb = p.var(KernelPtr("super_block"), inode.i_sb)
    rec.dev = sb.s_dev
    rec.magic = sb.s_magic
