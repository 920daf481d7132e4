"""Programs: declare with a decorator, build, inspect.

.. code-block:: python

    @raw_tracepoint("sys_enter")
    def count_syscalls(p, ctx):
        ...

    count_syscalls.build()                 # -> asm.AssembledProgram
    print(count_syscalls.disasm())         # source lines between instructions
    spec = collection_spec(module)         # -> pybpf.spec.CollectionSpec, see .specs

    @xdp                                   # packet programs (see .packet)
    def xdp_count(p, ctx):
        ...

A :class:`ProgramDecl` is the declaration: the function, its program type
and attach point. Building it (:mod:`.build`) gives its code; the
collection of programs and maps to load is a
:class:`~pybpf.spec.CollectionSpec` (:func:`.specs.collection_spec`), which
:class:`pybpf.loader.Collection` loads and attaches.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import asm as _asm
from .. import disasm as _disasm
from ..consts import (BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_SCHED_CLS,
                      BPF_PROG_TYPE_TRACEPOINT, BPF_PROG_TYPE_XDP)
from ..errors import SourceLocation
from ..kernel.tracefs import split_name, tracepoint_format
from .build import Built, build_program
from .codegen import FunctionCode
from .context import RawTracepointContext, TracepointContext
from .kernel_types import btf_override
from .packet import SkbContext, XdpContext
from .subprogram import Subprogram

#: The instruction set version programs are built for unless they ask (cpu v3: Linux 5.1).
DEFAULT_CPU = 3


class ProgramDecl:
    """One eBPF program written in the DSL (made by :func:`tracepoint`,
    :func:`raw_tracepoint`, :func:`xdp` or :func:`tc`): the declaration,
    which builds to code; loading is :class:`pybpf.loader.Collection`'s.

    ``returns_verdict`` makes it a build error for the function to reach its
    end without ``p.return_()``: the implicit ``return 0`` is a silent
    ``XDP_ABORTED`` for an XDP program."""

    def __init__(self, fn: Callable, prog_type: int, target: str,
                 context: Callable[[FunctionCode], Any], *, name: Optional[str] = None,
                 license: str = "GPL", cpu: int = DEFAULT_CPU, returns_verdict: bool = False):
        self.fn = fn
        self.name = name or fn.__name__
        self.prog_type = prog_type
        self.target = target
        self.license = license
        self.cpu = cpu
        self.returns_verdict = returns_verdict
        self._context = context
        # builds by (instruction set version, BTF built against: None for the running kernel's)
        self._built: Dict[Tuple[int, Any], Built] = {}
        code = fn.__code__
        self.location = SourceLocation(code.co_filename, code.co_firstlineno)

    def __repr__(self) -> str:
        return "<ProgramDecl %s (%s)>" % (self.name, self.target)

    def build(self, cpu: Optional[int] = None) -> _asm.AssembledProgram:
        """The finished code, built once per instruction set version and
        per BTF it was built against (:func:`~pybpf.dsl.kernel_types.using_btf`)."""
        return self._build(cpu or self.cpu)[0]

    def map_decls(self, cpu: Optional[int] = None) -> Dict[str, Any]:
        """The maps the program references, by name."""
        return self._build(cpu or self.cpu)[1]

    def subprograms(self, cpu: Optional[int] = None) -> List[Subprogram]:
        """The subprograms the program calls, in the order they follow it."""
        return self._build(cpu or self.cpu)[2]

    def prebuilt(self, code: _asm.AssembledProgram, maps: Dict[str, Any],
                 subprograms: List[Subprogram]) -> None:
        """Take a build made earlier for the running kernel (sniffwrites'
        build cache) instead of building again."""
        self._built[(self.cpu, None)] = (code, maps, subprograms)

    def _build(self, cpu: int) -> Built:
        key = (cpu, btf_override())
        if key not in self._built:
            self._built[key] = build_program(self.name, self.fn, self._context, cpu,
                                             self.returns_verdict, self.location)
        return self._built[key]

    def disasm(self, source: bool = True, style: str = "annotated",
               cpu: Optional[int] = None) -> str:
        """The program as text; with ``source`` the Python line above the
        instructions it emitted."""
        return _disasm.disassemble(self.build(cpu), style=style, source=source)


def tracepoint(category: str, name: Optional[str] = None, *, format: Any = None,
               cpu: int = DEFAULT_CPU, license: str = "GPL") -> Callable[[Callable], ProgramDecl]:
    """``@tracepoint("syscalls", "sys_enter_openat")`` (or
    ``"syscalls/sys_enter_openat"``). ``ctx.<field>`` reads the record by
    the tracepoint's format, read from tracefs when the program is built
    (or given as a :class:`~pybpf.kernel.tracefs.TracepointFormat`)."""
    if name is None:
        category, name = split_name(category)

    def context(code: FunctionCode) -> TracepointContext:
        fmt = format
        if fmt is None:
            fmt = tracepoint_format(category, name)
        return TracepointContext(code, fmt)

    def decorate(fn: Callable) -> ProgramDecl:
        return ProgramDecl(fn, BPF_PROG_TYPE_TRACEPOINT, "%s/%s" % (category, name), context,
                       cpu=cpu, license=license)
    return decorate


def raw_tracepoint(name: str, *, cpu: int = DEFAULT_CPU,
                   license: str = "GPL") -> Callable[[Callable], ProgramDecl]:
    """``@raw_tracepoint("sys_enter")``: ``ctx.args[i]`` (``u64``) are the
    tracepoint's arguments, as its ``TP_PROTO`` lists them:

    * ``sys_enter``: ``ctx.args[0]`` is the ``struct pt_regs *`` of the
      call (the syscall's own arguments are read from it), ``ctx.args[1]``
      the syscall number;
    * ``sys_exit``: ``ctx.args[0]`` is the ``struct pt_regs *``,
      ``ctx.args[1]`` the return value (a negative errno on failure; the
      syscall number is in the registers, ``orig_ax`` on x86-64).

    A raw tracepoint is cheaper than ``@tracepoint("raw_syscalls", ...)``:
    no record is built for it."""
    def decorate(fn: Callable) -> ProgramDecl:
        return ProgramDecl(fn, BPF_PROG_TYPE_RAW_TRACEPOINT, name,
                       lambda code: RawTracepointContext(code, name), cpu=cpu, license=license)
    return decorate


def xdp(fn: Optional[Callable] = None, *, cpu: int = DEFAULT_CPU,
        license: str = "GPL") -> Any:
    """``@xdp`` (or ``@xdp(cpu=4)``): an XDP program, run on each frame an
    interface receives before the kernel makes an skb of it. ``ctx`` is an
    :class:`~.packet.XdpContext`; every path returns a verdict (``XDP_PASS``,
    ``XDP_DROP``, ... from :mod:`pybpf.net`). Attach it with
    :meth:`pybpf.loader.Collection.attach_xdp`."""
    return _network_program(fn, BPF_PROG_TYPE_XDP, "xdp", XdpContext, cpu, license)


def tc(fn: Optional[Callable] = None, *, cpu: int = DEFAULT_CPU, license: str = "GPL") -> Any:
    """``@tc``: a tc classifier (``BPF_PROG_TYPE_SCHED_CLS``) in
    direct-action mode, run on each packet an interface receives (ingress)
    or sends (egress). ``ctx`` is an :class:`~.packet.SkbContext`; every
    path returns a ``TC_ACT_*`` verdict. Attach it with
    :meth:`pybpf.loader.Collection.attach_tc`."""
    return _network_program(fn, BPF_PROG_TYPE_SCHED_CLS, "tc", SkbContext, cpu, license)


def _network_program(fn: Optional[Callable], prog_type: int, section: str, context: Any,
                     cpu: int, license: str) -> Any:
    """The decorator, applied to ``fn`` when it was used bare. The target
    is the ELF section name libbpf gives such programs (the interface comes
    at attach time)."""
    def decorate(function: Callable) -> ProgramDecl:
        return ProgramDecl(function, prog_type, section, context, cpu=cpu, license=license,
                       returns_verdict=True)
    return decorate if fn is None else decorate(fn)
