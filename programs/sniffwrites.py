"""sniffwrites' kernel side: file operations, filtered in the kernel.

Mirrors the seed tool (open/read/write/close events with pid, fd, comm and
file name, an fd -> file map in the kernel, per-CPU scratch space) with its
limitations solved; ``sniffwrites/`` is the userspace half.

Hooks (see the README's "sniffwrites design" for the measurements behind them):

* ``sniff_exit``, the raw ``sys_exit`` tracepoint: one program for every
  syscall. ``pt_regs`` (``ctx.args[0]``) holds the syscall number and its
  arguments, ``ctx.args[1]`` the result. A table in the frozen config maps
  the number to a class (``CL_*``); anything else returns after one read.
  Reads and writes need one lookup in the fd cache ``fds``, keyed by
  (tgid, fd): a file outside the watched directories is a cached negative
  answer and costs nothing more.
* ``sniff_close``, ``syscalls/sys_enter_close``: the fd is still there, so
  one never seen before (open before the monitor started) is walked before
  it goes. Fires only on close.
* ``sniff_exec`` and ``sniff_exit_group`` (``sched_process_exec`` and
  ``sched_process_exit``): sweep the cache entries of fds that exec closed
  (close-on-exec) or that exit closed, with implicit close events.
* ``sniff_fork`` (``sched_process_fork``, only with ``--pid --follow``):
  children of a followed process are followed.

A cache miss walks the fd (:mod:`.lib_paths`): once per open, or
once per fd first seen, never per read. Every way an fd is closed deletes
its entry (close, close_range, dup2/dup3 over it, exec, exit), so an fd
number reused by any later syscall (socket, pipe, accept, ...) is a miss,
never a stale answer. Entries that cannot be inserted (map full) are
counted, and the file is walked again on its next use.

Filters run here, before anything is emitted: process (``--pid``,
``--follow``, ``-p``), operation mask, failed calls, directory. With
``--aggregate`` reads and writes only add to counters in the fd cache
entry; the counts go out when the file is closed (and userspace reads them
at each interval).
"""

import platform

from pybpf.consts import BPF_F_NO_PREALLOC
from pybpf.dsl import (Config, HashMap, KernelPtr, PerCPUArray, Ptr, RingBuf, Struct, UserPtr,
                       char,
                       raw_tracepoint, s32, s64, sizeof, subprogram, tracepoint, u8, u16, u32,
                       u64)
from pybpf.dsl.kernel_types import current_btf, kernel_has_helper

from .lib_sniffwrites_records import (CAPTURE_MAX, IO_CAPTURE, IO_IMPLICIT, IO_PATH_OP,
                                  OP_CLOSE, OP_DUP, OP_OPEN, OP_READ, OP_RENAME, OP_TRUNCATE,
                                  OP_UNLINK, OP_WRITE, REC_AGG, REC_FILE, REC_IO, REC_TEXT,
                                  TEXT_GIVEN, TEXT_NAME, TEXT_NEW_NAME, Agg, Counters, FdInfo,
                                  FdKey, Io, IoCapture, ProcInfo, Text)
from .lib_sniffwrites_walk import (FILE_DELETED, FILE_DIRECTORY, FILE_HEADER, FILE_PSEUDO,
                               FILE_UNCACHED, FILE_WATCHED, PATH_MAX, compose, describe_file,
                               file_recs, kaddr, kread, scratch_box, walk, walks)
from .lib_paths import file_of_fd

# Syscall classes: how to read a syscall's arguments (settings.syscalls[nr]).
(CL_NONE, CL_READ, CL_WRITE, CL_OPEN, CL_OPENAT, CL_OPENAT2, CL_DUP, CL_DUP2, CL_FCNTL,
 CL_CLOSE_RANGE, CL_FTRUNCATE, CL_TRUNCATE, CL_UNLINK, CL_UNLINKAT, CL_RENAME,
 CL_RENAMEAT) = range(16)

#: Syscall name -> class, for the architectures we know. Absent names do not
#: exist there (aarch64 has no open, creat, dup2, rename or unlink).
SYSCALL_CLASSES = {
    "read": CL_READ, "pread64": CL_READ, "readv": CL_READ, "preadv": CL_READ,
    "preadv2": CL_READ,
    "write": CL_WRITE, "pwrite64": CL_WRITE, "writev": CL_WRITE, "pwritev": CL_WRITE,
    "pwritev2": CL_WRITE,
    "open": CL_OPEN, "creat": CL_OPEN, "openat": CL_OPENAT, "openat2": CL_OPENAT2,
    "dup": CL_DUP, "dup2": CL_DUP2, "dup3": CL_DUP2, "fcntl": CL_FCNTL,
    "close_range": CL_CLOSE_RANGE,
    "ftruncate": CL_FTRUNCATE, "truncate": CL_TRUNCATE,
    "unlink": CL_UNLINK, "rmdir": CL_UNLINK, "unlinkat": CL_UNLINKAT,
    "rename": CL_RENAME, "renameat": CL_RENAMEAT, "renameat2": CL_RENAMEAT,
}

