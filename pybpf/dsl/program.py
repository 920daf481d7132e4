"""Programs: declare with a decorator, build, inspect, load, attach.

.. code-block:: python

    @raw_tracepoint("sys_enter")
    def count_syscalls(p, ctx):
        ...

    count_syscalls.build()                 # -> asm.AssembledProgram
    print(count_syscalls.disasm())         # source lines between instructions
    with Collection.from_module(module).load(config={...}).attach() as loaded:
        loaded.maps["counts"] ...

    @xdp                                   # packet programs (see .packet)
    def xdp_count(p, ctx):
        ...
    with Collection([xdp_count]).load().attach_xdp("eth0", mode="generic"):
        ...

Building runs the program function twice (see :mod:`pybpf.dsl.regalloc`),
then each ``@subprogram`` it calls, appended after it as bpf-to-bpf
functions. A :class:`Collection` loads several programs that share maps
(opensnoop's enter/exit pair): it creates each map once, fills and freezes
configs, loads every program, attaches them, and closes all of it on
``close()`` or at the end of a ``with`` block, also when loading fails half
way.
"""

import dis
import inspect
from contextlib import ExitStack
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from .. import asm as _asm
from ..consts import (BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_TRACEPOINT,
                      BPF_PROG_TYPE_XDP)
from ..errors import AssemblyError, ProgramBuildError, ProgramTypeError, SourceLocation
from .builder import Builder
from .codegen import FunctionCode, building
from .context import RawTracepointContext, TracepointContext
from .frame import MAX_STACK, Frame
from .functions_btf import function_btf
from .memory import pointer_ref
from .packet import SkbContext, XdpContext
from .regalloc import Allocator, TraceAllocator, analyse
from .types import PointerType, as_type, s64

#: Program types attached to a network interface rather than a tracepoint.
NETWORK_PROGRAMS = {BPF_PROG_TYPE_XDP: "attach_xdp", BPF_PROG_TYPE_SCHED_CLS: "attach_tc"}
DEFAULT_CPU = 3


def _build_function(fn: Callable, cpu: int, prefix: str, sink: Any, entry: Optional[str],
                    body: Callable[[Builder], None]) -> FunctionCode:
    """Run ``body`` (which calls the user's ``fn``) twice: to trace its
    values, then to emit into ``sink``."""
    end = _last_line(fn)
    start = SourceLocation(fn.__code__.co_filename, fn.__code__.co_firstlineno)

    def run(target: Any, allocator: Any, frame: Frame) -> FunctionCode:
        code = FunctionCode(fn.__name__, target, allocator, frame, cpu, prefix, start)
        builder = Builder(code)
        with building(builder):
            body(builder)
            code.finish(end)
        return code

    tracer = TraceAllocator()
    run(None, tracer, Frame())
    frame = Frame()
    if entry is not None:
        sink.function(entry)
    return run(sink, Allocator(analyse(tracer.trace), frame), frame)


def _last_line(fn: Callable) -> SourceLocation:
    code = fn.__code__
    return SourceLocation(code.co_filename, max(line for _, line in dis.findlinestarts(code)))


