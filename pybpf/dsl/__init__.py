"""The DSL in which pybpf's eBPF programs are written, in Python.

Programs read top-down like their C: no register numbers, stack offsets or
jump offsets. A program is a function decorated with its attach point; it
receives ``p`` (statements, :mod:`.builder`) and ``ctx`` (the context,
:mod:`.context`):

.. code-block:: python

    from pybpf.dsl import BPF_NOEXIST, HashMap, raw_tracepoint, u32, u64

    counts = HashMap(key=u32, value=u64, max_entries=10240)

    @raw_tracepoint("sys_enter")
    def count_syscalls(p, ctx):
        pid = u32(p.helpers.get_current_pid_tgid() >> 32)
        count = counts.lookup(pid)
        with p.if_(count):
            p.atomic_add(count, 1)
        with p.else_():
            counts.update(pid, u64(1), BPF_NOEXIST)

Modules, one job each: :mod:`.types` (integers, structs, arrays),
:mod:`.values` (operators, typing, folding), :mod:`.memory` (fields and
pointers), :mod:`.kernel_types` and :mod:`.kernel_memory` (kernel structs at
this kernel's BTF offsets: ``p.current_task().real_parent.tgid``), :mod:`.regalloc` and :mod:`.frame` (registers and stack),
:mod:`.codegen`, :mod:`.calls` and :mod:`.locations` (instructions),
:mod:`.peephole`, :mod:`.builder` (statements), :mod:`.helpers`,
:mod:`.maps`, :mod:`.config`, :mod:`.context`, :mod:`.packet` (XDP and tc
contexts, packet headers) and :mod:`.byteorder` (``be16``/``be32``),
:mod:`.histograms` (``Log2Hist``, ``LinearHist``), :mod:`.stacks`
(``StackTrace``, ``p.get_stackid``),
:mod:`.subprogram` (``@subprogram`` declarations), :mod:`.program` (program
declarations), :mod:`.build` (the build driver), :mod:`.specs` (programs to
a :class:`~pybpf.spec.CollectionSpec`, which :class:`pybpf.loader.Collection`
loads) and :mod:`.functions_btf` (func_info for the loader).
"""

from ..errors import ProgramBuildError
from .config import Config
from ..consts import BPF_ANY, BPF_EXIST, BPF_NOEXIST
from .maps import (ArrayMap, HashMap, LRUHashMap, PerCPUArray, PerCPUHash, PerfEventArray,
                   RingBuf)
from .stacks import StackTrace
from .byteorder import be16, be32
from .histograms import LinearHist, Log2Hist
from .program import ProgramDecl, raw_tracepoint, tc, tracepoint, xdp
from .specs import collection_spec
from .subprogram import Subprogram, subprogram
from .kernel_types import KernelPtr
from .types import (Ptr, Struct, UserPtr, alignof, char, offsetof, s8, s16, s32, s64, sizeof, u8,
                    u16, u32, u64)
from .values import Cond, Value, Var

__all__ = [
    "ArrayMap", "BPF_ANY", "BPF_EXIST", "BPF_NOEXIST", "Cond", "Config",
    "HashMap", "KernelPtr", "LRUHashMap", "LinearHist", "Log2Hist", "PerCPUArray", "PerCPUHash", "PerfEventArray",
    "ProgramDecl", "ProgramBuildError", "Ptr", "RingBuf", "StackTrace", "Struct", "Subprogram", "UserPtr", "Value", "Var",
    "alignof", "be16", "be32", "char", "collection_spec", "offsetof", "raw_tracepoint", "s16",
    "s32", "s64", "s8", "sizeof", "subprogram", "tc", "tracepoint", "u16", "u32", "u64", "u8",
    "xdp",
]
