"""``p.helpers.<name>(...)``: every kernel helper, typed from its prototype.

The prototypes come from :mod:`pybpf.helper_defs` (generated from the
kernel's own documentation and BTF; nothing here is typed by hand). Each
argument is marshalled by its *kind* (:mod:`pybpf.helper_proto`):

* ``map``: a map declaration; ``ctx``: the program's context;
  ``callback``: a ``@subprogram``;
* ``ptr``/``const_ptr``: program memory (a stack object, a field, a map
  value); a ``const_ptr`` also takes a plain value or ``bytes``, stored in a
  stack temporary and passed by address (C's ``&key``);
* ``size``: may be left out right after a sized memory argument:
  ``p.helpers.get_current_comm(ev.comm)`` passes ``sizeof(ev.comm)``;
* ``flags``: may be left out (0); ``scalar``/``kernel_ptr``: any value.

Results: a scalar is ``s64`` or ``u64`` by the C type; a ``void *`` that
may be NULL must be checked before use (see :mod:`pybpf.dsl.memory`).
"""

from typing import Any, Dict, List, Optional

from ..helper_defs import HELPERS
from ..helper_proto import (ARG_CALLBACK, ARG_CONST_PTR, ARG_CTX, ARG_FLAGS, ARG_KERNEL_PTR,
                            ARG_MAP, ARG_PTR, ARG_SIZE, RET_KERNEL_PTR,
                            RET_KERNEL_PTR_OR_NULL, RET_PTR, RET_PTR_OR_NULL, RET_SCALAR,
                            RET_VOID, HelperProto)
from .calls import Arg
from .codegen import current
from .memory import AddressView, Ref, pointer_ref
from .subprogram import Subprogram
from .kernel_types import KernelPtr
from .types import PointerType, as_type, c_int_type, s64, u64, void
from .values import Const, Local, as_value, build_error, implicit

_MISSING = object()


