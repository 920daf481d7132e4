"""Every openat/openat2: pid, comm, flags, result and the whole path.

Mirrors ``tools/clang/opensnoop.c``. The enter tracepoints remember the
path pointer and flags by thread; the exit tracepoints send one event per
call through the ring buffer, with the path read from user memory then
(the kernel has copied it by then, so its page is resident).

Paths are never cut silently: ``path`` holds PATH_MAX bytes, ``path_len``
is what ``bpf_probe_read_user_str`` returned (the length with its NUL, or
-errno), and ``truncated`` is set when the user's string went on past the
buffer (only possible for a name the kernel refused with ENAMETOOLONG).
"""

from pybpf.dsl import (HashMap, RingBuf, Struct, UserPtr, char, s32, sizeof, tracepoint, u8,
                       u32, u64)

PATH_MAX = 4096
OPENAT, OPENAT2 = 0, 1


class Args(Struct):
    """What the enter tracepoint leaves for the exit tracepoint."""
    filename: UserPtr
    flags: u32
    syscall: u32


class Event(Struct):
    pid: u32
    tid: u32
    uid: u32
    flags: u32
    ret: s32
    path_len: s32
    truncated: u8
    syscall: u8
    comm: char[16]
    path: char[PATH_MAX]


start = HashMap(key=u64, value=Args, max_entries=10240)
events = RingBuf(size=1 << 22)


@tracepoint("syscalls", "sys_enter_openat")
def enter_openat(p, ctx):
    args = p.stack(Args)
    args.filename = ctx.filename
    args.flags = ctx.flags
    args.syscall = OPENAT
    start.update(p.helpers.get_current_pid_tgid(), args)


@tracepoint("syscalls", "sys_enter_openat2")
def enter_openat2(p, ctx):
    args = p.stack(Args)
    args.filename = ctx.filename
    args.flags = 0
    p.helpers.probe_read_user(p.addr(args).flags, ctx.how)   # open_how.flags, low half
    args.syscall = OPENAT2
    start.update(p.helpers.get_current_pid_tgid(), args)


def send_event(p, ret):
    """The exit side, shared by both exit tracepoints."""
    id = p.helpers.get_current_pid_tgid()
    args = start.lookup(id)
    with p.if_(args.is_null):
        p.return_(0)
    with events.reserve(Event) as ev:
        ev.pid = u32(id >> 32)
        ev.tid = u32(id)
        ev.uid = u32(p.helpers.get_current_uid_gid())
        ev.flags = args.flags
        ev.ret = ret
        ev.syscall = args.syscall
        p.helpers.get_current_comm(ev.comm)
        length = p.helpers.probe_read_user_str(ev.path, args.filename)
        ev.path_len = length
        ev.truncated = 0
        with p.if_(length == sizeof(ev.path)):
            next_byte = p.stack(char[1])
            p.helpers.probe_read_user(next_byte, args.filename + (PATH_MAX - 1))
            with p.if_(next_byte[0] != 0):
                ev.truncated = 1
    start.delete(id)


@tracepoint("syscalls", "sys_exit_openat")
def exit_openat(p, ctx):
    send_event(p, ctx.ret)


@tracepoint("syscalls", "sys_exit_openat2")
def exit_openat2(p, ctx):
    send_event(p, ctx.ret)
