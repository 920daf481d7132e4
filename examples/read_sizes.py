"""A log2 histogram of read sizes: ``bpftrace -e 'tracepoint:syscalls:sys_exit_read
{ @bytes = hist(args->ret); }'`` (errors are the negative bucket)."""

import sys

from pybpf.dsl import Log2Hist, s64, tracepoint

from .run import main

sizes = Log2Hist()


@tracepoint("syscalls", "sys_exit_read")
def read_size(p, ctx):
    sizes.increment(s64(ctx.ret))


def report(loaded) -> str:
    """The histogram as bpftrace prints it."""
    return "@bytes: \n" + sizes.histogram(loaded.maps.sizes).bpftrace()


if __name__ == "__main__":
    main(sys.modules[__name__], report)