class Helpers:
    """Attribute access finds a helper by its name without ``bpf_``."""

    def __init__(self, builder: Any):
        self._builder = builder

    def __getattr__(self, name: str) -> Any:
        proto = HELPERS.get("bpf_" + name) or HELPERS.get(name)
        if proto is None:
            raise build_error("there is no helper bpf_%s in this kernel's helper list" % name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return call_helper(self._builder, proto, args, kwargs)
        call.__name__ = proto.name
        call.__doc__ = "%s\n\n%s" % (proto, proto.summary)
        return call

    def __dir__(self) -> List[str]:
        return sorted(proto.short_name for proto in HELPERS.values())


def call_helper(builder: Any, proto: HelperProto, args: tuple, kwargs: Dict[str, Any],
                result_type: Any = None, variadic: Optional[List[Any]] = None) -> Any:
    """Check, marshal and emit one helper call; return its result.

    ``result_type`` types the memory a returned pointer points at (a map's
    value type for ``bpf_map_lookup_elem``). ``variadic`` are the values
    after the prototype's arguments, for the one variadic helper the DSL
    wraps (``bpf_trace_printk``, see :mod:`.printk`)."""
    if proto.args is None:
        raise build_error("%s has no documented prototype in the header the helper table "
                          "was generated from, so it cannot be typed" % proto.name)
    if proto.variadic and variadic is None:
        raise build_error("%s takes a variable argument list; the DSL has p.printk() for "
                          "bpf_trace_printk" % proto.name)
    bound = _bind(proto, list(args), dict(kwargs))
    marshalled = []
    previous: Any = None
    for spec, value in zip(proto.args, bound):
        marshalled.append(_marshal(proto, spec, value, previous))
        previous = value
    marshalled.extend(Arg("value", value=implicit(as_value(v), u64)) for v in variadic or ())
    return _emit(builder, proto, marshalled, result_type)


def _bind(proto: HelperProto, args: List[Any], kwargs: Dict[str, Any]) -> List[Any]:
    """Match arguments to parameters, positionally and by name. A ``size``
    right after sized memory may be left out when too few arguments remain
    for the parameters left (the size is inferred); a trailing ``flags`` may
    be left out (0)."""
    params = proto.args
    last = len(params) - 1
    optional_flags = bool(params) and params[last].kind == ARG_FLAGS \
        and params[last].name not in kwargs
    bound: List[Any] = []
    for index, spec in enumerate(params):
        if spec.name in kwargs:
            bound.append(kwargs.pop(spec.name))
            continue
        need = sum(1 for p in params[index:] if p.name not in kwargs) - optional_flags
        if spec.kind == ARG_SIZE and len(args) < need and bound and _sized(bound[-1]):
            bound.append(_MISSING)
        elif args:
            bound.append(args.pop(0))
        elif spec.kind == ARG_FLAGS and index == last:
            bound.append(0)
        else:
            raise build_error("%s: missing argument %r (prototype: %s)"
                              % (proto.name, spec.name, proto))
    if args or kwargs:
        raise build_error("%s: too many arguments%s (prototype: %s)"
                          % (proto.name, " (unknown: %s)" % ", ".join(kwargs) if kwargs else "",
                             proto))
    return bound


def _sized(value: Any) -> bool:
    return isinstance(value, (Ref, AddressView, bytes))


def _size_of(value: Any) -> int:
    if isinstance(value, AddressView):
        value = value._ref
    if isinstance(value, bytes):
        return len(value)
    return value._type.size


def _int_type(ctype: str) -> Any:
    return c_int_type(ctype) or u64


def _marshal(proto: HelperProto, spec: Any, value: Any, previous: Any) -> Arg:
    kind = spec.kind
    where = "%s(), argument %r" % (proto.name, spec.name)
    if kind == ARG_MAP:
        if not hasattr(value, "map_type"):
            raise build_error("%s must be a map declaration, not %r" % (where, value))
        return Arg("map", value=value)
    if kind == ARG_CALLBACK:
        if not isinstance(value, Subprogram):
            raise build_error("%s must be a @subprogram" % where)
        current().code.use_subprogram(value)
        return Arg("func", name=value.label)
    if kind == ARG_SIZE and value is _MISSING:
        return Arg("value", value=Const(_size_of(previous), _int_type(spec.ctype)))
    if kind in (ARG_PTR, ARG_CONST_PTR):
        return _memory_arg(where, value, kind == ARG_CONST_PTR)
    if kind == ARG_CTX:
        return Arg("value", value=as_value(value))
    value = as_value(value)
    if kind == ARG_KERNEL_PTR or isinstance(value.type, PointerType):
        if isinstance(value, Local) and isinstance(value.type, PointerType) \
                and value.type.space == "mem":
            raise build_error("%s takes an address the helper reads for you (a user or kernel "
                              "pointer), not program memory" % where)
        return Arg("value", value=implicit(value, u64) if not isinstance(
            value.type, PointerType) else value)
    return Arg("value", value=implicit(value, _int_type(spec.ctype)))


def _memory_arg(where: str, value: Any, const: bool) -> Arg:
    if isinstance(value, AddressView):
        value = value._ref
    if isinstance(value, Ref):
        value._checked()
        return Arg("addr", base=value._base, offset=value._offset)
    if isinstance(value, (bytes, bytearray)) and const:
        return Arg("temp", data=bytes(value))
    value = as_value(value)
    if isinstance(value, Local) and isinstance(value.type, PointerType) \
            and value.type.space == "mem":
        return Arg("value", value=value)
    if not const:
        raise build_error("%s must be program memory the helper can write (a stack object, "
                          "a field, a map value), not a value" % where)
    if value.type is None:
        raise build_error("%s is passed by address: give the constant a type (e.g. u32(%d)) "
                          "so that its size is known" % (where, value.value))  # type: ignore
    return Arg("temp", value=value, data=value.type)


def _emit(builder: Any, proto: HelperProto, args: List[Arg], result_type: Any) -> Any:
    kind = proto.ret_kind
    code = builder.code
    if kind == RET_VOID:
        code.call(args, None, helper=proto.id)
        return None
    if kind == RET_SCALAR:
        ctype = c_int_type(proto.ret or "") or u64
        return code.call(args, s64 if ctype.signed else u64, helper=proto.id,
                         origin="the result of %s" % proto.name)
    origin = "the pointer from %s" % proto.name
    if kind in (RET_KERNEL_PTR, RET_KERNEL_PTR_OR_NULL):
        pointer = code.call(args, KernelPtr, helper=proto.id, origin=origin)
        pointer.storage.nullable = kind == RET_KERNEL_PTR_OR_NULL
        return pointer
    if kind not in (RET_PTR, RET_PTR_OR_NULL):
        raise build_error("%s returns %s, which the DSL cannot type" % (proto.name, proto.ret))
    target = as_type(result_type) if result_type is not None else void
    pointer = code.call(args, PointerType(target), helper=proto.id, origin=origin)
    pointer.storage.nullable = kind == RET_PTR_OR_NULL
    return pointer_ref(pointer, target)


def helper(name: str) -> HelperProto:
    """The prototype of ``name`` (with or without ``bpf_``)."""
    proto = HELPERS.get(name if name.startswith("bpf_") else "bpf_" + name)
    if proto is None:
        raise build_error("there is no helper %s in this kernel's helper list" % name)
    return proto

