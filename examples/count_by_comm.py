"""``bpftrace -e 'tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }'``:
syscalls per process name."""

import sys

from pybpf.dsl import HashMap, Struct, char, raw_tracepoint, u64

from .run import main


class Comm(Struct):
    name: char[16]


counts = HashMap(key=Comm, value=u64, max_entries=10240)


@raw_tracepoint("sys_enter")
def count_syscalls(p, ctx):
    comm = p.stack(Comm, zero=True)
    p.helpers.get_current_comm(comm.name)
    count = counts.lookup(comm)
    with p.if_(count):
        p.atomic_add(count, 1)
    with p.else_():
        counts.update(comm, u64(1))


def report(loaded) -> str:
    """bpftrace's ``@[comm]: count`` lines, smallest first as bpftrace prints them."""
    rows = sorted(((comm.name, n) for comm, n in loaded.maps.counts.items()), key=lambda r: r[1])
    return "".join("@[%s]: %d\n" % row for row in rows)


if __name__ == "__main__":
    main(sys.modules[__name__], report)
