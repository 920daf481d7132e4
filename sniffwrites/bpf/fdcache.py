"""The fd cache: (tgid, fd) -> what the walk found, so that a read costs one lookup.

A miss walks the fd (:func:`track_fd`): once per open, or once per fd first
seen, never per read. The answer is cached negative or positive; a file that
is reported also goes out as a FileRec with a new file id. Every way an fd is
closed deletes its entry (close, close_range, dup2/dup3 over it, exec, exit:
:func:`sweep`), so an fd number reused by any later syscall is a miss, never
a stale answer. Entries that cannot be inserted (map full) are counted, and
the file is walked again on its next use (its id marked ``FILE_UNCACHED``).

With ``--aggregate`` the entry also holds the file's read and write counts
(:func:`count_io`), sent in its Agg record when it is closed.
"""

from pybpf.consts import BPF_F_NO_PREALLOC
from pybpf.dsl import HashMap, KernelPtr, PerCPUArray, Struct, s32, s64, subprogram, u16, u32, u64
from pybpf.dsl.kernel_types import kernel_has_helper
from pybpf.programs.lib_paths import file_of_fd, kaddr, walks

from .emit import count, emit_agg, output
from .records import (FILE_DELETED, FILE_DIRECTORY, FILE_HEADER, FILE_PSEUDO, FILE_UNCACHED,
                      FILE_WATCHED, IO_IMPLICIT, OP_CLOSE, PATH_MAX, REC_FILE, FdInfo, FdKey,
                      ProcInfo)
from .settings import op_wanted, reported, settings
from .syscalls import CL_READ
from .walk import compose, describe_file, file_recs, kread, walk

AT_FDCWD = -100
#: Sweeps (exec, exit, close_range) look at this many fds at most; where the
#: kernel has no bpf_loop (before 5.17) the sweep is a bounded loop the
#: verifier follows fd by fd, so at most MAX_SWEEP_BOUNDED. A sweep cut
#: short is counted (``sweep_incomplete``).
MAX_SWEEP = 1 << 20
MAX_SWEEP_BOUNDED = 256
#: file ids: CPU number above, a per-CPU counter below.
FILE_ID_CPU_SHIFT = 44
# Sweep modes
SWEEP_CLOSE_RANGE, SWEEP_EXEC, SWEEP_EXIT = 1, 2, 3

# Not preallocated: creating 256k entries up front costs ~15 ms of start-up,
# and entries come and go with open files anyway (bpf_mem_alloc, Linux 6.1).
fds = HashMap(key=FdKey, value=FdInfo, max_entries=1 << 18, flags=BPF_F_NO_PREALLOC)
procs = HashMap(key=u32, value=ProcInfo, max_entries=1 << 16, flags=BPF_F_NO_PREALLOC)
staging = PerCPUArray(value=FdInfo, max_entries=1)    # a cache entry being made


class Sweep(Struct):
    """Per-CPU state of a sweep over a process's cached fds."""
    tgid: u32
    mode: u32
    first: u32
    count: u32
    max_fds: u32
    pad: u32
    fd_array: u64       # the fd table's array, to tell which fds exec closed


sweeps = PerCPUArray(value=Sweep, max_entries=1)


def new_file_id(p, s):
    """A file id no other walk gets: this CPU's walk counter ``s.next_id``,
    bumped, with the CPU number above FILE_ID_CPU_SHIFT."""
    s.next_id = s.next_id + 1
    return p.var(u64, (u64(p.helpers.get_smp_processor_id()) << FILE_ID_CPU_SHIFT) | s.next_id)


def raise_max_fd(p, tgid, fd, *, create):
    """procs[tgid].max_fd = max(it, fd) (the bound of the sweeps); with
    ``create``, make the entry if the process has none."""
    proc = procs.lookup(tgid)
    with p.if_(proc):
        with p.if_(proc.max_fd < fd):
            proc.max_fd = fd
    if create:
        with p.else_():
            fresh = p.stack(ProcInfo, zero=True)
            fresh.max_fd = fd
            with p.if_(procs.update(tgid, fresh) != 0):
                count(p, "proc_map_full")


