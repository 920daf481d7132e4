"""Typed values and their operators: the expression half of the DSL.

A :class:`Value` is something that fits in a register: a :class:`Const`
(folded at build time, never emitted on its own) or a :class:`Local` (held in
a register or stack slot that :mod:`pybpf.dsl.regalloc` chose). Operators
are evaluated where they are written, like C: ``x + 1`` emits its add right
away (or nothing, if the result is never used: see ``regalloc``).
Comparisons are different: they make a :class:`Cond`, which emits nothing
until a statement consumes it (``p.if_``), so that it becomes one
conditional jump instead of a 0/1 value.

Typing follows C with two deliberate differences, both to turn silent bugs
into build errors:

* integers narrower than 32 bits keep their signedness when promoted
  (``u8 + u32`` is ``u32``, not ``int``);
* mixing signed and unsigned operands of the same width is an error
  (``s32 < u32`` compares as unsigned in C); convert one side explicitly.
  When widths differ the wider type wins (``s64 + u32`` is ``s64``).

Network byte order types (``be16``, ``be32``) take part in ``==``, ``!=``,
``&``, ``|`` and ``^`` only, with constants converted at build time
(:mod:`pybpf.dsl.byteorder`).

Python ints are untyped constants that take the other operand's type. They
must fit it: in comparisons exactly (``u32 == -1`` is an error), in
arithmetic as a bit pattern (``x & ~7`` is fine).

Signedness picks the instruction: ``>>`` on a signed value is an arithmetic
shift, ``/`` and ``%`` are ``sdiv``/``smod`` (cpu v4, Linux 6.6: building
for cpu v3 rejects them with an error), ``<`` is ``jslt``.
"""

from typing import Any, FrozenSet, Optional

from ..asm import caller_location
from ..errors import ProgramBuildError
from .byteorder import ORDER_FREE_OPS, NetworkIntType, order_mismatch, swap
from .types import VALUES, IntType, PointerType, s64, u32, u64

COMMUTATIVE = frozenset(("+", "*", "&", "|", "^"))
# a OP b  <=>  b SWAPPED[OP] a
SWAPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
# not (a OP b)  <=>  a NEGATED[OP] b
NEGATED = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def build_error(message: str) -> ProgramBuildError:
    """A :class:`ProgramBuildError` located at the user's line."""
    return ProgramBuildError(message, caller_location())


class Value:
    """A register-sized typed value. Operators build code or conditions."""

    __slots__ = ("type",)
    __hash__ = object.__hash__

    def __init__(self, vtype: Any):
        self.type = vtype

    def __bool__(self) -> bool:
        raise build_error("a DSL value has no truth value while the program is being built; "
                          "write `with p.if_(cond):` instead of a Python `if`/`and`/`or`")

    def __index__(self) -> int:
        raise build_error("a DSL value is not a Python int; use it in DSL expressions only")

    def __getitem__(self, index: Any) -> Any:
        space = getattr(self.type, "space", None)
        if space in ("user", "kernel"):
            raise build_error("this is a %s-space pointer (%s): the program cannot index it; "
                              "copy what it points at with p.helpers.probe_read_%s(dst, ptr) "
                              "(a string: probe_read_%s_str), then index the copy"
                              % (space, self.type.name, space, space))
        raise build_error("a %s value cannot be indexed" % getattr(self.type, "name", "DSL"))

    # arithmetic
    def __add__(self, other): return binary("+", self, other)
    def __radd__(self, other): return binary("+", other, self)
    def __sub__(self, other): return binary("-", self, other)
    def __rsub__(self, other): return binary("-", other, self)
    def __mul__(self, other): return binary("*", self, other)
    def __rmul__(self, other): return binary("*", other, self)
    def __truediv__(self, other): return binary("/", self, other)
    def __rtruediv__(self, other): return binary("/", other, self)
    __floordiv__ = __truediv__
    __rfloordiv__ = __rtruediv__
    def __mod__(self, other): return binary("%", self, other)
    def __rmod__(self, other): return binary("%", other, self)
    def __and__(self, other): return binary("&", self, other)
    def __rand__(self, other): return binary("&", other, self)
    def __or__(self, other): return binary("|", self, other)
    def __ror__(self, other): return binary("|", other, self)
    def __xor__(self, other): return binary("^", self, other)
    def __rxor__(self, other): return binary("^", other, self)
    def __lshift__(self, other): return binary("<<", self, other)
    def __rlshift__(self, other): return binary("<<", other, self)
    def __rshift__(self, other): return binary(">>", self, other)
    def __rrshift__(self, other): return binary(">>", other, self)
    def __neg__(self): return binary("-", 0, self)
    def __pos__(self): return self
    def __invert__(self): return binary("^", self, -1)

    # comparisons make conditions
    def __eq__(self, other): return compare("==", self, other)  # type: ignore[override]
    def __ne__(self, other): return compare("!=", self, other)  # type: ignore[override]
    def __lt__(self, other): return compare("<", self, other)
    def __le__(self, other): return compare("<=", self, other)
    def __gt__(self, other): return compare(">", self, other)
    def __ge__(self, other): return compare(">=", self, other)