#: Syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl and the generic
#: include/uapi/asm-generic/unistd.h that aarch64 uses).
SYSCALL_NUMBERS = {
    "x86_64": {"read": 0, "write": 1, "open": 2, "close": 3, "pread64": 17, "pwrite64": 18,
               "readv": 19, "writev": 20, "dup": 32, "dup2": 33, "fcntl": 72, "truncate": 76,
               "ftruncate": 77, "rename": 82, "rmdir": 84, "creat": 85, "unlink": 87,
               "openat": 257, "unlinkat": 263, "renameat": 264, "dup3": 292, "preadv": 295,
               "pwritev": 296, "renameat2": 316, "preadv2": 327, "pwritev2": 328,
               "close_range": 436, "openat2": 437},
    "aarch64": {"dup": 23, "dup3": 24, "fcntl": 25, "unlinkat": 35, "renameat": 38,
                "truncate": 45, "ftruncate": 46, "openat": 56, "close": 57, "read": 63,
                "write": 64, "readv": 65, "writev": 66, "pread64": 67, "pwrite64": 68,
                "preadv": 69, "pwritev": 70, "renameat2": 276, "preadv2": 286, "pwritev2": 287,
                "close_range": 436, "openat2": 437},
}
#: Where each syscall argument and the syscall number are in ``struct pt_regs``.
REGISTERS = {
    "x86_64": {"a0": "di", "a1": "si", "a2": "dx", "a3": "r10", "a4": "r8", "nr": "orig_ax"},
    "aarch64": {"a0": "regs[0]", "a1": "regs[1]", "a2": "regs[2]", "a3": "regs[3]",
                "a4": "regs[4]", "nr": "syscallno"},
}
MAX_SYSCALLS = 512
#: The syscall number and arguments lie within this many words of pt_regs.
REGS_WORDS = 16


def machine():
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())


#: close's number, for the records of closes seen from sys_enter_close
CLOSE_NR = SYSCALL_NUMBERS.get(machine(), {}).get("close", 0)
AT_FDCWD = -100
F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030
CLOSE_RANGE_CLOEXEC = 4
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
#: watched directory prefixes for absolute names of path-based operations
MAX_PREFIXES = 4
PREFIX_LEN = 256


def syscall_table():
    """settings.syscalls for this machine: a list of MAX_SYSCALLS classes."""
    numbers = SYSCALL_NUMBERS.get(machine(), {})
    table = [CL_NONE] * MAX_SYSCALLS
    for name, cls in SYSCALL_CLASSES.items():
        if name in numbers:
            table[numbers[name]] = cls
    return table


# ``settings``, frozen at load: the verifier knows the values and drops the
# code of features that are off.
settings = Config(
    self_tgid=u32,          # the monitor itself: never reported
    target_tgid=u32,        # --pid (0: any)
    follow=u8,              # --follow: children of target_tgid too (map ``followed``)
    use_comm=u8,            # -p given
    report_all=u8,          # --debug: every file, watched or not, no process/op filter
    all_files=u8,           # no -d: every file is "watched"
    failed=u8,              # --failed: report calls that failed
    aggregate=u8,           # --aggregate: count in the kernel, report at close
    capture=u32,            # --capture N (0: off)
    ops=u32,                # bit 1 << OP_*: operations to report
    comm=u64[2],            # -p, as two little-endian words of the 16-byte comm
    prefix0=char[PREFIX_LEN],   # watched dirs + "/", for absolute names of path operations
    prefix1=char[PREFIX_LEN],
    prefix2=char[PREFIX_LEN],
    prefix3=char[PREFIX_LEN],
    syscalls=u8[MAX_SYSCALLS],  # syscall number -> CL_*
    # Without a config (``pybpf verify``): this machine's syscalls, every
    # operation, failed calls too.
    defaults={"syscalls": syscall_table(), "ops": (1 << 16) - 1, "failed": 1, "capture": 64,
              "follow": 1},
)


class Call(Struct):
    """A syscall as the slow paths see it: number, result, arguments.
    Passed by pointer to the subprograms (five arguments would not do)."""
    nr: u64
    ret: s64
    a0: u64
    a1: u64
    a2: u64
    a3: u64
    tgid: u32
    cls: u32
    raw: u64[REGS_WORDS]    # the span of pt_regs the arguments come from


events = RingBuf(size=1 << 24)
# Not preallocated: creating 256k entries up front costs ~15 ms of start-up,
# and entries come and go with open files anyway (bpf_mem_alloc, Linux 6.1).
fds = HashMap(key=FdKey, value=FdInfo, max_entries=1 << 18, flags=BPF_F_NO_PREALLOC)
procs = HashMap(key=u32, value=ProcInfo, max_entries=1 << 16, flags=BPF_F_NO_PREALLOC)
followed = HashMap(key=u32, value=u8, max_entries=1 << 14)
counters = PerCPUArray(value=Counters, max_entries=1)
texts = PerCPUArray(value=Text, max_entries=2)
calls = PerCPUArray(value=Call, max_entries=1)        # the syscall, for the slow paths
captures = PerCPUArray(value=IoCapture, max_entries=1)
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


