"""Program contexts: a tracepoint's record by field name, raw tracepoint
arguments by index.

For a tracepoint program, ``ctx.filename`` loads the field at the offset
the tracepoint's ``format`` file gives (:mod:`pybpf.kernel.tracefs`), with
a type from its C declaration: syscall tracepoints store every argument in
8 bytes, but ``int flags`` is read as the ``s32`` it is; ``const char *``
becomes a user-space pointer (kernel-space outside the ``syscalls``
category) that only the probe-read helpers take. A raw tracepoint's context
is the tracepoint's arguments as ``u64``: ``ctx.args[1]``.
"""

from typing import Any

from ..kernel.tracefs import Field, TracepointFormat
from .memory import Ref
from .types import ArrayType, DSLType, IntType, PointerType, c_int_type, char, s8, s16, s32, \
    s64, u8, u16, u32, u64, void
from .values import Local, build_error

_BY_SIZE = {(1, False): u8, (2, False): u16, (4, False): u32, (8, False): u64,
            (1, True): s8, (2, True): s16, (4, True): s32, (8, True): s64}
#: Raw tracepoints have at most this many arguments (bpf_trace_run12).
MAX_RAW_ARGS = 12


def field_type(field: Field, category: str) -> DSLType:
    """The DSL type a tracepoint field is read as (see the module docstring)."""
    if field.is_dynamic:
        return u32  # (length << 16) | offset of the data after the record
    ctype = field.type
    if "*" in ctype:
        target = char if "char" in ctype else void
        return PointerType(target, "user" if category == "syscalls" else "kernel")
    if field.array_len:
        base = ctype[:ctype.index("[")]
        elem = char if "char" in base else (_int(base, field.element_size, field.signed))
        return ArrayType(elem, field.array_len)
    return _int(ctype, field.size, field.signed)


def _int(ctype: str, size: int, signed: bool) -> IntType:
    declared = c_int_type(ctype)
    if declared is not None and declared.size <= size:
        return declared
    return _BY_SIZE[(size, signed)]


class TracepointContext:
    """``ctx`` of a tracepoint program: attribute access reads fields."""

    def __init__(self, code: Any, fmt: TracepointFormat):
        self._code = code
        self._format = fmt
        (self._pointer,) = code.params([(PointerType(void), "the context")])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        fmt = self._format
        if name not in fmt:
            raise build_error("tracepoint %s/%s has no field %r (fields: %s)"
                              % (fmt.category, fmt.name, name,
                                 ", ".join(f.name for f in fmt.event_fields)))
        field = fmt.field(name)
        ftype = field_type(field, fmt.category)
        if not ftype.is_scalar:
            return Ref(self._pointer, field.offset, ftype, writable=False)
        return self._code.load(self._pointer, field.offset, ftype)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            raise build_error("tracepoint records are read-only")

    def _pointer_value(self) -> Local:
        return self._pointer


class RawTracepointContext:
    """``ctx`` of a raw tracepoint program: ``ctx.args[i]`` (``u64``)."""

    def __init__(self, code: Any, name: str):
        self._code = code
        self._name = name
        (self._pointer,) = code.params([(PointerType(u64), "the context")])
        self.args = _Args(self)

    def _pointer_value(self) -> Local:
        return self._pointer

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise build_error("a raw tracepoint's context has no field %r: it is the tracepoint's "
                          "arguments, ctx.args[0] to ctx.args[%d] (u64)%s"
                          % (name, MAX_RAW_ARGS - 1, RAW_SYSCALL_ARGS.get(self._name, "")))


#: What ``ctx.args`` holds for the raw syscall tracepoints (the TP_PROTOs of
#: ``include/trace/events/syscalls.h``), for errors and docstrings.
RAW_SYSCALL_ARGS = {
    "sys_enter": "; for sys_enter: ctx.args[0] is the struct pt_regs * of the call (its "
                 "arguments are read from it) and ctx.args[1] the syscall number",
    "sys_exit": "; for sys_exit: ctx.args[0] is the struct pt_regs * and ctx.args[1] the "
                "return value (the syscall number is in the registers: orig_ax on x86-64)",
}


class _Args:
    def __init__(self, ctx: RawTracepointContext):
        self._ctx = ctx

    def __getitem__(self, index: int) -> Local:
        if not isinstance(index, int) or not 0 <= index < MAX_RAW_ARGS:
            raise build_error("raw tracepoint argument index must be a constant 0..%d, not %r"
                              % (MAX_RAW_ARGS - 1, index))
        ctx = self._ctx
        return ctx._code.load(ctx._pointer, index * 8, u64)