class Const(Value):
    """A constant; ``type`` None means an untyped Python int literal."""

    __slots__ = ("value",)

    def __init__(self, value: int, vtype: Optional[IntType] = None):
        super().__init__(vtype)
        self.value = value

    def __repr__(self) -> str:
        return "Const(%d, %s)" % (self.value, self.type)


class Local(Value):
    """A value held in a storage (a register or stack slot chosen later).

    Several Locals may share one storage: a conversion that needs no code
    (``u64(x)`` of a ``u32``) is a new Local over the same storage. A
    narrowing conversion (``u32(x)`` of a ``u64``) is one too, marked
    ``dirty``: the bits above its width may be garbage, which is harmless
    to a store of its width or a 32-bit operation, and cleaned up (one
    instruction) by whatever needs the whole register.
    """

    __slots__ = ("storage", "dirty")

    def __init__(self, vtype: Any, storage: Any, dirty: bool = False):
        super().__init__(vtype)
        self.storage = storage
        self.dirty = dirty

    @property
    def fn(self):
        """The function whose code computed this value (values do not cross functions)."""
        return self.storage.fn

    def __repr__(self) -> str:
        return "Local(%s, %r)" % (self.type, self.storage)


class Var(Local):
    """A mutable local variable (``p.var(u32, 0)``): C's ``u32 x = 0;``.

    ``x.set(v)`` assigns; ``x += v`` (and the other augmented operators)
    update in place. Only Vars may be changed inside an ``if`` or loop and
    read after it.
    """

    __slots__ = ()

    def set(self, value: Any) -> "Var":
        """Assign ``value`` (C: ``x = value;``), converted to the variable's type."""
        self.fn.assign(self, value)
        return self

    def _update(self, op: str, other: Any) -> "Var":
        self.fn.assign(self, binary(op, self, other))
        return self

    def __iadd__(self, other): return self._update("+", other)
    def __isub__(self, other): return self._update("-", other)
    def __imul__(self, other): return self._update("*", other)
    def __itruediv__(self, other): return self._update("/", other)
    __ifloordiv__ = __itruediv__
    def __imod__(self, other): return self._update("%", other)
    def __iand__(self, other): return self._update("&", other)
    def __ior__(self, other): return self._update("|", other)
    def __ixor__(self, other): return self._update("^", other)
    def __ilshift__(self, other): return self._update("<<", other)
    def __irshift__(self, other): return self._update(">>", other)


