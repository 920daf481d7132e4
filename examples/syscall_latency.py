"""Time spent per syscall: calls and total nanoseconds by syscall number,
from the raw ``sys_enter``/``sys_exit`` tracepoints (bcc's ``syscount -L``)."""

import sys

from pybpf.dsl import HashMap, Struct, raw_tracepoint, u32, u64

from .run import main


class Start(Struct):
    ns: u64
    id: u32


class Spent(Struct):
    calls: u64
    ns: u64


started = HashMap(key=u64, value=Start, max_entries=10240)     # by thread
spent = HashMap(key=u32, value=Spent, max_entries=1024)        # by syscall number


@raw_tracepoint("sys_enter")
def syscall_enter(p, ctx):
    start = p.stack(Start, zero=True)
    start.ns = p.helpers.ktime_get_ns()
    start.id = u32(ctx.args[1])                                  # the syscall number
    started.update(p.helpers.get_current_pid_tgid(), start)


@raw_tracepoint("sys_exit")
def syscall_exit(p, ctx):
    tid = p.var(u64, p.helpers.get_current_pid_tgid())
    start = started.lookup(tid)
    with p.if_(start.is_null):
        p.return_(0)
    delta = p.var(u64, p.helpers.ktime_get_ns() - start.ns)
    key = p.var(u32, start.id)
    started.delete(tid)
    total = spent.lookup(key)
    with p.if_(total):
        p.atomic_add(p.addr(total).calls, 1)
        p.atomic_add(p.addr(total).ns, delta)
    with p.else_():
        first = p.stack(Spent)
        first.calls = 1
        first.ns = delta
        spent.update(key, first)


def report(loaded) -> str:
    """``SYSCALL CALLS TOTAL_US`` lines, most time first."""
    rows = sorted(loaded.maps.spent.items(), key=lambda item: -item[1].ns)
    return "%-8s %10s %12s\n" % ("SYSCALL", "CALLS", "TOTAL_US") + "".join(
        "%-8d %10d %12d\n" % (number, s.calls, s.ns // 1000) for number, s in rows)


if __name__ == "__main__":
    main(sys.modules[__name__], report)
