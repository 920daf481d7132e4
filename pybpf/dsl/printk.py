"""``p.printk("fmt %d", a, b)``: a line in the kernel's trace buffer, for debugging.

The format string goes to read-only data, as clang puts a string literal
in ``.rodata``: a frozen one-entry map per format (a
:class:`~.config.Config` holding it, named after its checksum so that
every program printing it shares one), addressed directly by the program.
Up to three arguments use ``bpf_trace_printk``; more (up to twelve,
Linux 5.16) ``bpf_trace_vprintk`` with the arguments in a ``u64`` array on
the stack. Read the lines with ``pybpf trace`` (the trace_pipe file of
tracefs), or ``cat /sys/kernel/tracing/trace_pipe``.
"""

import re
import zlib
from typing import Any, Dict

from ..helper_defs import HELPERS
from .config import Config
from .helpers import call_helper
from .kernel_types import kernel_has_helper
from .types import char, u64
from .values import as_value, build_error, convert

#: bpf_trace_printk takes three arguments; bpf_trace_vprintk up to
#: MAX_BPRINTF_VARARGS (kernel/bpf/helpers.c).
PRINTK_ARGS, VPRINTK_ARGS = 3, 12

_CONVERSION = re.compile(rb"%%|%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z)?[a-zA-Z]")
_FORMATS: Dict[bytes, Config] = {}


def format_config(fmt: bytes) -> Config:
    """The read-only map holding ``fmt`` (one per distinct format)."""
    config = _FORMATS.get(fmt)
    if config is None:
        name = "printk_%08x" % zlib.crc32(fmt)
        config = Config(name=name, defaults={name: fmt}, **{name: char[len(fmt) + 1]})
        _FORMATS[fmt] = config
    return config


def printk(p: Any, fmt: Any, args: tuple) -> Any:
    """Emit the call; returns what the helper returns (bytes written, or -errno)."""
    data = fmt.encode() if isinstance(fmt, str) else fmt
    if not isinstance(data, bytes):
        raise build_error("p.printk() takes the format as a constant string, not %r" % (fmt,))
    wanted = sum(1 for m in _CONVERSION.findall(data) if m != b"%%")
    if wanted != len(args):
        raise build_error("the format %r has %d conversions but p.printk() got %d arguments"
                          % (data, wanted, len(args)))
    config = format_config(data)
    text = getattr(config, config.name)          # a Ref to the string in the map
    values = [as_value(arg) for arg in args]
    if len(values) <= PRINTK_ARGS:
        return call_helper(p, HELPERS["bpf_trace_printk"], (text,), {}, variadic=values)
    if len(values) > VPRINTK_ARGS:
        raise build_error("p.printk() takes at most %d arguments, not %d"
                          % (VPRINTK_ARGS, len(values)))
    if not kernel_has_helper("bpf_trace_vprintk"):
        raise build_error("more than %d p.printk() arguments need bpf_trace_vprintk "
                          "(Linux 5.16), which this kernel lacks" % PRINTK_ARGS)
    array = p.stack(u64[len(values)])
    for i, value in enumerate(values):
        array[i] = convert(value, u64)
    return p.helpers.trace_vprintk(text, array)
