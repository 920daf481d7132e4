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

The walk costs two helper calls per component (``tools/bench.py paths``:
~0.18 µs for 3 components, ~0.4 µs for 16, with finding the file): do it
once per open file, not per read. It takes no locks: a rename racing with
it can tear the path (safe, best effort). The verifier accepts it because
the loop carries one exact counter (~150 instructions processed per step);
the rest of the walk's state (where the path starts, flags, the mount being
walked) lives in a per-CPU map value, reloaded and bounds-checked where it
is used. That value is per CPU and shared by every program that walks:
tracepoint programs run with preemption off, so two walks in task context
(syscall tracepoints) never overlap on a CPU; a walk from an interrupt's
tracepoint could cut into one.
"""

import os

from pybpf.dsl import KernelPtr, PerCPUArray, Struct, char, s64, sizeof, u32, u64

PATH_MAX = 4096
NAME_MAX = 255
#: Steps of the walk (one per path component, one per mount crossed);
#: more and the path is its last components, flagged PATH_TRUNCATED.
MAX_STEPS = 64

# PathInfo.flags. PATH_TRUNCATED: more steps than allowed, or longer than
# PATH_MAX or the caller's buffer; the path is its tail. PATH_DELETED:
# unlinked (readlink adds " (deleted)"). PATH_PSEUDO: under no mount root (a
# pipe, socket, anonymous inode, memfd): the path is the dentry's bare name,
# which display_path() turns into what readlink says.
PATH_TRUNCATED = 1
PATH_DELETED = 2
PATH_PSEUDO = 4

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


DentryPtr = KernelPtr("dentry")
MountPtr = KernelPtr("mount")


class _Walk(Struct):
    """The walk's state, in map memory so that the verifier tracks only
    the loop counter exactly (see the module docstring)."""
    pos: u32                              # the path is buf[pos:PATH_MAX]
    flags: u32
    ended: u32                            # the walk stopped before its step bound
    crossed: u32                          # this dentry is a covered mountpoint (no hook)
    dev: u32                              # s_dev of the mount being walked
    reserved: u32
    mnt: MountPtr                         # the mount being walked
    mnt_root: DentryPtr                   # ... its root
    mnt_parent: MountPtr
    mnt_mountpoint: DentryPtr
    root_dentry: DentryPtr                # the process's root: paths are relative to it
    root_mnt: MountPtr
    # The path ends at buf[PATH_MAX], its NUL. The verifier, which does not
    # relate where a name starts to how long it is, sees up to NAME_MAX bytes
    # written as far as PATH_MAX: there is room for that too.
    buf: char[PATH_MAX + NAME_MAX + 1]


path_scratch = PerCPUArray(value=_Walk, max_entries=1, name="path_scratch")


def file_of_fd(p, task, fd):
    """``task->files->fdt->fd[fd]``: the ``struct file`` of descriptor
    ``fd`` of ``task``, NULL when there is none (``fd`` out of
    ``fdt->max_fds`` or negative, or a closed slot)."""
    fdt = p.fetch(task.files.fdt, "max_fds", "fd")
    return p.index(fdt.fd, fd, fdt.max_fds)


def emit_path(p, file, out, info, *, task=None, on_ancestor=None, max_steps=MAX_STEPS):
    """Write the absolute path of ``file`` (a ``struct file`` kernel
    pointer, not NULL) into ``out`` (a ``char[N]`` of program memory,
    NUL-terminated; when the path is longer, its last N-1 bytes) and the
    rest into ``info`` (a :class:`PathInfo`).

    Paths are relative to ``task``'s root (default: the current task),
    as ``d_path`` makes them under chroot. ``on_ancestor(p, dev, ino)``,
    if given, is DSL code run for the file and each directory above it
    (a mount's root, not the directory it covers), with ``dev`` in the
    kernel's encoding: test them against a map of watched directories
    during the walk. ``max_steps`` bounds the loop (components plus
    mounts crossed); a deeper path is cut and flagged.
    """
    walk = path_scratch.lookup(0)
    with p.if_(walk.is_null):              # never (a per-CPU array's entry 0 exists)
        out[0] = 0
        info.length = 0
        info.flags = PATH_TRUNCATED
    with p.else_():
        f = p.fetch(file, "f_inode", "f_path")
        _start(p, walk, f.f_inode, info, task)
        dentry = p.var(DentryPtr, f.f_path.dentry)
        _enter_mount(p, walk, p.container_of(f.f_path.mnt, "mount", "mnt"),
                     on_ancestor is not None)
        for i in p.range(max_steps):
            _step(p, walk, i, dentry, on_ancestor)
        with p.if_(walk.ended == 0):
            walk.flags |= PATH_TRUNCATED
        _finish(p, walk, out, info)


def _start(p, walk, inode, info, task):
    """Report the file's own inode and superblock; reset the walk."""
    inode = p.fetch(inode, "i_sb", "i_ino", "__i_nlink")
    sb = p.fetch(inode.i_sb, "s_dev", "s_magic")
    info.ino = inode.i_ino
    info.dev = sb.s_dev
    info.magic = sb.s_magic
    walk.dev = sb.s_dev
    walk.pos = PATH_MAX
    walk.buf[PATH_MAX] = 0
    walk.ended = 0
    walk.crossed = 0
    walk.flags = 0
    with p.if_(inode.__i_nlink == 0):
        walk.flags = PATH_DELETED
    fs = p.fetch((task if task is not None else p.current_task()).fs, "root")
    walk.root_dentry = fs.root.dentry
    walk.root_mnt = p.container_of(fs.root.mnt, "mount", "mnt")


def _enter_mount(p, walk, mnt, with_dev):
    """The walk continues in mount ``mnt``: remember it, its root, parent
    and mountpoint (one read), and its device when a hook wants it."""
    walk.mnt = mnt
    m = p.fetch(mnt, "mnt_parent", "mnt_mountpoint", "mnt.mnt_root", "mnt.mnt_sb")
    walk.mnt_root = m.mnt.mnt_root
    walk.mnt_parent = m.mnt_parent
    walk.mnt_mountpoint = m.mnt_mountpoint
    if with_dev:
        walk.dev = m.mnt.mnt_sb.s_dev


def _step(p, walk, i, dentry, on_ancestor):
    """One step up: past a mount's root to the mount it is mounted on,
    or from a dentry to its parent, prepending the dentry's name."""
    d = p.fetch(dentry, "d_hash.pprev", "d_parent", "d_name", "d_inode")
    with p.if_(i == 0):
        # The file itself is unlinked when unhashed but not a root (the
        # kernel's d_unlinked(), which decides d_path's " (deleted)").
        with p.if_((d.d_hash.pprev == 0) & (d.d_parent != dentry)):
            walk.flags |= PATH_DELETED
    if on_ancestor is not None:
        with p.if_(walk.crossed == 0):
            on_ancestor(p, walk.dev, d.d_inode.i_ino)
        walk.crossed = 0
    with p.if_((dentry == walk.root_dentry) & (walk.mnt == walk.root_mnt)):
        _stop(p, walk)
    with p.if_(dentry == walk.mnt_root):
        with p.if_(walk.mnt_parent == walk.mnt):
            _stop(p, walk)                                 # the global root
        dentry.set(walk.mnt_mountpoint)
        _enter_mount(p, walk, walk.mnt_parent, on_ancestor is not None)
        if on_ancestor is not None:
            walk.crossed = 1
        p.continue_()
    with p.if_(d.d_parent == dentry):
        # A root that is no mount's: a pseudo file (pipe:[ino] and friends,
        # named in userspace) or a detached tree.
        walk.flags |= PATH_PSEUDO
        _prepend(p, walk, d.d_name, slash=False)
        _stop(p, walk)
    _prepend(p, walk, d.d_name, slash=True)
    dentry.set(d.d_parent)


def _stop(p, walk):
    walk.ended = 1
    p.break_()


def _prepend(p, walk, name, slash):
    """Write ``name`` (a ``struct qstr``), after a '/' if ``slash``, in
    front of the path so far; cut the walk when it does not fit."""
    pos = s64(walk.pos)
    length = s64(name.len)
    with p.if_((pos > PATH_MAX) | (length > NAME_MAX)):
        _cut(p, walk)
    start = pos - length - int(slash)
    with p.if_(start < 0):
        _cut(p, walk)
    walk.pos = start
    if slash:
        walk.buf[start] = ord("/")
    p.helpers.probe_read_kernel(p.addr(walk.buf)[start + int(slash)], length, name.name)


def _cut(p, walk):
    walk.flags |= PATH_TRUNCATED
    _stop(p, walk)


def _finish(p, walk, out, info):
    """Copy the path and its NUL to ``out`` (its tail when ``out`` is too
    short) and report its length and flags."""
    with p.if_((walk.pos == PATH_MAX) & ((walk.flags & PATH_PSEUDO) == 0)):
        walk.buf[PATH_MAX - 1] = ord("/")                  # the root itself
        walk.pos = PATH_MAX - 1
    length = PATH_MAX - walk.pos
    info.length = length
    size = p.var(u64, u64(length) + 1)
    with p.if_(size > sizeof(out)):
        size.set(sizeof(out))
        walk.flags |= PATH_TRUNCATED
    p.helpers.probe_read_kernel(out, size, u64(p.addr(walk.buf)[PATH_MAX + 1 - size]))
    info.flags = walk.flags


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