def count_io(p, info, cls, ret):
    """--aggregate: a successful read or write (``cls``) of ``ret`` bytes
    adds to the counts of its fd cache entry ``info``."""
    with p.if_(ret >= 0):
        with p.if_(cls == CL_READ):
            p.atomic_add(p.addr(info).reads, 1)
            p.atomic_add(p.addr(info).read_bytes, u64(ret))
        with p.else_():
            p.atomic_add(p.addr(info).writes, 1)
            p.atomic_add(p.addr(info).write_bytes, u64(ret))


def report_close(p, info, fd, flags):
    """A closing fd's record, if it is reported: an Agg, which is the close
    event (and, with --aggregate, the file's counts)."""
    with p.if_(reported(info.flags) & (op_wanted(OP_CLOSE) | (settings.aggregate != 0))):
        emit_agg(p, info, fd, flags)


def walk_fd(p, fd):
    """Pass 1 over ``fd``'s file in a subprogram (which returns -1 when the
    fd has no file): (the file, the walk state, FILE_WATCHED or 0, a new
    file id)."""
    task = p.current_task()
    file = file_of_fd(p, task, fd)
    with p.if_(file.is_null):
        p.return_(-1)
    f = p.fetch(file, "f_path")
    s = walks.lookup(0)
    with p.if_(s.is_null):
        p.return_(-1)
    walk(p, s, task, f.f_path.mnt, f.f_path.dentry, settings.all_files)
    flags = p.var(u32, 0)
    with p.if_((s.watched != 0) | (settings.all_files != 0)):
        flags.set(FILE_WATCHED)
    return file, s, flags, new_file_id(p, s)


@subprogram
def track_fd(p, fd: u64, open_flags: u64) -> s64:
    """Walk ``fd`` of the current task, cache the answer under (tgid, fd)
    and, if the file is reported, send its FileRec. Returns
    ``file_id << 8 | FILE_* flags``, or -1 when the fd has no file."""
    info = staging.lookup(0)
    with p.if_(info.is_null):
        p.return_(-1)
    file, s, flags, file_id = walk_fd(p, fd)
    pid_tgid = p.helpers.get_current_pid_tgid()
    key = p.stack(FdKey)
    key.tgid = u32(pid_tgid >> 32)
    key.fd = u32(fd)
    p.zero(info)
    info.file_id = file_id
    info.flags = flags
    info.watched = s.watched
    with p.if_(fds.update(key, info) != 0):
        count(p, "fd_map_full")
        flags |= FILE_UNCACHED
    with p.else_():
        raise_max_fd(p, key.tgid, u32(fd), create=True)
    with p.if_(reported(flags)):
        send_file(p, s, file.f_inode, file_id, flags, fd, open_flags)
    p.return_(s64((file_id << 8) | flags))


def file_id_of(tracked):
    """The file id in what :func:`track_fd` returned."""
    return u64(tracked) >> 8


@subprogram
def fd_file(p, fd: u64) -> s64:
    """What the cache knows of ``fd`` of the current process, walking it on
    a miss: ``file_id << 8 | FILE_* flags``, or -1 when the fd has no file."""
    key = p.stack(FdKey)
    key.tgid = u32(p.helpers.get_current_pid_tgid() >> 32)
    key.fd = u32(fd)
    info = fds.lookup(key)
    with p.if_(info):
        p.return_(s64((info.file_id << 8) | u64(info.flags)))
    p.return_(track_fd(p, fd, 0))


@subprogram
def name_fd(p, fd: u64) -> s64:
    """The other end of a copy when it is not reported itself: walked again
    (not cached) and sent as a one-use FileRec (``FILE_UNCACHED``), so that
    the copy's record can name it. Returns its file id, or -1."""
    file, s, flags, file_id = walk_fd(p, fd)
    send_file(p, s, file.f_inode, file_id, flags | FILE_UNCACHED, fd, 0)
    p.return_(s64(file_id))


def send_file(p, s, inode, file_id, flags, fd, open_flags):
    """The FileRec of a walked file (pass 2 and the inode facts)."""
    rec = file_recs.lookup(0)
    with p.if_(rec):
        pid_tgid = p.helpers.get_current_pid_tgid()
        rec.kind = REC_FILE
        rec.flags = u16(flags)
        rec.pid = u32(pid_tgid >> 32)
        rec.tid = u32(pid_tgid)
        rec.fd = s32(fd)
        rec.file_id = file_id
        rec.watched = s.watched
        rec.open_flags = u32(open_flags)
        describe_file(p, rec, inode)
        length = compose(p, s, rec)
        with p.if_((rec.nlink == 0) & ((rec.flags & FILE_PSEUDO) == 0)):
            rec.flags = rec.flags | FILE_DELETED
        output(p, REC_FILE, rec, FILE_HEADER + (length & (PATH_MAX - 1)) + 1)