class Subprogram:
    """A bpf-to-bpf function: ``@subprogram def clamp(p, v: u64) -> u64``.

    Parameters are typed by annotation (integers, or ``Ptr(T)`` for program
    memory the caller passes); the result type defaults to ``s64``. Calling
    it inside a program (``clamp(p, x)``) emits the call; the body is
    compiled once per program that calls it, after that program's code.
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self.name = fn.__name__
        self.label = "%s" % fn.__name__
        hints = _annotations(fn)
        names = list(inspect.signature(fn).parameters)[1:]
        missing = [n for n in names if n not in hints]
        if missing:
            raise TypeError("@subprogram %s: annotate the type of %s" % (self.name,
                                                                         ", ".join(missing)))
        if len(names) > 5:
            raise TypeError("@subprogram %s takes %d arguments; BPF passes at most 5"
                            % (self.name, len(names)))
        self.params: List[Tuple[str, Any]] = [(n, as_type(hints[n])) for n in names]
        self.ret_type = as_type(hints["return"]) if "return" in hints else s64

    def __call__(self, p: Builder, *args: Any) -> Any:
        return p.call(self, *args)

    def build_into(self, sink: Any, cpu: int) -> FunctionCode:
        def body(p: Builder) -> None:
            values = p.code.params([(ptype, "argument %r" % name) for name, ptype in self.params])
            args = [value if not isinstance(ptype, PointerType)
                    else pointer_ref(value, ptype.target) if ptype.space == "mem"
                    else ptype.view(value)             # a kernel pointer reads kernel memory
                    for value, (_name, ptype) in zip(values, self.params)]
            p.code.enter_body()
            self.fn(p, *args)
        return _build_function(self.fn, cpu, self.label + ".", sink, self.label, body)

    def __repr__(self) -> str:
        return "<subprogram %s>" % self.name


def subprogram(fn: Callable) -> Subprogram:
    return Subprogram(fn)


def _annotations(fn: Callable) -> Dict[str, Any]:
    hints = dict(getattr(fn, "__annotations__", {}))
    for key, value in hints.items():
        if isinstance(value, str):  # ``from __future__ import annotations``
            hints[key] = eval(value, fn.__globals__)
    return hints


class Program:
    """One eBPF program written in the DSL (made by :func:`tracepoint`,
    :func:`raw_tracepoint`, :func:`xdp` or :func:`tc`).

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
        self._built: Dict[Tuple[int, Any], Tuple[_asm.AssembledProgram, Dict[str, Any],
                                                 List[Subprogram]]] = {}
        code = fn.__code__
        self.location = SourceLocation(code.co_filename, code.co_firstlineno)

    def __repr__(self) -> str:
        return "<Program %s (%s)>" % (self.name, self.target)

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

    def _build(self, cpu: int) -> Tuple[_asm.AssembledProgram, Dict[str, Any],
                                        List[Subprogram]]:
        from .kernel_types import btf_override
        key = (cpu, btf_override())
        if key not in self._built:
            self._built[key] = self._assemble(cpu)
        return self._built[key]

    def _assemble(self, cpu: int) -> Tuple[_asm.AssembledProgram, Dict[str, Any],
                                           List[Subprogram]]:
        sink = _asm.Assembler(self.name)

        def body(p: Builder) -> None:
            ctx = self._context(p.code)
            p.code.enter_body()
            self.fn(p, ctx)
            if self.returns_verdict and p.code.reachable:
                raise ProgramBuildError("%s can reach its end without returning a verdict: end "
                                        "every path with p.return_(...)" % self.name,
                                        _last_line(self.fn))

        try:
            main = _build_function(self.fn, cpu, "", sink, None, body)
            maps = dict(main.maps)
            pending = list(main.subprograms)
            compiled: Dict[str, FunctionCode] = {}
            order: List[Subprogram] = []
            while pending:
                sub = pending.pop(0)
                if sub.label in compiled:
                    continue
                code = sub.build_into(sink, cpu)
                compiled[sub.label] = code
                order.append(sub)
                maps.update(code.maps)
                pending.extend(code.subprograms)
            _check_call_depth(main, compiled, self.location)
            return sink.assemble(), maps, order
        except AssemblyError as exc:
            if isinstance(exc, ProgramBuildError):
                raise
            raise ProgramBuildError(exc.message, exc.location) from None

    def disasm(self, source: bool = True, style: str = "annotated",
               cpu: Optional[int] = None) -> str:
        """The program as text; with ``source`` the Python line above the
        instructions it emitted."""
        from .. import disasm
        return disasm.disassemble(self.build(cpu), style=style, source=source)

    def load(self, config: Optional[Mapping[str, Any]] = None) -> "Collection":
        """Load this program alone (with fresh maps); see :class:`Collection`."""
        return Collection([self]).load(config)