def as_value(x: Any) -> Value:
    """A Value from a DSL value, a Python int or bool, or a pointer view."""
    if isinstance(x, Value):
        return x
    if isinstance(x, bool):
        return Const(int(x))
    if isinstance(x, int):
        return Const(x)
    as_pointer = getattr(x, "_pointer_value", None)
    if as_pointer is not None:
        return as_pointer()
    raise build_error("%r is not a DSL value (expected a DSL expression or a Python int)" % (x,))


# --- conditions ----------------------------------------------------------------------------

class Cond:
    """A condition: compiled to jumps by the statement that consumes it.
    ``&``, ``|`` and ``~`` combine conditions with short-circuit evaluation
    (Python's ``and``/``or``/``not`` cannot be overloaded)."""

    __slots__ = ()

    def __bool__(self) -> bool:
        raise build_error("a DSL condition has no truth value while the program is being "
                          "built; write `with p.if_(cond):` (and `&`, `|`, `~` instead of "
                          "`and`, `or`, `not`)")

    def __and__(self, other: Any) -> "Cond":
        return BoolOp("and", self, as_cond(other))

    def __rand__(self, other: Any) -> "Cond":
        return BoolOp("and", as_cond(other), self)

    def __or__(self, other: Any) -> "Cond":
        return BoolOp("or", self, as_cond(other))

    def __ror__(self, other: Any) -> "Cond":
        return BoolOp("or", as_cond(other), self)

    def __invert__(self) -> "Cond":
        return Not(self)

    def nonnull_facts(self) -> FrozenSet[Any]:
        """Storages of pointers that are not NULL where this holds."""
        return frozenset()

    def null_facts(self) -> FrozenSet[Any]:
        """Storages of pointers that are not NULL where this does not hold."""
        return frozenset()


class Compare(Cond):
    """``a op b`` on operands already converted to one type."""

    __slots__ = ("op", "a", "b", "signed", "is64")

    def __init__(self, op: str, a: Value, b: Value, signed: bool, is64: bool):
        self.op, self.a, self.b, self.signed, self.is64 = op, a, b, signed, is64

    def _pointer_test(self) -> Optional[Any]:
        """The pointer storage when this is ``ptr != 0`` or ``ptr == 0``."""
        if isinstance(self.a, Local) and isinstance(self.a.type, PointerType) \
                and isinstance(self.b, Const) and self.b.value == 0:
            return self.a.storage
        return None

    def nonnull_facts(self) -> FrozenSet[Any]:
        """Pointers known non-NULL where this comparison holds."""
        storage = self._pointer_test()
        return frozenset((storage,)) if storage is not None and self.op == "!=" else frozenset()

    def null_facts(self) -> FrozenSet[Any]:
        """Pointers known NULL where this comparison holds."""
        storage = self._pointer_test()
        return frozenset((storage,)) if storage is not None and self.op == "==" else frozenset()


class BoolOp(Cond):
    """``a and b`` / ``a or b`` of conditions, evaluated with short-circuit jumps."""
    __slots__ = ("op", "left", "right")

    def __init__(self, op: str, left: Cond, right: Cond):
        self.op, self.left, self.right = op, left, right

    def nonnull_facts(self) -> FrozenSet[Any]:
        """Pointers known non-NULL where the combination holds."""
        if self.op == "and":
            return self.left.nonnull_facts() | self.right.nonnull_facts()
        return self.left.nonnull_facts() & self.right.nonnull_facts()

    def null_facts(self) -> FrozenSet[Any]:
        """Pointers known NULL where the combination holds."""
        if self.op == "or":
            return self.left.null_facts() | self.right.null_facts()
        return self.left.null_facts() & self.right.null_facts()


class Not(Cond):
    """The negation of a condition (no instruction: the jump is inverted)."""
    __slots__ = ("inner",)

    def __init__(self, inner: Cond):
        self.inner = inner

    def __invert__(self) -> Cond:
        return self.inner

    def nonnull_facts(self) -> FrozenSet[Any]:
        """Pointers known non-NULL where the negation holds."""
        return self.inner.null_facts()

    def null_facts(self) -> FrozenSet[Any]:
        """Pointers known NULL where the negation holds."""
        return self.inner.nonnull_facts()


