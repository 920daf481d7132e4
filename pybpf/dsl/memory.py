"""Typed views of memory: ``ev.pid = pid``, ``ev.comm``, ``buf[i]``.

A :class:`Ref` is ``base + offset`` seen as a ``type``: a stack object, a
map value or ring buffer record behind a pointer, a config map's value.
Reading a scalar field loads it; assigning one stores it at its declared
offset; an aggregate field (array, nested struct) is another Ref, which
helpers take as a pointer (its size is known, so helpers can infer it).

A Ref over a pointer that may be NULL (a map lookup's result) refuses to
be read, written or passed on until a branch proved it non-NULL: the
mistake the verifier would reject at load time is a build error here,
naming the line.

.. code-block:: python

    count = counts.lookup(pid)
    count[0] += 1        # ProgramBuildError: prog.py:12: the pointer from
                         # bpf_map_lookup_elem may be NULL here: check it first ...
    with p.if_(count):
        count[0] += 1    # fine
"""

from typing import Any

from .codegen import current
from .locations import Base, FrameBase, MapValueBase
from .types import ArrayType, PointerType, StructType, as_type, u64
from .values import Cond, Const, Local, Value, as_value, build_error, compare, convert, implicit


class Ref:
    """``type`` at ``base + offset``. Attribute access reaches struct
    fields, indexing reaches array elements (and ``ref[0]`` the scalar a
    pointer points at)."""

    __slots__ = ("_base", "_offset", "_type", "_writable")

    def __init__(self, base: Base, offset: int, rtype: Any, writable: bool = True):
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_offset", offset)
        object.__setattr__(self, "_type", as_type(rtype))
        object.__setattr__(self, "_writable", writable)

    # --- checks -------------------------------------------------------------------------------

    def _code(self):
        base = self._base
        return base.fn if isinstance(base, Local) else current().code

    def _checked(self):
        """The function's code, after checking this memory may be touched."""
        base = self._base
        code = self._code()
        if isinstance(base, Local) and base.storage.nullable \
                and not code.proven_nonnull(base.storage):
            raise build_error(
                "%s may be NULL here: check it first, with `with p.if_(ptr):` around the "
                "use, or `with p.if_(ptr.is_null): p.return_(0)` before it"
                % (base.storage.origin or "this pointer"))
        return code

    def _sub(self, offset: int, rtype: Any) -> "Ref":
        return Ref(self._base, self._offset + offset, rtype, self._writable)

    # --- fields and elements ------------------------------------------------------------------

    def _field(self, name: str):
        t = self._type
        if not isinstance(t, StructType):
            raise build_error("%s is not a struct: it has no field %r" % (t.name, name))
        try:
            return t.field(name)
        except KeyError as exc:
            raise build_error(str(exc.args[0])) from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        f = self._field(name)
        return self._sub(f.offset, f.type)._read()

    def __setattr__(self, name: str, value: Any) -> None:
        f = self._field(name)
        self._sub(f.offset, f.type)._write(value)

    def _element(self, index: Any) -> "Ref":
        t = self._type
        if not isinstance(t, ArrayType):
            if isinstance(index, int) and index == 0:
                return self
            raise build_error("%s is not an array; only [0] reads what a pointer points at"
                              % t.name)
        elem = t.elem
        if isinstance(index, int):
            if not 0 <= index < t.count:
                raise build_error("index %d is out of range for %s (0..%d)"
                                  % (index, t.name, t.count - 1))
            return self._sub(index * elem.size, elem)
        index = as_value(index)
        if isinstance(index, Const):
            return self._element(index.value)
        return self._dynamic(convert(index, u64) * elem.size, elem)

    def _dynamic(self, offset: Value, rtype: Any) -> "Ref":
        """``rtype`` at a byte offset computed at run time (the verifier must
        be able to bound it: a loop counter, a masked value)."""
        start = self._checked().address(self._base, self._offset, PointerType(self._type))
        address = Local(u64, start.storage) + offset
        return Ref(Local(PointerType(rtype), address.storage), 0, rtype, self._writable)

    def __getitem__(self, index: Any) -> Any:
        return self._element(index)._read()

    def __setitem__(self, index: Any, value: Any) -> None:
        self._element(index)._write(value)

    # --- reading and writing ------------------------------------------------------------------

    def _read(self) -> Any:
        t = self._type
        if not t.is_scalar:
            return self
        value = self._checked().load(self._base, self._offset, t)
        return t.view(value) if isinstance(t, PointerType) else value

    def _write(self, value: Any) -> None:
        code = self._checked()
        if not self._writable:
            raise build_error("this memory is read-only (a load-time config value)")
        t = self._type
        if isinstance(value, Ref):
            code.builder.copy(self, value)
            return
        read_into = getattr(value, "_read_into", None)
        if read_into is not None and not t.is_scalar:   # kernel memory: ev.comm = task.comm
            read_into(self)
            return
        if isinstance(value, (bytes, bytearray)):
            code.builder.store_bytes(self, bytes(value))
            return
        if not t.is_scalar:
            raise build_error("cannot assign a single value to %s: assign bytes or another %s, "
                              "or use p.zero()" % (t.name, t.name))
        if isinstance(value, Cond):   # ev.truncated = c != 0
            value = code.materialize(value, t)
        value = as_value(value)
        if isinstance(t, PointerType):
            value = value if isinstance(value.type, PointerType) else convert(value, t)
        else:
            value = implicit(value, t)
        code.store(self._base, self._offset, t.size, value)

    # --- as a pointer -------------------------------------------------------------------------

    __hash__ = object.__hash__

    def __eq__(self, other: Any) -> Cond:  # type: ignore[override]
        """``ptr == 0`` (or ``None``): a condition, like :attr:`is_null`;
        ``comm == b"bash"``: string equality (``p.str_eq``)."""
        if isinstance(other, (bytes, bytearray)):
            return self._code().builder.str_eq(self, other)
        return compare("==", self._pointer_value(unchecked=True), _null(other))

    def __ne__(self, other: Any) -> Cond:  # type: ignore[override]
        if isinstance(other, (bytes, bytearray)):
            return ~self._code().builder.str_eq(self, other)
        return compare("!=", self._pointer_value(unchecked=True), _null(other))

    @property
    def is_null(self) -> Cond:
        """The condition ``ptr == NULL`` (``with p.if_(ev.is_null): p.return_(0)``)."""
        return compare("==", self._pointer_value(unchecked=True), 0)

    def _pointer_value(self, unchecked: bool = False) -> Value:
        base = self._base
        if isinstance(base, Local) and self._offset == 0:
            return Local(PointerType(self._type), base.storage)
        code = self._code() if unchecked else self._checked()
        return code.address(base, self._offset, PointerType(self._type))

    def __bool__(self) -> bool:
        raise build_error("a pointer has no truth value while the program is being built; "
                          "write `with p.if_(ptr):`")

    def _arithmetic(self, other: Any) -> Any:
        """``c += 1`` on a pointer (a lookup's result) is a mistake for ``c[0] += 1``."""
        what = "c.field += 1" if isinstance(self._type, StructType) else "c[0] += 1"
        raise build_error("this is a pointer to %s, not a number: to change what it points at, "
                          "write `%s` (or p.atomic_add(...) where CPUs share it)"
                          % (self._type.name, what))

    __add__ = __radd__ = __iadd__ = __sub__ = __rsub__ = __isub__ = _arithmetic
    __mul__ = __rmul__ = __imul__ = __or__ = __ior__ = __and__ = __iand__ = _arithmetic

    def __repr__(self) -> str:
        return "<Ref %s at %r%+d>" % (self._type.name, self._base, self._offset)


class AddressView:
    """``p.addr(ev).count``: the field itself rather than its value, for
    what takes a place in memory (``p.atomic_add``, probe-read targets)."""

    __slots__ = ("_ref",)

    def __init__(self, ref: Ref):
        self._ref = ref

    def __getattr__(self, name: str) -> Ref:
        ref = self._ref
        f = ref._field(name)
        return ref._sub(f.offset, f.type)

    def __getitem__(self, index: Any) -> Ref:
        return self._ref._element(index)


def _null(other: Any) -> Any:
    return 0 if other is None else as_value(other)


def pointer_ref(pointer: Local, target: Any, writable: bool = True) -> Ref:
    """A Ref over the memory a pointer value points at."""
    return Ref(pointer, 0, target, writable)


def stack_ref(offset: int, rtype: Any) -> Ref:
    """A reference to an object of ``rtype`` on the stack at ``offset``."""
    return Ref(FrameBase(offset), 0, rtype)


def map_value_ref(map_decl: Any, rtype: Any) -> Ref:
    """A read-only reference to the value of a one-entry map (a config)."""
    return Ref(MapValueBase(map_decl), 0, rtype, writable=False)