def _check_call_depth(main: FunctionCode, subs: Dict[str, FunctionCode],
                      where: SourceLocation) -> None:
    """The kernel limits the stack of a whole call chain to 512 bytes."""
    def depth(code: FunctionCode, seen: Tuple[str, ...]) -> int:
        deepest = 0
        for sub in code.subprograms:
            if sub.label in seen:
                raise ProgramBuildError("subprogram %s calls itself (recursion is not allowed "
                                        "in BPF)" % sub.name, where)
            deepest = max(deepest, depth(subs[sub.label], seen + (sub.label,)))
        return code.frame.depth + deepest

    total = depth(main, ())
    if total > MAX_STACK:
        raise ProgramBuildError("the call chain needs %d bytes of stack, over the kernel's "
                                "%d-byte limit for a program and the subprograms it calls"
                                % (total, MAX_STACK), where)


def tracepoint(category: str, name: Optional[str] = None, *, format: Any = None,
               cpu: int = DEFAULT_CPU, license: str = "GPL") -> Callable[[Callable], Program]:
    """``@tracepoint("syscalls", "sys_enter_openat")`` (or
    ``"syscalls/sys_enter_openat"``). ``ctx.<field>`` reads the record by
    the tracepoint's format, read from tracefs when the program is built
    (or given as a :class:`~pybpf.kernel.tracefs.TracepointFormat`)."""
    if name is None:
        from ..kernel.tracefs import split_name
        category, name = split_name(category)

    def context(code: FunctionCode) -> TracepointContext:
        fmt = format
        if fmt is None:
            from ..kernel.tracefs import tracepoint_format
            fmt = tracepoint_format(category, name)
        return TracepointContext(code, fmt)

    def decorate(fn: Callable) -> Program:
        return Program(fn, BPF_PROG_TYPE_TRACEPOINT, "%s/%s" % (category, name), context,
                       cpu=cpu, license=license)
    return decorate


def raw_tracepoint(name: str, *, cpu: int = DEFAULT_CPU,
                   license: str = "GPL") -> Callable[[Callable], Program]:
    """``@raw_tracepoint("sys_enter")``: ``ctx.args[i]`` are the
    tracepoint's arguments (for sys_enter: ``struct pt_regs *``, syscall id)."""
    def decorate(fn: Callable) -> Program:
        return Program(fn, BPF_PROG_TYPE_RAW_TRACEPOINT, name,
                       lambda code: RawTracepointContext(code, name), cpu=cpu, license=license)
    return decorate


def xdp(fn: Optional[Callable] = None, *, cpu: int = DEFAULT_CPU,
        license: str = "GPL") -> Any:
    """``@xdp`` (or ``@xdp(cpu=4)``): an XDP program, run on each frame an
    interface receives before the kernel makes an skb of it. ``ctx`` is an
    :class:`~.packet.XdpContext`; every path returns a verdict (``XDP_PASS``,
    ``XDP_DROP``, ... from :mod:`pybpf.net`). Attach it with
    :meth:`Collection.attach_xdp`."""
    return _network_program(fn, BPF_PROG_TYPE_XDP, "xdp", XdpContext, cpu, license)


def tc(fn: Optional[Callable] = None, *, cpu: int = DEFAULT_CPU, license: str = "GPL") -> Any:
    """``@tc``: a tc classifier (``BPF_PROG_TYPE_SCHED_CLS``) in
    direct-action mode, run on each packet an interface receives (ingress)
    or sends (egress). ``ctx`` is an :class:`~.packet.SkbContext`; every
    path returns a ``TC_ACT_*`` verdict. Attach it with
    :meth:`Collection.attach_tc`."""
    return _network_program(fn, BPF_PROG_TYPE_SCHED_CLS, "tc", SkbContext, cpu, license)


def _network_program(fn: Optional[Callable], prog_type: int, section: str, context: Any,
                     cpu: int, license: str) -> Any:
    """The decorator, applied to ``fn`` when it was used bare. The target
    is the ELF section name libbpf gives such programs (the interface comes
    at attach time)."""
    def decorate(function: Callable) -> Program:
        return Program(function, prog_type, section, context, cpu=cpu, license=license,
                       returns_verdict=True)
    return decorate if fn is None else decorate(fn)