class ConstCond(Cond):
    """A comparison of two constants: statements refuse it (see ``p.if_``)."""

    __slots__ = ("value",)

    def __init__(self, value: bool):
        self.value = value

    def __invert__(self) -> Cond:
        return ConstCond(not self.value)


def as_cond(x: Any) -> Cond:
    """A condition from a Cond, or from a value or pointer tested against 0."""
    if isinstance(x, Cond):
        return x
    # Memory whose test is not "!= NULL" (a packet header: its bounds check,
    # see .packet). Looked up on the class: a Ref's own lookup finds fields.
    truth = getattr(type(x), "_truth", None)
    if truth is not None:
        return truth(x)
    value = as_value(x)
    if isinstance(value, Const):
        return ConstCond(value.value != 0)
    return compare("!=", value, 0)


# --- typing rules ----------------------------------------------------------------------------

def _int_type(value: Value, op: str) -> IntType:
    if isinstance(value.type, PointerType):
        raise build_error("operator %s is not defined on pointers (%s)" % (op, value.type.name))
    if isinstance(value.type, NetworkIntType) and op not in ORDER_FREE_OPS:
        raise build_error("`%s` on a %s depends on byte order: convert it to host order first, "
                          "with p.%s(x)" % (op, value.type.name, value.type.to_host))
    return value.type


def common_type(op: str, a: Value, b: Value) -> IntType:
    """The type both operands of ``op`` are converted to (see module doc)."""
    if a.type is None:
        return _int_type(b, op).promoted
    if b.type is None:
        return _int_type(a, op).promoted
    ta, tb = _int_type(a, op).promoted, _int_type(b, op).promoted
    mismatch = order_mismatch(ta, tb) or order_mismatch(tb, ta)
    if mismatch:
        raise build_error("`%s` mixes %s and %s: %s" % (op, a.type.name, b.type.name, mismatch))
    if ta.signed == tb.signed:
        return ta if ta.size >= tb.size else tb
    signed, unsigned = (ta, tb) if ta.signed else (tb, ta)
    if signed.size > unsigned.size:
        return signed
    if unsigned.size > signed.size:
        return unsigned
    raise build_error("`%s` mixes signed %s and unsigned %s: convert one side explicitly "
                      "(e.g. %s(x) or s64(y))" % (op, a.type.name, b.type.name, unsigned.name))


def _literal(value: Const, to: IntType, exact: bool) -> Const:
    """An untyped literal given the type of the other operand; a network
    order type gets the constant's bytes swapped (see .byteorder)."""
    if isinstance(to, NetworkIntType):
        return Const(swap(_literal(value, to.host, exact).value, to.size), to)
    v = value.value
    if to.fits(v):
        return Const(v, to)
    if not exact and -(1 << (to.bits - 1)) <= v < (1 << to.bits):
        return Const(to.wrap(v), to)
    raise build_error("constant %d does not fit %s (%d..%d)" % (v, to.name, to.min, to.max))


def implicit(value: Value, to: IntType, exact: bool = False) -> Value:
    """``value`` converted to ``to`` as an operand of an operator."""
    if isinstance(value, Const):
        if value.type is None:
            return _literal(value, to, exact)
        _check_order(value.type, to)
        return Const(to.wrap(value.value), to)
    return convert(value, to)


