"""The build driver: a program function and the subprograms it calls, to code.

Building runs the program function twice (see :mod:`pybpf.dsl.regalloc`):
once to trace its values, once to emit with the registers chosen; then each
``@subprogram`` it calls, appended after it as bpf-to-bpf functions, each
compiled once however often it is called. The result is the assembled
program, the map declarations it references by name and the subprograms
in the order they follow it.
"""

import dis
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import asm as _asm
from ..errors import AssemblyError, ProgramBuildError, SourceLocation
from .builder import Builder
from .codegen import FunctionCode, building
from .frame import MAX_STACK, Frame
from .memory import pointer_ref
from .regalloc import Allocator, TraceAllocator, analyse
from .source_check import check_function
from .subprogram import Subprogram
from .types import PointerType

#: What one build gives: the code, the maps it uses by name, its subprograms in order.
Built = Tuple[_asm.AssembledProgram, Dict[str, Any], List[Subprogram]]


def build_function(fn: Callable, cpu: int, prefix: str, sink: Any, entry: Optional[str],
                   body: Callable[[Builder], None]) -> FunctionCode:
    """Run ``body`` (which calls the user's ``fn``) twice: to trace its
    values, then to emit into ``sink``."""
    check_function(fn)
    end = last_line(fn)
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


def call_user(fn: Callable, *args: Any) -> None:
    """Run the user's function, which must return nothing (its source is
    checked for ``return <value>`` first; this catches it without source)."""
    if fn(*args) is not None:
        code = fn.__code__
        raise ProgramBuildError("%s returned a value, which is lost (the program returns 0): "
                                "use p.return_(...)" % fn.__name__,
                                SourceLocation(code.co_filename, code.co_firstlineno))


def last_line(fn: Callable) -> SourceLocation:
    """Where the function's last line is: its implicit return."""
    code = fn.__code__
    return SourceLocation(code.co_filename, max(line for _, line in dis.findlinestarts(code)))


def build_subprogram(sub: Subprogram, sink: Any, cpu: int) -> FunctionCode:
    """Emit ``sub``'s body into ``sink``, under its label."""
    def body(p: Builder) -> None:
        values = p.code.params([(ptype, "argument %r" % name) for name, ptype in sub.params])
        args = [value if not isinstance(ptype, PointerType)
                else pointer_ref(value, ptype.target) if ptype.space == "mem"
                else ptype.view(value)             # a kernel pointer reads kernel memory
                for value, (_name, ptype) in zip(values, sub.params)]
        p.code.enter_body()
        call_user(sub.fn, p, *args)
    return build_function(sub.fn, cpu, sub.label + ".", sink, sub.label, body)


def build_program(name: str, fn: Callable, context: Callable[[FunctionCode], Any], cpu: int,
                  returns_verdict: bool, where: SourceLocation) -> Built:
    """Build the program function ``fn(p, ctx)`` and every subprogram it
    calls, directly or not. ``returns_verdict`` makes it a build error for
    the function to reach its end without ``p.return_()``."""
    sink = _asm.Assembler(name)

    def body(p: Builder) -> None:
        ctx = context(p.code)
        p.code.enter_body()
        call_user(fn, p, ctx)
        if returns_verdict and p.code.reachable:
            raise ProgramBuildError("%s can reach its end without returning a verdict: end "
                                    "every path with p.return_(...)" % name, last_line(fn))

    try:
        main = build_function(fn, cpu, "", sink, None, body)
        maps = dict(main.maps)
        pending = list(main.subprograms)
        compiled: Dict[str, FunctionCode] = {}
        order: List[Subprogram] = []
        while pending:
            sub = pending.pop(0)
            if sub.label in compiled:
                continue
            code = build_subprogram(sub, sink, cpu)
            compiled[sub.label] = code
            order.append(sub)
            maps.update(code.maps)
            pending.extend(code.subprograms)
        _check_call_depth(main, compiled, where)
        return sink.assemble(), maps, order
    except AssemblyError as exc:
        if isinstance(exc, ProgramBuildError):
            raise
        raise ProgramBuildError(exc.message, exc.location) from None


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