class Regs:
    """The syscall number (``regs.nr``) and first argument (``regs.a0``) in
    ``struct pt_regs`` (``ctx.args[0]`` of sys_exit): what the hot path
    needs, copied with one ``bpf_probe_read_kernel`` of the bytes they span;
    each use is a load from that copy. :meth:`read_all` copies every argument
    into a :class:`Call` (the slow paths)."""

    def __init__(self, p, address):
        self._pointer = KernelPtr("pt_regs")(address)
        self._copy = p.fetch(self._pointer, *{regs_layout()[role][0] for role in ("nr", "a0")})

    def __getattr__(self, role):
        if role not in ("nr", "a0"):
            raise AttributeError(role)
        member, index = regs_layout()[role]
        value = getattr(self._copy, member)
        return value[index] if index is not None else value

    def read_all(self, p, call):
        """``call.raw`` = the span of pt_regs holding every argument (one
        read), then the arguments out of it."""
        low, index = regs_span()
        span = 8 * (max(index.values()) + 1)       # not past pt_regs: the stack ends there
        p.helpers.probe_read_kernel(call.raw, span, kaddr(self._pointer) + low)
        for role in ("nr", "a0", "a1", "a2", "a3"):
            setattr(call, role, call.raw[index[role]])


def regs_layout():
    """Role (nr, a0..a4) -> (pt_regs member, array index or None) here."""
    from pybpf.errors import UnsupportedFeature
    names = REGISTERS.get(machine())
    if names is None:
        raise UnsupportedFeature("sniffwrites on %s (known: %s)"
                                 % (machine(), ", ".join(sorted(REGISTERS))))
    layout = {}
    for role, name in names.items():
        member, _, index = name.partition("[")
        layout[role] = (member, int(index.rstrip("]")) if index else None)
    return layout


