"""sniffwrites' kernel side: the programs it attaches.

Mirrors the seed tool (open/read/write/close events with pid, fd, comm and
file name, an fd -> file map in the kernel, per-CPU scratch space) with its
limitations solved; ``sniffwrites/`` outside this package is the userspace
half.

Hooks (see the README's "sniffwrites design" for the measurements behind them):

* ``sniff_sys_exit``, the raw ``sys_exit`` tracepoint: one program for every
  syscall. ``pt_regs`` (``ctx.args[0]``) holds the syscall number and its
  arguments, ``ctx.args[1]`` the result. A table in the frozen settings maps
  the number to a class (:mod:`~sniffwrites.bpf.syscalls`); anything else
  returns after one read. Reads and writes need one lookup in the fd cache
  (:mod:`~sniffwrites.bpf.fdcache`): a file outside the watched directories
  is a cached negative answer and costs nothing more. Everything else goes
  to a subprogram of :mod:`~sniffwrites.bpf.handlers`.
* ``sniff_close``, ``syscalls/sys_enter_close``: the fd is still there, so
  one never seen before (open before the monitor started) is walked before
  it goes. Fires only on close.
* ``sniff_exec`` and ``sniff_proc_exit`` (``sched_process_exec`` and
  ``sched_process_exit`` of a process's last thread): sweep the cache
  entries of fds that exec closed (close-on-exec) or that exit closed, with
  implicit close events. (Program names stay within the kernel's 15
  characters, so listings show them whole.)
* ``sniff_fork`` (``sched_process_fork``, only with ``--pid --follow``):
  children of a followed process are followed.

Filters run before anything is emitted (:mod:`~sniffwrites.bpf.settings`):
process (``--pid``, ``--follow``, ``-p``), operation mask, failed calls,
directory. With ``--aggregate`` reads and writes only add to counters in
the fd cache entry; the counts go out when the file is closed (and
userspace reads them at each interval).
"""

import sys

from pybpf.dsl import KernelPtr, raw_tracepoint, s64, tracepoint, u8, u32, u64
from pybpf.dsl.kernel_types import current_btf
from pybpf.programs import lib_paths

from . import copies, emit, fdcache, handlers, syscalls, walk
from . import settings as settings_module
from .emit import emit_io
from .fdcache import (SWEEP_EXEC, SWEEP_EXIT, count_io, fds, file_id_of, report_close, sweep,
                      track_fd)
from .handlers import fill_call, io_miss, report_io, slow_path
from .records import OP_CLOSE, FdKey
from .settings import followed, op_wanted, process_filtered_out, reported, settings
from .syscalls import CL_NONE, CL_WRITE, CLOSE_NR, MAX_SYSCALLS, Regs


@raw_tracepoint("sys_exit")
def sniff_sys_exit(p, ctx):
    """Every syscall's exit: the read/write hot path, or a slow path."""
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
            with p.if_(~reported(info.flags)):
                p.return_(0)
            with p.if_(settings.aggregate != 0):
                count_io(p, info, cls, ret)
                p.return_(0)
            report_io(p, fill_call(p, regs, ret, tgid, cls), info.file_id)
            p.return_(0)
        io_miss(p, fill_call(p, regs, ret, tgid, cls))
        p.return_(0)
    slow_path(p, fill_call(p, regs, ret, tgid, cls))


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
        with p.if_(process_filtered_out(p, tgid)):
            p.return_(0)
        tracked = track_fd(p, u64(fd), 0)
        with p.if_(tracked < 0):
            p.return_(0)
        again = fds.lookup(key)
        with p.if_(again.is_null):
            with p.if_(reported(tracked) & op_wanted(OP_CLOSE) & (settings.aggregate == 0)):
                emit_io(p, OP_CLOSE, fd, 0, file_id_of(tracked), CLOSE_NR)
            p.return_(0)
        close_cached(p, again, key, fd, tgid)
        p.return_(0)
    close_cached(p, info, key, fd, tgid)


def close_cached(p, info, key, fd, tgid):
    with p.if_(~process_filtered_out(p, tgid)):
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
def sniff_proc_exit(p, ctx):
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


#: The programs a monitor loads (``sniff_fork`` only to follow).
PROGRAMS = (sniff_sys_exit, sniff_close, sniff_exec, sniff_proc_exit, sniff_fork)
#: Every module the programs' code comes from: where the build cache finds
#: their maps and subprograms by name, and whose folders' sources it hashes
#: (this package, and programs/ for lib_paths).
SOURCE_MODULES = (sys.modules[__name__], handlers, copies, fdcache, emit, walk, settings_module,
                  syscalls, lib_paths)
