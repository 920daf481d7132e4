"""The path of an open file, from the kernel's own structs: a DSL library.

Not a program: DSL code that programs call. ``file_of_fd`` finds the
``struct file`` of a descriptor (``task->files->fdt->fd[fd]``), also one
opened before the program was loaded; ``emit_path`` walks that file's
dentry chain up to the process's root, crossing mounts, the way the
kernel's ``d_path`` does, and writes the absolute path into a buffer of the
caller's. Both read kernel memory at the offsets this kernel's BTF gives
(:mod:`pybpf.dsl.kernel_memory`), from syscall or raw tracepoints: there is
no ``bpf_d_path`` for those.

.. code-block:: python

    from pybpf.programs.lib_paths import PATH_MAX, PathInfo, emit_path, file_of_fd

    class Event(Struct):
        info: PathInfo
        path: char[PATH_MAX]

    task = p.current_task()
    file = file_of_fd(p, task, ctx.fd)
    with p.if_(file):
        with events.reserve(Event) as ev:
            emit_path(p, file, ev.path, ev.info, task=task)

Userspace turns what the walk reports into what ``readlink
/proc/PID/fd/N`` says with :func:`display_path`, and the kernel's device
numbers into ``os.stat``'s with :func:`user_dev`.

The walk is two passes, both ``bpf_loop`` callbacks (verified once, however
deep the path), with their state in a per-CPU map value (:class:`Walk`)
rather than in verifier-tracked registers (KERNEL_NOTES.md: two exact loop
counters blow the verifier's budget):

1. :func:`walk` (:func:`walk_steps` makes its step), per level: one read of
   the dentry's parent, name and inode, the ``on_ancestor`` hook (e.g. a
   lookup in a map of watched directories, until it has its answer); the
   name's address and length are only remembered.
2. :func:`compose` (:func:`compose_steps`), only for a path that is wanted:
   the names are copied top-down, cut at the *start* when the whole path
   would pass PATH_MAX. A path is never cut silently.

So a caller that filters (sniffwrites) pays for names only for the files
it reports; ``emit_path`` does both passes. The walk stops at the process's
root (``task->fs->root``: chroot; the hook goes on above it until it has
its answer), at the global root (a mount that is its own parent), or at a
dentry that is its own parent without being a mount root: a pipe, socket
or anonymous inode (named in userspace from the superblock magic), and
after ``max_steps`` levels (MAX_LEVELS: deeper than any path that fits).
On kernels without ``bpf_loop`` (before 5.17) both passes are bounded loops
of the same steps, cut at MAX_LEVELS_BOUNDED levels.

The walk costs about two helper calls and two ``bpf_loop`` calls per
component (``tools/bench.py paths``: ~0.23 µs for 3 components, ~0.53 µs
for 16, with finding the file; ~0.55k instructions processed by the
verifier): do it once per open file, not per read. It takes no locks: a
rename racing with it can tear the path (safe, best effort). The state is
per CPU and shared by every program that walks: tracepoint programs run
with preemption off, so two walks in task context (syscall tracepoints)
never overlap on a CPU; a walk from an interrupt's tracepoint could cut
into one.
"""

import os

from pybpf.dsl import (KernelPtr, PerCPUArray, Struct, char, s64, sizeof, subprogram, u16, u32,
                       u64)
from pybpf.dsl.kernel_types import kernel_has_helper
from pybpf.dsl.values import as_value

PATH_MAX = 4096
NAME_MAX = 255
#: Components remembered by pass 1: a path that fits PATH_MAX has at most
#: 2048 ("/a" repeated), so nothing that fits is ever cut for want of slots.
MAX_COMPONENTS = 2048
#: Levels pass 1 climbs at most (a path deeper than this is reported cut).
MAX_LEVELS = 8192
#: Where the kernel has no ``bpf_loop`` (Linux 5.3-5.16), each pass is a
#: bounded loop that the verifier follows level by level: this many levels,
#: and as many components (on Linux 6.18: ~25k instructions verified for one
#: walk, ~320k for sniffwrites' sys_exit program, which walks in three
#: places; 128 would take it to ~580k of the 1M limit). A deeper path is
#: cut and flagged, as one past MAX_LEVELS is.
MAX_LEVELS_BOUNDED = 64
#: A path buffer: PATH_MAX plus room for the last name copy the verifier
#: must see fit (the offset is masked to PATH_MAX - 1, the size to 2 * 256).
PATH_BUF = PATH_MAX + 2 * 256