def convert(x: Any, to: Any) -> Value:
    """Explicit conversion (``u32(x)``), with C's rules: truncate, or
    extend by the source's signedness."""
    value = as_value(x)
    if isinstance(to, PointerType):
        if isinstance(value, Const):
            return Const(value.value & 0xFFFFFFFFFFFFFFFF, u64) if to.space != "mem" else \
                _no_pointer_from_int(to)
        if isinstance(value.type, PointerType) or value.type.is64:
            if to.space == "mem" and not isinstance(value.type, PointerType):
                _no_pointer_from_int(to)
            return Local(to, value.storage)
        raise build_error("a pointer needs a 64-bit value, not %s" % value.type.name)
    if not isinstance(to, IntType):
        raise build_error("cannot convert a value to %s (only to integer and pointer types)"
                          % getattr(to, "name", to))
    if isinstance(value, Const):
        if value.type is None and isinstance(to, NetworkIntType):   # be16(53)
            return _literal(Const(to.host.wrap(value.value)), to, True)
        if value.type is not None:
            _check_order(value.type, to)
        return Const(to.wrap(value.value), to)
    if isinstance(value.type, PointerType):
        if not to.is64:
            raise build_error("a pointer (%s) converts only to a 64-bit integer, not %s"
                              % (value.type.name, to.name))
        return Local(to, value.storage)
    if value.type is to:
        return value
    _check_order(value.type, to)
    return value.fn.convert(value, to)


def _check_order(source: IntType, target: IntType) -> None:
    mismatch = order_mismatch(source, target)
    if mismatch:
        raise build_error(mismatch)


def _no_pointer_from_int(to: PointerType) -> Value:
    raise build_error("an integer cannot become a pointer to program memory (%s): only "
                      "user/kernel addresses (read with the probe_read helpers) can" % to.name)


def _check_shift(amount: Value, left: IntType) -> None:
    if isinstance(amount, Const) and not 0 <= amount.value < left.bits:
        raise build_error("shift by %d is out of range for %s (0..%d)"
                          % (amount.value, left.name, left.bits - 1))


def _fold(op: str, a: int, b: int, t: Optional[IntType]) -> int:
    if op in ("/", "%") and b == 0:
        raise build_error("division by constant zero")
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op in ("/", "%"):
        quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # C truncates
        r = quotient if op == "/" else a - quotient * b
    elif op == "&":
        r = a & b
    elif op == "|":
        r = a | b
    elif op == "^":
        r = a ^ b
    elif op == "<<":
        r = a << b
    else:
        r = a >> b  # Python's >> is arithmetic: right for signed, and a >= 0 when unsigned
    return t.wrap(r) if t is not None else r


def _power_of_two(value: int) -> int:
    """log2(value) when value is a power of two > 1, else 0."""
    return value.bit_length() - 1 if value > 1 and value & (value - 1) == 0 else 0


def binary(op: str, x: Any, y: Any) -> Value:
    """``x op y``: typing, folding and simplification, then code."""
    a, b = as_value(x), as_value(y)
    if isinstance(a.type, PointerType) or isinstance(b.type, PointerType):
        return _pointer_arith(op, a, b)
    if op in ("<<", ">>"):
        if a.type is None and b.type is None:
            return Const(_fold(op, a.value, b.value, None))  # type: ignore[union-attr]
        if a.type is None:
            raise build_error("shifting an untyped constant (%d) by a value: give it a type, "
                              "e.g. u64(%d)" % (a.value, a.value))  # type: ignore[union-attr]
        t = _int_type(a, op).promoted
        if b.type is not None:
            _int_type(b, op)
        _check_shift(b, t)
        a = implicit(a, t)
        if isinstance(b, Const):
            b = Const(b.value, t)
    elif a.type is None and b.type is None:
        return Const(_fold(op, a.value, b.value, None))  # type: ignore[union-attr]
    else:
        t = common_type(op, a, b)
        a, b = implicit(a, t), implicit(b, t)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(_fold(op, a.value, b.value, t), t)
    if op in ("/", "%") and isinstance(b, Const) and b.value == 0:
        raise build_error("division by constant zero")
    simplified = _simplify(op, a, b, t)
    if simplified is not None:
        return simplified
    return _local_of(a, b).fn.binop(op, a, b, t)


def _local_of(a: Value, b: Value) -> Local:
    return a if isinstance(a, Local) else b  # type: ignore[return-value]


