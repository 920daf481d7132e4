"""Bytes written per process name: ``bpftrace -e 'tracepoint:syscalls:sys_exit_write
/args->ret > 0/ { @[comm] = sum(args->ret); }'``."""

import sys

from pybpf.dsl import HashMap, Struct, char, s64, tracepoint, u64

from .run import main


class Comm(Struct):
    name: char[16]


written = HashMap(key=Comm, value=u64, max_entries=10240)


@tracepoint("syscalls", "sys_exit_write")
def count_written(p, ctx):
    ret = s64(ctx.ret)
    with p.if_(ret > 0):
        comm = p.stack(Comm, zero=True)
        p.helpers.get_current_comm(comm.name)
        total = written.lookup(comm)
        with p.if_(total):
            p.atomic_add(total, ret)
        with p.else_():
            written.update(comm, ret)


def report(loaded) -> str:
    """``comm bytes`` lines, most bytes first."""
    rows = sorted(((comm.name, total) for comm, total in loaded.maps.written.items()),
                  key=lambda r: -r[1])
    return "".join("%-16s %12d\n" % row for row in rows)


if __name__ == "__main__":
    main(sys.modules[__name__], report)