# PathInfo.flags. PATH_TRUNCATED: deeper than the step bound, or longer than
# PATH_MAX or the caller's buffer; the path is its tail. PATH_DELETED:
# unlinked (readlink adds " (deleted)"). PATH_PSEUDO: under no mount root (a
# pipe, socket, anonymous inode, memfd): the path is the dentry's bare name,
# which display_path() turns into what readlink says.
PATH_TRUNCATED = 1
PATH_DELETED = 2
PATH_PSEUDO = 4

# Walk.status
WALK_RUNNING, WALK_DONE, WALK_PSEUDO, WALK_TOO_DEEP = 0, 1, 2, 3

# super_block.s_magic of the pseudo filesystems (include/uapi/linux/magic.h)
PIPEFS_MAGIC = 0x50495045
SOCKFS_MAGIC = 0x534F434B
ANON_INODE_FS_MAGIC = 0x09041934


class PathInfo(Struct):
    """What ``emit_path`` reports besides the path itself."""
    length: u32      # of the whole path, without the NUL (may exceed the buffer: truncated)
    flags: u32       # PATH_*
    dev: u32         # the file's superblock s_dev: kernel dev_t, see user_dev()
    reserved: u32
    ino: u64         # the file's inode number
    magic: u64       # its superblock's s_magic (names pseudo files)


class DevIno(Struct):
    """A (device, inode) key, e.g. of a hash map of watched directories
    (``dev`` in the kernel's encoding: :func:`kernel_dev`)."""
    dev: u64
    ino: u64


class Walk(Struct):
    """Per-CPU state of one walk (map memory: see the module docstring)."""
    dentry: u64
    mnt: u64            # struct vfsmount *
    mnt_root: u64       # its root dentry
    root_dentry: u64    # where the process's root is (chroot)
    root_mnt: u64
    next_id: u64        # the caller's (sniffwrites: file ids handed out on this CPU)
    dev: u32            # s_dev of the current mount
    depth: u32          # components remembered
    total: u32          # bytes of the components that fit (each with its '/')
    fit: u32            # how many of the lowest components fit in PATH_MAX - 1
    watched: u32        # the hook's answer (nonzero: the ancestry test is over)
    status: u32         # WALK_*
    levels: u32         # levels climbed
    all_files: u32      # 1: no ancestry test (the hook is not run)
    pos: u32            # pass 2: where the next component goes
    cut: u32            # a name longer than NAME_MAX was cut
    rooted: u32         # above the process's root: ancestry only, no more names
    names: u64[MAX_COMPONENTS]
    lens: u16[MAX_COMPONENTS]


class PathBuf(Struct):
    """Where ``emit_path`` composes a path (pass 2 writes map memory)."""
    path: char[PATH_BUF]


walks = PerCPUArray(value=Walk, max_entries=1, name="walks")
path_bufs = PerCPUArray(value=PathBuf, max_entries=1, name="path_bufs")


def kaddr(value):
    """``value`` as an untyped kernel address, for byte arithmetic
    (``kaddr(table) + 8 * fd``) and the probe-read helpers."""
    return as_value(KernelPtr(value))


def file_of_fd(p, task, fd):
    """``task->files->fdt->fd[fd]``: the ``struct file`` of descriptor
    ``fd`` of ``task``, NULL when there is none (``fd`` out of
    ``fdt->max_fds`` or negative, or a closed slot)."""
    fdt = p.fetch(task.files.fdt, "max_fds", "fd")
    return p.index(fdt.fd, fd, fdt.max_fds)


# --- the two passes ---------------------------------------------------------------------------

def load_mount(p, s):
    """The root dentry and device of the mount ``s.mnt``."""
    mnt = p.fetch(KernelPtr("vfsmount")(s.mnt), "mnt_root", "mnt_sb")
    s.mnt_root = u64(mnt.mnt_root)
    s.dev = mnt.mnt_sb.s_dev


def walk_begin(p, s, task, mnt, dentry, all_files):
    """Set up pass 1 from (mnt, dentry), stopping names at ``task``'s root;
    ``all_files`` nonzero: no ancestry test."""
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


_steps = {}