@subprogram
def track_dir(p, dirfd: u64, unused: u64) -> s64:
    """Walk the directory a path-based operation starts from (``dirfd``, or
    the cwd for AT_FDCWD) and send it as a FileRec if it is watched.
    Returns ``file_id << 8 | FILE_* flags``, or -1."""
    task = p.current_task()
    mnt = p.var(u64, 0)
    dentry = p.var(u64, 0)
    with p.if_(s32(dirfd) == AT_FDCWD):
        fs = p.fetch(task.fs, "pwd")
        mnt.set(u64(fs.pwd.mnt))
        dentry.set(u64(fs.pwd.dentry))
    with p.else_():
        file = file_of_fd(p, task, dirfd)
        with p.if_(file.is_null):
            p.return_(-1)
        f = p.fetch(file, "f_path")
        mnt.set(u64(f.f_path.mnt))
        dentry.set(u64(f.f_path.dentry))
    with p.if_(dentry == 0):
        p.return_(-1)
    inode = p.var(u64, u64(KernelPtr("dentry")(dentry).d_inode))
    s = walks.lookup(0)
    with p.if_(s.is_null):
        p.return_(-1)
    walk(p, s, task, mnt, dentry, settings.all_files)
    flags = p.var(u32, FILE_DIRECTORY)
    with p.if_((s.watched != 0) | (settings.all_files != 0)):
        flags |= FILE_WATCHED
    file_id = new_file_id(p, s)
    with p.if_(reported(flags)):
        send_file(p, s, KernelPtr("inode")(inode), file_id, flags, dirfd, 0)
    p.return_(s64((file_id << 8) | flags))


@subprogram
def sweep_step(p, index: u64, unused: u64) -> s64:
    """One fd of a sweep: drop its cache entry, with an implicit close
    event, unless exec left it open."""
    sw = sweeps.lookup(0)
    with p.if_(sw.is_null):
        p.return_(1)
    with p.if_(index >= sw.count):
        p.return_(1)
    fd = sw.first + u32(index)
    key = p.stack(FdKey)
    key.tgid = sw.tgid
    key.fd = fd
    info = fds.lookup(key)
    with p.if_(info.is_null):
        p.return_(0)
    with p.if_(sw.mode == SWEEP_EXEC):
        with p.if_(fd < sw.max_fds):
            with p.if_(kread(p, u64, kaddr(sw.fd_array) + u64(fd) * 8) != 0):
                p.return_(0)      # still open after exec
    report_close(p, info, fd, IO_IMPLICIT)
    fds.delete(key)
    p.return_(0)


def sweep(p, tgid, first, last, mode):
    """Drop the cache entries of ``tgid`` for fds ``first..last`` (bounded by
    the highest fd ever cached for it). Returns from the program."""
    proc = procs.lookup(tgid)
    with p.if_(proc.is_null):
        p.return_(0)
    top = p.var(u32, last)
    with p.if_(top > proc.max_fd):
        top.set(proc.max_fd)
    if mode == SWEEP_EXIT:
        procs.delete(tgid)
    sw = sweeps.lookup(0)
    with p.if_(sw.is_null):
        p.return_(0)
    if not isinstance(first, int):      # a constant 0 is never above top
        with p.if_(first > top):
            p.return_(0)
    looped = kernel_has_helper("bpf_loop")
    most = MAX_SWEEP if looped else MAX_SWEEP_BOUNDED
    n = p.var(u32, top - first + 1)
    with p.if_(n > most):
        n.set(most)
        count(p, "sweep_incomplete")
    sw.tgid = tgid
    sw.mode = mode
    sw.first = first
    sw.count = n
    sw.max_fds = 0
    sw.fd_array = 0
    if mode == SWEEP_EXEC:
        fdt = p.fetch(p.current_task().files.fdt, "max_fds", "fd")
        sw.max_fds = fdt.max_fds
        sw.fd_array = u64(fdt.fd)
    p.loop(n if looped else MAX_SWEEP_BOUNDED, sweep_step)    # sweep_step stops at sw.count