class Collection:
    """Programs sharing maps, loaded and attached together.

    ``maps`` and ``programs`` hold the kernel objects by name once loaded;
    each map declaration is also bound to its live map while loaded, so
    ``counts.items()`` works on the declaration itself.
    """

    def __init__(self, programs: Iterable[Program]):
        self.specs: List[Program] = list(programs)
        if not self.specs:
            raise ValueError("a collection needs at least one program")
        self.maps: Dict[str, Any] = {}
        self.programs: Dict[str, Any] = {}
        self.links: List[Any] = []
        self._decls: Dict[str, Any] = {}
        self._resources = ExitStack()

    @classmethod
    def from_module(cls, module: Any) -> "Collection":
        """Every program defined in ``module``, in order."""
        programs = [value for value in vars(module).values() if isinstance(value, Program)]
        if not programs:
            raise ValueError("module %s defines no programs" % module.__name__)
        return cls(programs)

    def map_decls(self) -> Dict[str, Any]:
        decls: Dict[str, Any] = {}
        for program in self.specs:
            for name, decl in program.map_decls().items():
                if decls.get(name, decl) is not decl:
                    raise ProgramBuildError("two different maps are named %r; rename one "
                                            "(name=...)" % name, program.location)
                decls[name] = decl
        return decls

    def load(self, config: Optional[Mapping[str, Any]] = None) -> "Collection":
        """Create the maps, fill and freeze configs, load the programs.
        Everything made so far is closed again if a step fails. A program
        declared ``cpu=4`` needs a kernel with the cpu v4 instructions
        (Linux 6.6), whether or not its code uses one: that is what the
        declaration is for (LLVM's ``-mcpu=v4`` is asked the same way)."""
        from ..kernel import features
        from ..kernel.maps import Map
        if any(program.cpu >= 4 for program in self.specs):
            features.probe().require("cpu_v4")   # else: "BPF_ALU uses reserved fields"
        built = [(program, program.build()) for program in self.specs]
        try:
            self._decls = self.map_decls()
            configs = [d.config for d in self._decls.values() if hasattr(d, "config")]
            unknown = set(config or ()) - {f for c in configs for f in c.layout.fields}
            if unknown:
                raise KeyError("no config declares %s" % ", ".join(sorted(unknown)))
            for name, decl in self._decls.items():
                live = self._resources.enter_context(Map.create(decl.spec()))
                if hasattr(decl, "config"):
                    mine = {k: v for k, v in (config or {}).items()
                            if k in decl.config.layout.fields}
                    live[0] = decl.config.values(mine)
                    live.freeze()
                self.maps[name] = live
                decl.live = live
                self._resources.callback(_unbind, decl, live)
            for program, code in built:
                self.programs[program.name] = self._resources.enter_context(
                    _load_program(program, code, self.maps))
        except BaseException:
            self.close()
            raise
        return self

    def attach(self, *names: str) -> "Collection":
        """Attach the programs named (by default every one with a
        tracepoint) to their tracepoints. XDP and tc programs attach to an
        interface: :meth:`attach_xdp`, :meth:`attach_tc`."""
        from ..kernel import link
        unknown = set(names) - {program.name for program in self.specs}
        if unknown:
            raise KeyError("no program named %s in this collection" % ", ".join(sorted(unknown)))
        for program in self.specs:
            if program.name in names and program.prog_type in NETWORK_PROGRAMS:
                raise ProgramTypeError("%s attaches to a network interface, not a tracepoint: "
                                       "use %s(interface)"
                                       % (program.name, NETWORK_PROGRAMS[program.prog_type]))
        try:
            for program in self.specs:
                if (names and program.name not in names) or program.prog_type in NETWORK_PROGRAMS:
                    continue
                loaded = self.programs[program.name]
                if program.prog_type == BPF_PROG_TYPE_RAW_TRACEPOINT:
                    attached = link.attach_raw_tracepoint(loaded, program.target)
                else:
                    attached = link.attach_tracepoint(loaded, program.target)
                self.links.append(self._resources.enter_context(attached))
        except BaseException:
            self.close()
            raise
        return self

    def attach_xdp(self, interface: Any, program: Optional[str] = None, *,
                   mode: Optional[str] = None, use_link: Optional[bool] = None) -> "Collection":
        """Attach the XDP program named ``program`` (by default the
        collection's only one) to ``interface``, a name or an index, until
        :meth:`close`. ``mode`` and ``use_link`` are those of
        :func:`pybpf.kernel.netattach.attach_xdp`."""
        from ..kernel import netattach
        loaded = self._network_program(program, BPF_PROG_TYPE_XDP)
        return self._keep(netattach.attach_xdp(loaded, interface, mode=mode, use_link=use_link))

    def attach_tc(self, interface: Any, direction: str = "ingress", program: Optional[str] = None,
                  *, use_link: Optional[bool] = None) -> "Collection":
        """Attach the tc program named ``program`` (by default the
        collection's only one) to ``interface``'s ``"ingress"`` or
        ``"egress"``, until :meth:`close`; see
        :func:`pybpf.kernel.netattach.attach_tc`."""
        from ..kernel import netattach
        loaded = self._network_program(program, BPF_PROG_TYPE_SCHED_CLS)
        return self._keep(netattach.attach_tc(loaded, interface, direction, use_link=use_link))

    def _network_program(self, name: Optional[str], prog_type: int) -> Any:
        """The loaded program ``name``, or the only one of ``prog_type``."""
        if name is None:
            matching = [s.name for s in self.specs if s.prog_type == prog_type]
            if len(matching) != 1:
                raise ValueError("this collection has %d %s programs (%s): name the one to "
                                 "attach" % (len(matching), "XDP" if prog_type ==
                                             BPF_PROG_TYPE_XDP else "tc",
                                             ", ".join(matching) or "none"))
            name = matching[0]
        if name not in self.programs:
            raise KeyError("no program named %r is loaded in this collection (load() first)"
                           % name)
        return self.programs[name]

    def _keep(self, attachment: Any) -> "Collection":
        """Hold ``attachment`` until :meth:`close`, which detaches first."""
        self.links.append(self._resources.enter_context(attachment))
        return self

    def reader(self, ringbuf: Any, record_type: Any, **options: Any) -> Any:
        """A ring buffer reader for ``ringbuf`` that decodes ``record_type``
        and reports the records the program counted as lost."""
        from ..kernel.records import decoder_for
        from ..kernel.ringbuf import RingBufReader
        layout = as_type(record_type)
        return RingBufReader(self.maps[ringbuf.name],
                             lost_counter_map=self.maps.get(ringbuf.lost.name),
                             decoder=decoder_for(layout.construct(), layout.name), **options)

    def close(self) -> None:
        """Detach, unload, and close the maps (in that order)."""
        resources, self._resources = self._resources, ExitStack()
        self.links.clear()
        self.programs.clear()
        self.maps.clear()
        resources.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _load_program(program: Program, code: _asm.AssembledProgram, maps: Dict[str, Any]) -> Any:
    """Load one program; one with subprograms also gets their BTF func_info."""
    from ..kernel.prog import Program as KernelProgram
    options: Dict[str, Any] = {}
    subprograms = program.subprograms()
    if subprograms:
        from ..kernel.btf_load import load_btf
        blob, func_info = function_btf(code, 1, [(s.label, len(s.params)) for s in subprograms])
        btf = load_btf(blob)
        options = dict(btf_fd=btf.fileno(), func_info=func_info)
    try:
        return KernelProgram.load(code, prog_type=program.prog_type, name=program.name,
                                  license=program.license, maps=maps, **options)
    finally:
        if subprograms:
            btf.close()   # the program holds its own reference


def _unbind(decl: Any, live: Any) -> None:
    if decl.live is live:
        decl.live = None