def walk_steps(on_ancestor=None):
    """The step of pass 1 (a ``@subprogram`` for ``bpf_loop``, label
    ``walk_step``), made once per hook. ``on_ancestor(p, s, dev, ino)``, if
    given, is DSL code run in the step for the file and each directory above
    it (a mount's root, and the directory it covers), with ``dev`` in the
    kernel's encoding, while ``s.watched`` and ``s.all_files`` are 0: it
    runs in the callback, so it reaches program state through maps only,
    and sets ``s.watched`` nonzero once it has its answer. A program uses
    one hook."""
    if on_ancestor in _steps:
        return _steps[on_ancestor]

    def walk_step(p, level: u64, unused: u64) -> s64:
        """Pass 1, one level up: ancestry test, name remembered, then the
        parent (or the mount below). Returns 1 to stop."""
        s = walks.lookup(0)
        with p.if_(s.is_null):
            p.return_(1)
        d = s.dentry
        with p.if_((d == s.root_dentry) & (s.mnt == s.root_mnt)):
            # The process's root (chroot): the path ends here. The ancestry
            # test goes on above it, unless it has its answer already.
            if on_ancestor is None:
                s.status = WALK_DONE
                p.return_(1)
            else:
                with p.if_((s.watched != 0) | (s.all_files != 0)):
                    s.status = WALK_DONE
                    p.return_(1)
                s.rooted = 1
        dentry = p.fetch(KernelPtr("dentry")(d), "d_parent", "d_name", "d_inode")
        if on_ancestor is not None:
            with p.if_((s.watched == 0) & (s.all_files == 0)):
                on_ancestor(p, s, s.dev, dentry.d_inode.i_ino)
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
    _steps[on_ancestor] = subprogram(walk_step)
    return _steps[on_ancestor]


_composers = {}


def compose_steps(bufs):
    """The step of pass 2 (a ``@subprogram``, label ``compose_step``) that
    writes into ``bufs[0].path`` (``bufs``: a per-CPU array whose value has
    a ``path: char[PATH_BUF]``), made once per map."""
    if bufs in _composers:
        return _composers[bufs]

    def compose_step(p, index: u64, unused: u64) -> s64:
        """Pass 2, one component, top first: '/' and the name."""
        s = walks.lookup(0)
        with p.if_(s.is_null):
            p.return_(1)
        rec = bufs.lookup(0)
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
    _composers[bufs] = subprogram(compose_step)
    return _composers[bufs]


def level_bound():
    """How many levels a walk climbs in this kernel: MAX_LEVELS with
    ``bpf_loop``, MAX_LEVELS_BOUNDED without (its BTF says which)."""
    return MAX_LEVELS if kernel_has_helper("bpf_loop") else MAX_LEVELS_BOUNDED


def walk(p, s, task, mnt, dentry, all_files, step, max_steps=None):
    """Pass 1 over (mnt, dentry) with ``step`` (from :func:`walk_steps`):
    ``s.watched``, ``s.status`` and the remembered components are the
    result. ``max_steps``: levels climbed at most (default and most:
    :func:`level_bound`, which pass 2 is sized for)."""
    walk_begin(p, s, task, mnt, dentry, all_files)
    p.loop(min(max_steps or level_bound(), level_bound()), step)


def compose(p, s, path, step):
    """Pass 2 with ``step`` (from :func:`compose_steps`), into ``path``
    (its map's ``path``): returns the length (``/`` for the root). Without
    ``bpf_loop`` the walk remembered at most MAX_LEVELS_BOUNDED components."""
    p.loop(MAX_COMPONENTS if kernel_has_helper("bpf_loop") else MAX_LEVELS_BOUNDED, step)
    length = p.var(u32, s.pos & (PATH_MAX - 1))
    with p.if_(length == 0):
        path[0] = ord("/")
        length.set(1)
    return length


def cut(s):
    """Whether the walked path lost its start (too deep, longer than
    PATH_MAX, or a name longer than NAME_MAX)."""
    return (s.fit != s.depth) | (s.status == WALK_RUNNING) | (s.cut != 0)