def regs_span():
    """(offset of the first register we read, role -> u64 index from it):
    where the syscall's number and arguments are in this kernel's pt_regs."""
    from pybpf.dsl.kernel_types import kernel_struct
    regs = kernel_struct("pt_regs")
    offsets = {role: regs.member(member).offset + 8 * (index or 0)
               for role, (member, index) in regs_layout().items()}
    low = min(offsets.values())
    if max(offsets.values()) + 8 - low > 8 * REGS_WORDS:
        raise ValueError("pt_regs: the arguments span more than %d words" % REGS_WORDS)
    return low, {role: (offset - low) // 8 for role, offset in offsets.items()}


def syscall_names():
    """Number -> name for this machine (for output)."""
    return {nr: name for name, nr in SYSCALL_NUMBERS.get(machine(), {}).items()}


# --- small pieces of code, emitted where used ----------------------------------------------------

def count(p, field):
    """counters.<field> += 1 on this CPU."""
    c = counters.lookup(0)
    with p.if_(c):
        p.atomic_add(getattr(p.addr(c), field), 1)


def parent_tgid(p):
    """``current->real_parent->tgid``: what getppid() returns."""
    return p.current_task().real_parent.tgid


def process_wanted(p, tgid):
    """``--pid``/``--follow`` and ``-p``: a condition variable (u8)."""
    ok = p.var(u8, 1)
    with p.if_(settings.target_tgid != 0):
        with p.if_(settings.follow != 0):
            with p.if_(followed.lookup(tgid).is_null):
                ok.set(0)
        with p.else_():
            with p.if_(tgid != settings.target_tgid):
                ok.set(0)
    with p.if_(settings.use_comm != 0):
        name = p.stack(u64[2])
        p.helpers.get_current_comm(name)
        with p.if_((name[0] != settings.comm[0]) | (name[1] != settings.comm[1])):
            ok.set(0)
    return ok


def op_wanted(op):
    """The condition: operation ``op`` (a constant) is asked for."""
    return (settings.ops & (1 << op)) != 0


def fill_header(p, ev, kind, op, fd, flags):
    """What every record carries: who did what to which fd, and when."""
    pid_tgid = p.helpers.get_current_pid_tgid()
    ev.kind = kind
    ev.op = op
    ev.flags = flags
    ev.pid = u32(pid_tgid >> 32)
    ev.tid = u32(pid_tgid)
    ev.ppid = parent_tgid(p)
    ev.uid = u32(p.helpers.get_current_uid_gid())
    ev.fd = s32(fd)
    ev.ts = p.helpers.ktime_get_ns()
    p.helpers.get_current_comm(ev.comm)


def fill_io(p, ev, op, fd, ret, file_id, aux, nr, flags):
    """The common part of an Io record."""
    fill_header(p, ev, REC_IO, op, fd, flags)
    ev.ret = ret
    ev.file_id = file_id
    ev.aux = aux
    ev.syscall = u32(nr)
    ev.cap_len = 0


def emit_io(p, op, fd, ret, file_id, aux, nr, flags):
    with events.reserve(Io) as ev:
        fill_io(p, ev, op, fd, ret, file_id, aux, nr, flags)


def emit_agg(p, info, fd, flags):
    """The counts of one closing file (--aggregate)."""
    with events.reserve(Agg) as ev:
        fill_header(p, ev, REC_AGG, OP_CLOSE, fd, flags)
        ev.file_id = info.file_id
        ev.reads = info.reads
        ev.read_bytes = info.read_bytes
        ev.writes = info.writes
        ev.write_bytes = info.write_bytes


def reportable(info):
    """The condition: operations on this cached file are reported."""
    return ((info.flags & FILE_WATCHED) != 0) | (settings.report_all != 0)


def report_close(p, info, fd, flags):
    """A closing fd's record, if it is reported: an Agg, which is the close
    event (and, with --aggregate, the file's counts)."""
    with p.if_(reportable(info) & (op_wanted(OP_CLOSE) | (settings.aggregate != 0))):
        emit_agg(p, info, fd, flags)


# --- the walk, as subprograms ------------------------------------------------------------------

@subprogram
def track_fd(p, fd: u64, open_flags: u64) -> s64:
    """Walk ``fd`` of the current task, cache the answer under (tgid, fd)
    and, if the file is reported, send its FileRec. Returns
    ``file_id << 8 | FILE_* flags``, or -1 when the fd has no file."""
    task = p.current_task()
    file = file_of_fd(p, task, fd)
    with p.if_(file.is_null):
        p.return_(-1)
    f = p.fetch(file, "f_path")
    s = walks.lookup(0)
    with p.if_(s.is_null):
        p.return_(-1)
    info = staging.lookup(0)
    with p.if_(info.is_null):
        p.return_(-1)
    walk(p, s, task, f.f_path.mnt, f.f_path.dentry, settings.all_files)
    flags = p.var(u32, 0)
    with p.if_((s.watched != 0) | (settings.all_files != 0)):
        flags.set(FILE_WATCHED)
    s.next_id = s.next_id + 1
    file_id = p.var(u64, (u64(p.helpers.get_smp_processor_id()) << FILE_ID_CPU_SHIFT) | s.next_id)
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
        proc = procs.lookup(key.tgid)
        with p.if_(proc):
            with p.if_(proc.max_fd < u32(fd)):
                proc.max_fd = u32(fd)
        with p.else_():
            fresh = p.stack(ProcInfo, zero=True)
            fresh.max_fd = u32(fd)
            with p.if_(procs.update(key.tgid, fresh) != 0):
                count(p, "proc_map_full")
    with p.if_(((flags & FILE_WATCHED) != 0) | (settings.report_all != 0)):
        send_file(p, s, file.f_inode, file_id, flags, fd, open_flags)
    p.return_(s64((file_id << 8) | flags))


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
        events.output(rec, FILE_HEADER + (length & (PATH_MAX - 1)) + 1)


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
    s.next_id = s.next_id + 1
    file_id = p.var(u64, (u64(p.helpers.get_smp_processor_id()) << FILE_ID_CPU_SHIFT) | s.next_id)
    with p.if_(((flags & FILE_WATCHED) != 0) | (settings.report_all != 0)):
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


# --- the hooks -------------------------------------------------------------------------------

def read_text(p, slot, which, address):
    """A user string into texts[slot]; returns the Ref (or returns from the
    function if the scratch space is missing)."""
    t = texts.lookup(slot)
    with p.if_(t.is_null):
        p.return_(0)
    t.kind = REC_TEXT
    t.which = which
    t.tid = u32(p.helpers.get_current_pid_tgid())
    t.truncated = 0
    length = p.helpers.probe_read_user_str(t.text, UserPtr(address))
    t.length = s32(length)
    with p.if_(length == PATH_MAX):
        next_byte = scratch_box(p, u8)
        p.helpers.probe_read_user(next_byte, UserPtr(address) + PATH_MAX)
        with p.if_(next_byte[0] != 0):
            t.truncated = 1
    return t


def report_path_op(p, names, op, ret, file_id, aux, nr, flags):
    """A path-based operation: the Text records of its ``names`` (1, or 2
    for a rename: ``texts`` slots 0 and 1), then its Io record. Returns from
    the program."""
    slots = [texts.lookup(slot) for slot in range(names)]
    missing = slots[0].is_null
    for t in slots[1:]:
        missing = missing | t.is_null
    with p.if_(missing):
        p.return_(0)
    for t in slots:
        send_text(p, t)
    emit_io(p, op, -1, ret, file_id, aux, nr, flags)
    p.return_(0)


def send_text(p, t):
    """The Text record: its header and the string's bytes (with the NUL)."""
    size = p.var(u32, u32(t.length))
    with p.if_(t.length < 0):
        size.set(0)
    header = sizeof(Text) - PATH_MAX
    sent = p.helpers.ringbuf_output(events, t, header + (size & (PATH_MAX - 1)) + 1, 0)
    with p.if_(sent != 0):
        count(p, "text_lost")


def absolute_watched(p, t):
    """u8: an absolute name starts with one of the watched directories."""
    hit = p.var(u8, 0)
    for i in p.range(MAX_PREFIXES, unroll=True):
        prefix = getattr(settings, "prefix%d" % i)
        with p.if_(prefix[0] != 0):
            with p.if_(p.str_prefix_eq(t.text, prefix)):
                hit.set(1)
    return hit


@subprogram
def path_start(p, slot: u64, dirfd: u64) -> s64:
    """A path-based operation's name is in texts[slot]: does it concern a
    watched directory? An absolute name is compared with the watched
    directories' paths; a relative one by walking the directory it starts
    from (``dirfd``, or the cwd), sent as a FileRec if watched. Returns -1
    (not wanted), 0 (wanted, no directory) or ``dir id << 8 | flags``."""
    t = texts.lookup(slot)
    with p.if_(t.is_null):
        p.return_(-1)
    with p.if_(t.text[0] == ord("/")):
        with p.if_((settings.all_files != 0) | (settings.report_all != 0)):
            p.return_(0)
        with p.if_(absolute_watched(p, t) != 0):
            p.return_(0)
        p.return_(-1)
    result = track_dir(p, dirfd, 0)
    with p.if_(result < 0):
        p.return_(-1)
    with p.if_(((result & FILE_WATCHED) == 0) & (settings.report_all == 0)):
        p.return_(-1)
    p.return_(result)


@raw_tracepoint("sys_exit")
def sniff_exit(p, ctx):
    regs = Regs(p, ctx.args[0])
    nr = regs.nr
    with p.if_(nr >= MAX_SYSCALLS):
        p.return_(0)
    cls = p.var(u8, settings.syscalls[nr])
    with p.if_(cls == CL_NONE):
        p.return_(0)
    tgid = u32(p.helpers.get_current_pid_tgid() >> 32)
    with p.if_(tgid == settings.self_tgid):
        p.return_(0)
    ret = s64(ctx.args[1])
    # read/write family: the hot path, one lookup
    with p.if_(cls <= CL_WRITE):
        key = p.stack(FdKey)
        key.tgid = tgid
        key.fd = u32(regs.a0)
        info = fds.lookup(key)
        with p.if_(info):
            with p.if_(~reportable(info)):
                p.return_(0)
            with p.if_(settings.aggregate != 0):
                with p.if_(ret >= 0):
                    with p.if_(cls == CL_READ):
                        p.atomic_add(p.addr(info).reads, 1)
                        p.atomic_add(p.addr(info).read_bytes, u64(ret))
                    with p.else_():
                        p.atomic_add(p.addr(info).writes, 1)
                        p.atomic_add(p.addr(info).write_bytes, u64(ret))
                p.return_(0)
            report_io(p, fill_call(p, regs, ret, tgid, cls), info.file_id)
            p.return_(0)
        io_miss(p, fill_call(p, regs, ret, tgid, cls))
        p.return_(0)
    slow_path(p, fill_call(p, regs, ret, tgid, cls))


def fill_call(p, regs, ret, tgid, cls):
    """The syscall into the per-CPU ``calls`` slot, for a slow path."""
    call = calls.lookup(0)
    with p.if_(call.is_null):
        p.return_(0)
    regs.read_all(p, call)
    call.ret = ret
    call.tgid = tgid
    call.cls = cls
    return call


@subprogram
def report_io(p, call: Ptr(Call), file_id: u64) -> s64:
    """A read or write on a reported file: the filters, then the record."""
    ret = call.ret
    with p.if_((settings.report_all == 0) & (process_wanted(p, call.tgid) == 0)):
        p.return_(0)
    with p.if_((ret < 0) & (settings.failed == 0)):
        p.return_(0)
    op = p.var(u8, OP_READ)
    with p.if_(call.cls == CL_WRITE):
        op.set(OP_WRITE)
    with p.if_(((settings.ops >> u32(op)) & 1) == 0):
        p.return_(0)
    with p.if_((settings.capture != 0) & (ret > 0)):
        send_capture(p, op, call, file_id)
        p.return_(0)
    emit_io(p, op, call.a0, ret, file_id, 0, call.nr, 0)
    p.return_(0)


@subprogram
def io_miss(p, call: Ptr(Call)) -> s64:
    """A read or write on an fd not in the cache: walk it once."""
    with p.if_((settings.report_all == 0) & (process_wanted(p, call.tgid) == 0)):
        p.return_(0)
    tracked = track_fd(p, call.a0, 0)
    with p.if_(tracked < 0):
        with p.if_(call.ret >= 0):
            count(p, "walk_failed")      # it worked, but the fd was gone when we looked
        p.return_(0)
    with p.if_(((tracked & FILE_WATCHED) == 0) & (settings.report_all == 0)):
        p.return_(0)
    with p.if_(settings.aggregate != 0):
        key = p.stack(FdKey)
        key.tgid = call.tgid
        key.fd = u32(call.a0)
        info = fds.lookup(key)
        with p.if_(info):
            with p.if_(call.ret >= 0):
                with p.if_(call.cls == CL_READ):
                    p.atomic_add(p.addr(info).reads, 1)
                    p.atomic_add(p.addr(info).read_bytes, u64(call.ret))
                with p.else_():
                    p.atomic_add(p.addr(info).writes, 1)
                    p.atomic_add(p.addr(info).write_bytes, u64(call.ret))
            p.return_(0)
        count(p, "agg_lost")
        p.return_(0)
    report_io(p, call, u64(tracked) >> 8)
    p.return_(0)


def send_capture(p, op, call, file_id):
    """An Io with the first ``settings.capture`` bytes moved (readv/writev:
    of the first iovec)."""
    c = captures.lookup(0)
    with p.if_(c.is_null):
        p.return_(0)
    fill_io(p, c.io, op, call.a0, call.ret, file_id, 0, call.nr, IO_CAPTURE)
    n = p.var(u64, u64(call.ret))
    with p.if_(n > settings.capture):
        n.set(settings.capture)
    buf = p.var(u64, call.a1)
    vectored = p.var(u8, 0)
    for name in ("readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2"):
        number = SYSCALL_NUMBERS.get(machine(), {}).get(name)
        if number is not None:
            with p.if_(call.nr == number):
                vectored.set(1)
    with p.if_(vectored != 0):
        vec = p.stack(u64[2])       # struct iovec { iov_base, iov_len }
        p.helpers.probe_read_user(vec, UserPtr(call.a1))
        buf.set(vec[0])
        with p.if_(n > vec[1]):
            n.set(vec[1])
    size = p.var(u32, u32(n) & (CAPTURE_MAX - 1))
    with p.if_(n >= CAPTURE_MAX):
        size.set(CAPTURE_MAX - 1)
    p.helpers.probe_read_user(c.data, size, UserPtr(buf))
    c.io.cap_len = size
    events.output(c, sizeof(Io) + size)


@subprogram
def slow_path(p, call: Ptr(Call)) -> s64:
    cls = call.cls
    with p.if_(cls <= CL_OPENAT2):
        open_call(p, call)
        p.return_(0)
    with p.if_(cls <= CL_FCNTL):
        dup_call(p, call)
        p.return_(0)
    with p.if_(cls == CL_CLOSE_RANGE):
        close_range_call(p, call)
        p.return_(0)
    with p.if_(cls == CL_FTRUNCATE):
        ftruncate_call(p, call)
        p.return_(0)
    path_call(p, call)
    p.return_(0)


@subprogram
def close_range_call(p, call: Ptr(Call)) -> s64:
    with p.if_((call.ret != 0) | ((call.a2 & CLOSE_RANGE_CLOEXEC) != 0)):
        p.return_(0)
    sweep(p, call.tgid, u32(call.a0), u32(call.a1), SWEEP_CLOSE_RANGE)
    p.return_(0)


@subprogram
def open_call(p, call: Ptr(Call)) -> s64:
    """open, creat, openat, openat2: on success the new fd is walked (the
    cache entry of its number is replaced); the name as given goes in a
    Text record before the Io."""
    cls = call.cls
    ret = call.ret
    dirfd = p.var(u64, call.a0)
    name = p.var(u64, call.a1)
    flags = p.var(u64, call.a2)
    with p.if_(cls == CL_OPEN):
        dirfd.set(u64(AT_FDCWD))
        name.set(call.a0)
        flags.set(call.a1)
        creat = SYSCALL_NUMBERS.get(machine(), {}).get("creat")
        if creat is not None:
            with p.if_(call.nr == creat):
                flags.set(0o1101)   # O_CREAT | O_WRONLY | O_TRUNC
    with p.if_(cls == CL_OPENAT2):
        how = scratch_box(p, u64)
        p.helpers.probe_read_user(how, UserPtr(call.a2))   # open_how.flags
        flags.set(how[0])
    with p.if_(ret < 0):
        with p.if_(settings.failed == 0):
            p.return_(0)
        with p.if_(settings.report_all == 0):
            with p.if_(process_wanted(p, call.tgid) == 0):
                p.return_(0)
            with p.if_(~op_wanted(OP_OPEN)):
                p.return_(0)
        read_text(p, 0, TEXT_GIVEN, name)
        start = path_start(p, 0, dirfd)
        with p.if_(start < 0):
            p.return_(0)
        report_path_op(p, 1, OP_OPEN, ret, u64(start) >> 8, flags, call.nr, IO_PATH_OP)
    key = p.stack(FdKey)
    key.tgid = call.tgid
    key.fd = u32(ret)
    with p.if_((settings.report_all == 0) & (process_wanted(p, call.tgid) == 0)):
        fds.delete(key)          # an old answer for this fd number is stale now
        p.return_(0)
    tracked = track_fd(p, u64(ret), flags)
    with p.if_(tracked < 0):
        p.return_(0)
    with p.if_(((tracked & FILE_WATCHED) == 0) & (settings.report_all == 0)):
        p.return_(0)
    with p.if_(~op_wanted(OP_OPEN) | (settings.aggregate != 0)):
        p.return_(0)
    t = read_text(p, 0, TEXT_GIVEN, name)
    send_text(p, t)
    emit_io(p, OP_OPEN, ret, ret, u64(tracked) >> 8, flags, call.nr, 0)
    p.return_(0)


@subprogram
def dup_call(p, call: Ptr(Call)) -> s64:
    """dup, dup2, dup3, fcntl(F_DUPFD*): the new fd is the old one's file.
    dup2/dup3 closed what the new fd was (an implicit close)."""
    cls = call.cls
    with p.if_(call.ret < 0):
        p.return_(0)
    with p.if_(cls == CL_FCNTL):
        with p.if_((call.a1 != F_DUPFD) & (call.a1 != F_DUPFD_CLOEXEC)):
            p.return_(0)
    old = u32(call.a0)
    new = u32(call.ret)
    with p.if_(old == new):
        p.return_(0)
    key = p.stack(FdKey)
    key.tgid = call.tgid
    key.fd = new
    with p.if_(cls == CL_DUP2):
        gone = fds.lookup(key)
        with p.if_(gone):
            report_close(p, gone, new, IO_IMPLICIT)
            fds.delete(key)
    source = p.stack(FdKey)
    source.tgid = call.tgid
    source.fd = old
    info = fds.lookup(source)
    with p.if_(info.is_null):
        with p.if_((settings.report_all == 0) & (process_wanted(p, call.tgid) == 0)):
            p.return_(0)
        track_fd(p, u64(new), 0)
        p.return_(0)
    copy = p.stack(FdInfo, zero=True)
    copy.file_id = info.file_id
    copy.flags = info.flags
    copy.watched = info.watched
    with p.if_(fds.update(key, copy) != 0):
        count(p, "fd_map_full")
        p.return_(0)
    proc = procs.lookup(call.tgid)
    with p.if_(proc):
        with p.if_(proc.max_fd < new):
            proc.max_fd = new
    with p.if_(reportable(copy)):
        emit_io(p, OP_DUP, new, call.ret, copy.file_id, old, call.nr, 0)
    p.return_(0)


@subprogram
def ftruncate_call(p, call: Ptr(Call)) -> s64:
    with p.if_((call.ret < 0) & (settings.failed == 0)):
        p.return_(0)
    with p.if_(~op_wanted(OP_TRUNCATE) & (settings.report_all == 0)):
        p.return_(0)
    with p.if_((settings.report_all == 0) & (process_wanted(p, call.tgid) == 0)):
        p.return_(0)
    key = p.stack(FdKey)
    key.tgid = call.tgid
    key.fd = u32(call.a0)
    info = fds.lookup(key)
    file_id = p.var(u64, 0)
    with p.if_(info.is_null):
        tracked = track_fd(p, call.a0, 0)
        with p.if_(tracked < 0):
            p.return_(0)
        with p.if_(((tracked & FILE_WATCHED) == 0) & (settings.report_all == 0)):
            p.return_(0)
        file_id.set(u64(tracked) >> 8)
    with p.else_():
        with p.if_(~reportable(info)):
            p.return_(0)
        file_id.set(info.file_id)
    emit_io(p, OP_TRUNCATE, call.a0, call.ret, file_id, call.a1, call.nr, 0)
    p.return_(0)


@subprogram
def path_call(p, call: Ptr(Call)) -> s64:
    """truncate, unlink, rmdir, unlinkat, rename, renameat, renameat2: no
    fd, only names; the directory each starts from is walked."""
    cls = call.cls
    with p.if_((call.ret < 0) & (settings.failed == 0)):
        p.return_(0)
    with p.if_((settings.report_all == 0) & (process_wanted(p, call.tgid) == 0)):
        p.return_(0)
    op = p.var(u8, OP_UNLINK)
    dirfd = p.var(u64, u64(AT_FDCWD))
    name = p.var(u64, call.a0)
    aux = p.var(u64, 0)
    new_dirfd = p.var(u64, u64(AT_FDCWD))
    new_name = p.var(u64, call.a1)
    with p.if_(cls == CL_TRUNCATE):
        op.set(OP_TRUNCATE)
        aux.set(call.a1)
    with p.elif_(cls == CL_UNLINKAT):
        dirfd.set(call.a0)
        name.set(call.a1)
        aux.set(call.a2)      # AT_REMOVEDIR
    with p.elif_(cls == CL_UNLINK):
        rmdir = SYSCALL_NUMBERS.get(machine(), {}).get("rmdir")
        if rmdir is not None:
            with p.if_(call.nr == rmdir):
                aux.set(0x200)    # AT_REMOVEDIR
    with p.elif_(cls == CL_RENAMEAT):
        op.set(OP_RENAME)
        dirfd.set(call.a0)
        name.set(call.a1)
        new_dirfd.set(call.a2)
        new_name.set(call.a3)
    with p.else_():
        op.set(OP_RENAME)
    with p.if_(((settings.ops >> u32(op)) & 1 == 0) & (settings.report_all == 0)):
        p.return_(0)
    read_text(p, 0, TEXT_NAME, name)
    start = path_start(p, 0, dirfd)
    flags = p.var(u16, IO_PATH_OP)
    file_id = p.var(u64, 0)
    with p.if_(start > 0):
        file_id.set(u64(start) >> 8)
    with p.if_(op == OP_RENAME):
        read_text(p, 1, TEXT_NEW_NAME, new_name)
        start2 = path_start(p, 1, new_dirfd)
        with p.if_((start < 0) & (start2 < 0)):
            p.return_(0)
        with p.if_(start2 > 0):
            aux.set(u64(start2) >> 8)
        report_path_op(p, 2, op, call.ret, file_id, aux, call.nr, flags)
    with p.if_(start < 0):
        p.return_(0)
    report_path_op(p, 1, op, call.ret, file_id, aux, call.nr, flags)


@tracepoint("syscalls", "sys_enter_close")
def sniff_close(p, ctx):
    """close(fd): the fd is still open here, so even one never seen before
    is walked; its entry goes now, so that nothing can reuse it."""
    pid_tgid = p.helpers.get_current_pid_tgid()
    tgid = u32(pid_tgid >> 32)
    with p.if_(tgid == settings.self_tgid):
        p.return_(0)
    fd = u32(ctx.fd)
    key = p.stack(FdKey)
    key.tgid = tgid
    key.fd = fd
    info = fds.lookup(key)
    with p.if_(info.is_null):
        with p.if_((settings.report_all == 0) & (process_wanted(p, tgid) == 0)):
            p.return_(0)
        tracked = track_fd(p, u64(fd), 0)
        with p.if_(tracked < 0):
            p.return_(0)
        again = fds.lookup(key)
        with p.if_(again.is_null):
            with p.if_((((tracked & FILE_WATCHED) != 0) | (settings.report_all != 0))
                       & op_wanted(OP_CLOSE) & (settings.aggregate == 0)):
                emit_io(p, OP_CLOSE, fd, 0, u64(tracked) >> 8, 0, CLOSE_NR, 0)
            p.return_(0)
        close_cached(p, again, key, fd, tgid)
        p.return_(0)
    close_cached(p, info, key, fd, tgid)


def close_cached(p, info, key, fd, tgid):
    with p.if_((settings.report_all != 0) | (process_wanted(p, tgid) != 0)):
        report_close(p, info, fd, 0)
    fds.delete(key)


@raw_tracepoint("sched_process_exec")
def sniff_exec(p, ctx):
    """After exec: the close-on-exec fds are gone from the table."""
    tgid = u32(p.helpers.get_current_pid_tgid() >> 32)
    sweep(p, tgid, 0, 0xFFFFFFFF, SWEEP_EXEC)


def _exit_passes_group_dead() -> bool:
    """Whether sched_process_exit has its group_dead argument (Linux 6.16):
    this kernel's BTF has the prototype, btf_trace_sched_process_exit =
    void (*)(void *, struct task_struct *[, bool group_dead])."""
    btf = current_btf()
    typedef = btf.find("btf_trace_sched_process_exit")
    return btf.type(btf.type(typedef.type).type).vlen >= 3


@raw_tracepoint("sched_process_exit")
def sniff_exit_group(p, ctx):
    """The last thread of a process exits (args: task[, group_dead]): every
    fd it had goes."""
    if _exit_passes_group_dead():
        with p.if_(ctx.args[1] & 0xFF == 0):
            p.return_(0)
    else:
        # Older kernels: do_exit() has counted this thread out of signal->live
        # before the tracepoint, so the last one sees 0 (a thread exiting at the
        # same time may see 0 too: the sweep is idempotent).
        task = KernelPtr("task_struct")(ctx.args[0])
        with p.if_(task.signal.live.counter != 0):
            p.return_(0)
    tgid = u32(p.helpers.get_current_pid_tgid() >> 32)
    with p.if_(settings.follow != 0):
        followed.delete(tgid)
    sweep(p, tgid, 0, 0xFFFFFFFF, SWEEP_EXIT)


@raw_tracepoint("sched_process_fork")
def sniff_fork(p, ctx):
    """--follow: a followed process's children are followed (args: parent, child)."""
    tgid = u32(p.helpers.get_current_pid_tgid() >> 32)
    with p.if_(followed.lookup(tgid).is_null):
        p.return_(0)
    child = u32(KernelPtr("task_struct")(ctx.args[1]).tgid)
    with p.if_(child != tgid):
        followed.update(child, u8(1))