def _simplify(op: str, a: Value, b: Value, t: IntType) -> Optional[Value]:
    """Identities (x + 0, x * 1, ...) and strength reduction (x * 8 -> x << 3)."""
    if isinstance(a, Const) and op in COMMUTATIVE:
        a, b = b, a
    if not isinstance(b, Const):
        return None
    v = b.value
    all_ones = t.wrap(-1)
    if (v == 0 and op in ("+", "-", "|", "^", "<<", ">>")) or (v == 1 and op in ("*", "/")) \
            or (op == "&" and v == all_ones):
        return a
    if isinstance(a, Const):
        return None
    if v == 0 and op in ("*", "&"):
        return Const(0, t)
    if op == "&" and v == 0xFFFFFFFF and t.is64:   # one `w = w`, no 64-bit constant
        return convert(a.fn.clean(convert(a, u32)), t)  # type: ignore[union-attr]
    shift = _power_of_two(v)
    if shift and op == "*":
        return a.fn.binop("<<", a, Const(shift, t), t)  # type: ignore[union-attr]
    if shift and not t.signed and op == "/":
        return a.fn.binop(">>", a, Const(shift, t), t)  # type: ignore[union-attr]
    if shift and not t.signed and op == "%":
        return a.fn.binop("&", a, Const(v - 1, t), t)  # type: ignore[union-attr]
    return None


def _pointer_arith(op: str, a: Value, b: Value) -> Value:
    """Byte arithmetic on user/kernel addresses: ``ptr + n``, ``ptr - n``."""
    pointer, other = (a, b) if isinstance(a.type, PointerType) else (b, a)
    if op not in ("+", "-") or isinstance(other.type, PointerType) \
            or (op == "-" and pointer is b):
        raise build_error("operator %s is not defined on pointers (%s); only pointer + int "
                          "and pointer - int are" % (op, pointer.type.name))
    if pointer.type.space == "mem":
        raise build_error("arithmetic on a pointer to program memory: index or take a field "
                          "of it instead (ptr[i], ptr.field)")
    result = binary(op, Local(u64, pointer.storage), other) if isinstance(pointer, Local) \
        else binary(op, Const(pointer.value, u64), other)  # type: ignore[attr-defined]
    return convert(result, pointer.type)


def compare(op: str, x: Any, y: Any) -> Cond:
    """``x op y`` as a :class:`Cond`."""
    a, b = as_value(x), as_value(y)
    if isinstance(a.type, PointerType) or isinstance(b.type, PointerType):
        if op not in ("==", "!="):
            raise build_error("pointers compare only with == and != (%s %s %s)"
                              % (a.type and a.type.name, op, b.type and b.type.name))
        a, b = _unsigned64(a), _unsigned64(b)
        if isinstance(a, Const):
            a, b = b, a
        return Compare(op, a, b, False, True)
    if a.type is None and b.type is None:
        return ConstCond(_compare_ints(op, a.value, b.value))  # type: ignore[union-attr]
    t = common_type(op, a, b)
    a, b = implicit(a, t, exact=True), implicit(b, t, exact=True)
    if isinstance(a, Const) and isinstance(b, Const):
        return ConstCond(_compare_ints(op, a.value, b.value))
    if isinstance(a, Const):
        a, b, op = b, a, SWAPPED[op]
    return Compare(op, a, b, t.signed, t.is64)


def _unsigned64(value: Value) -> Value:
    if isinstance(value, Const):
        return Const(value.value & 0xFFFFFFFFFFFFFFFF, u64)
    if isinstance(value.type, PointerType):
        return value
    return convert(value, u64 if not value.type.signed else s64)


def _compare_ints(op: str, a: int, b: int) -> bool:
    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b,
            ">": a > b, ">=": a >= b}[op]


VALUES.convert = convert     # ``u32(x)``: types call back into this module