def emit_path(p, file, out, info, *, task=None, on_ancestor=None, max_steps=None):
    """Write the absolute path of ``file`` (a ``struct file`` kernel
    pointer, not NULL) into ``out`` (a ``char[N]`` of program memory,
    NUL-terminated; when the path is longer, its last N-1 bytes) and the
    rest into ``info`` (a :class:`PathInfo`).

    Paths are relative to ``task``'s root (default: the current task),
    as ``d_path`` makes them under chroot. ``on_ancestor``: see
    :func:`walk_steps`. ``max_steps`` bounds the levels climbed
    (components plus mounts crossed; default :func:`level_bound`); a deeper
    path is cut and flagged.
    """
    s = walks.lookup(0)
    buf = path_bufs.lookup(0)
    with p.if_(s.is_null):                 # never (a per-CPU array's entry 0 exists)
        out[0] = 0
        info.length = 0
        info.flags = PATH_TRUNCATED
    with p.elif_(buf.is_null):
        out[0] = 0
        info.length = 0
        info.flags = PATH_TRUNCATED
    with p.else_():
        if task is None:
            task = p.current_task()
        f = p.fetch(file, "f_inode", "f_path")
        inode = p.fetch(f.f_inode, "i_sb", "i_ino", "__i_nlink")
        sb = p.fetch(inode.i_sb, "s_dev", "s_magic")
        info.ino = inode.i_ino
        info.dev = sb.s_dev
        info.magic = sb.s_magic
        flags = p.var(u32, 0)
        with p.if_(inode.__i_nlink == 0):
            flags.set(PATH_DELETED)
        dentry = p.var(u64, u64(f.f_path.dentry))
        d = p.fetch(KernelPtr("dentry")(dentry), "d_hash.pprev", "d_parent")
        # Unlinked when unhashed but not a root (the kernel's d_unlinked(),
        # which decides d_path's " (deleted)").
        with p.if_((d.d_hash.pprev == 0) & (u64(d.d_parent) != dentry)):
            flags |= PATH_DELETED
        walk(p, s, task, f.f_path.mnt, dentry, int(on_ancestor is None),
             walk_steps(on_ancestor), max_steps)
        with p.if_(cut(s)):
            flags |= PATH_TRUNCATED
        length = compose(p, s, buf.path, compose_steps(path_bufs))
        start = p.var(u64, 0)
        with p.if_(s.status == WALK_PSEUDO):
            flags |= PATH_PSEUDO               # its bare name, without the '/'
            start.set(1)
            length.set(length - 1)
        end = p.var(u64, (start + length) & (PATH_MAX - 1))
        buf.path[end] = 0
        info.length = length
        size = p.var(u64, u64(length) + 1)
        with p.if_(size > sizeof(out)):
            size.set(sizeof(out))
            flags |= PATH_TRUNCATED
        p.helpers.probe_read_kernel(out, size, u64(p.addr(buf.path)[end + 1 - size]))
        info.flags = flags


# --- userspace ----------------------------------------------------------------------------

def user_dev(kdev: int) -> int:
    """A kernel dev_t (``super_block.s_dev``, ``major << 20 | minor``) in
    the encoding of ``os.stat().st_dev`` (glibc's ``makedev``)."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF)


def kernel_dev(st_dev: int) -> int:
    """``os.stat().st_dev`` as the kernel's dev_t: what a :class:`DevIno`
    key of a watched directory holds."""
    return os.major(st_dev) << 20 | os.minor(st_dev)


def display_path(path: bytes, info) -> str:
    """What ``readlink /proc/PID/fd/N`` says of the file ``emit_path``
    reported (``path`` up to its NUL, ``info`` a decoded PathInfo): the
    path, `` (deleted)`` when unlinked; a pseudo file named as its
    filesystem's ``d_dname`` names it (``pipe:[ino]``, ``socket:[ino]``,
    ``anon_inode:[eventfd]``, else ``/name (deleted)`` like memfds). A
    truncated path (PATH_TRUNCATED) is returned as the tail it is."""
    name = os.fsdecode(path)
    if info.flags & PATH_PSEUDO:
        if info.magic == PIPEFS_MAGIC:
            return "pipe:[%d]" % info.ino
        if info.magic == SOCKFS_MAGIC:
            return "socket:[%d]" % info.ino
        if info.magic == ANON_INODE_FS_MAGIC:
            return "anon_inode:" + name
        return "/%s (deleted)" % name                  # the kernel's simple_dname
    return name + " (deleted)" if info.flags & PATH_DELETED else name
