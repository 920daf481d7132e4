"""Every exec, as it happens, through a ring buffer (bcc's ``execsnoop``):
pid, parent pid, process name and the file executed."""

import sys
import time

from pybpf.dsl import RingBuf, Struct, char, s32, tracepoint, u32

from .run import main


class Exec(Struct):
    pid: u32
    ppid: u32
    name_len: s32                 # what probe_read_user_str returned
    comm: char[16]
    filename: char[256]


execs = RingBuf(size=1 << 18)


@tracepoint("syscalls", "sys_enter_execve")
def exec_enter(p, ctx):
    with execs.reserve(Exec) as ev:
        ev.pid = u32(p.helpers.get_current_pid_tgid() >> 32)
        ev.ppid = p.current_task().real_parent.tgid
        p.helpers.get_current_comm(ev.comm)
        ev.name_len = p.helpers.probe_read_user_str(ev.filename, ctx.filename)


def line(ev) -> str:
    """One exec as ``PID PPID COMM FILENAME``."""
    return "%-7d %-7d %-16s %s\n" % (ev.pid, ev.ppid, ev.comm, ev.filename)


def follow(loaded, seconds: float) -> None:
    """Print each exec as it comes, for ``seconds``."""
    print("%-7s %-7s %-16s %s" % ("PID", "PPID", "COMM", "FILENAME"), flush=True)
    reader = loaded.reader(execs, Exec)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reader.poll(lambda ev: print(line(ev), end="", flush=True),
                    timeout=min(1.0, max(deadline - time.monotonic(), 0)))


if __name__ == "__main__":
    main(sys.modules[__name__], lambda loaded: "", wait=follow)
