"""Integer arithmetic and conversions: the ALU half of
:class:`~pybpf.dsl.codegen.FunctionCode`.

A mixin, like :class:`~pybpf.dsl.calls.CallCode`: it relies on FunctionCode
for storages, registers and emission. It keeps the invariant that a value
of 32 bits or less has the upper 32 bits of its register zero, and tracks
how many low bits of a register may be set (``Storage.bits``) so that a
narrowing conversion costs nothing until the value must be clean.
"""

from typing import Any, Union

from .. import isa
from ..isa import Reg
from .regalloc import Storage
from .types import IntType
from .values import Const, Local, Value, build_error

_ALU = {"+": isa.BPF_ADD, "-": isa.BPF_SUB, "*": isa.BPF_MUL, "/": isa.BPF_DIV,
        "%": isa.BPF_MOD, "&": isa.BPF_AND, "|": isa.BPF_OR, "^": isa.BPF_XOR,
        "<<": isa.BPF_LSH, ">>": isa.BPF_RSH}


class ArithmeticCode:
    """The arithmetic half of FunctionCode."""

    def binop(self, op: str, a: Value, b: Value, t: IntType) -> Local:
        """``a op b`` in type ``t``: the result in a new storage, computed in
        place when ``a`` dies here (the verifier needs cpu v4 for signed
        division)."""
        if t.signed and op in ("/", "%") and self.cpu < 4:
            raise build_error("signed %s needs the cpu v4 instruction set (sdiv/smod, Linux "
                              "6.6); build with cpu=4, or make the operands unsigned"
                              % ("division" if op == "/" else "modulo"))
        if op in ("<<", ">>") and t.is64:
            b = self.clean(b)
        storage = self.new_storage()
        self.use(a, storage)
        if isinstance(a, Local):
            self.alloc.derive(a.storage, storage)
        self.use(b, storage)
        result = self._result(t, storage)
        storage.bits = _result_bits(op, a, b, t)
        if self.live(storage):
            self._emit_binop(op, a, b, t, storage)
        return result

    def _emit_binop(self, op: str, a: Value, b: Value, t: IntType, storage: Storage) -> None:
        is64 = t.is64
        code = isa.BPF_ARSH if op == ">>" and t.signed else _ALU[op]
        off = 1 if t.signed and op in ("/", "%") else 0
        ra, rb = self._home_reg(a), self._home_reg(b)
        avoid = {r for r in (ra, rb) if r is not None}
        dst = self._target(storage, avoid)
        operand = self._operand(b, is64, avoid | {dst})

        def alu(target: Reg, source: Union[Reg, int]) -> None:
            self.emit(isa.alu(code, target, source, alu64=is64, off=off))

        if ra is not None and dst == ra:
            alu(dst, operand)
        elif isinstance(operand, Reg) and dst == operand:
            if op in ("+", "*", "&", "|", "^"):
                alu(dst, ra if ra is not None else self._reg_of(a, avoid | {dst}))
            else:
                spare = self.alloc.scratch(avoid | {dst})
                self._load_into(spare, a, is64)
                alu(spare, operand)
                self.move(dst, spare)
        else:
            self._load_into(dst, a, is64)
            alu(dst, operand)
        self._writeback(storage, dst)

    def convert(self, value: Local, to: IntType) -> Local:
        """Code for an integer conversion, or the same storage when the
        register already holds the converted value (or holds it in its low
        bits: a narrowing conversion costs nothing until cleaned)."""
        f = value.type
        if to.size < f.size or (to.size == f.size < 4 and to.signed != f.signed):
            bits = value.storage.bits
            fits = bits <= (to.bits - 1 if to.signed and to.size < 4 else to.bits)
            return Local(to, value.storage, dirty=value.dirty or not fits)
        value = self.clean(value)
        if to.is64:
            if f.is64 or not f.signed:
                return Local(to, value.storage)
            return self._unary(value, to, self._sign_extend_64)
        if to.size < 4 and f.signed and not to.signed:   # s8 -> u16: -1 is 0xffff
            return self._unary(value, to, lambda dst: self._mask(dst, to.bits))
        return Local(to, value.storage)

    def clean(self, value: Value) -> Value:
        """``value`` with the bits above its width in canonical form (see
        :class:`~pybpf.dsl.values.Local`)."""
        if not (isinstance(value, Local) and value.dirty):
            return value
        t = value.type
        if t.size == 4:
            code = (lambda dst: self.emit(isa.mov(dst, dst, alu64=False)))
        elif t.signed:
            code = (lambda dst: self._sign_extend_32(dst, t.bits))
        else:
            code = (lambda dst: self._mask(dst, t.bits))
        return self._unary(Local(t, value.storage), t, code)

    def _mask(self, reg: Reg, bits: int) -> None:
        self.emit(isa.alu(isa.BPF_AND, reg, (1 << bits) - 1, alu64=False))

    def _unary(self, value: Local, to: IntType, code) -> Local:
        storage = self.new_storage()
        self.use(value, storage)
        self.alloc.derive(value.storage, storage)
        result = self._result(to, storage)
        storage.bits = canonical_bits(to)
        if self.live(storage):
            source = self._home_reg(value)
            dst = self._target(storage, {source} if source is not None else ())
            self._load_into(dst, value, True)
            code(dst)
            self._writeback(storage, dst)
        return result

    def _sign_extend_64(self, reg: Reg) -> None:
        if self.cpu >= 4:
            self.emit(isa.movsx(reg, reg, 32))
        else:
            self.emit(isa.alu(isa.BPF_LSH, reg, 32))
            self.emit(isa.alu(isa.BPF_ARSH, reg, 32))

    def to_big_endian(self, value: Local, to: IntType) -> Local:
        """``value``'s low ``to.bits`` bits in the other byte order, as a
        ``to`` (``bpf_htons`` and friends: ``be16``/``be32`` swap on a
        little-endian machine and only zero-extend on a big-endian one)."""
        return self._unary(value, to, lambda dst: self.emit(isa.endian(dst, to.bits, big=True)))

    def _sign_extend_32(self, reg: Reg, bits: int) -> None:
        """Sign-extend the low ``bits`` of ``reg`` to 32 bits, upper half zero."""
        if self.cpu >= 4:
            self.emit(isa.movsx(reg, reg, bits, alu64=False))
        else:
            self.emit(isa.alu(isa.BPF_LSH, reg, 32 - bits, alu64=False))
            self.emit(isa.alu(isa.BPF_ARSH, reg, 32 - bits, alu64=False))


def canonical_bits(vtype: Any) -> int:
    """How many low bits of a register holding ``vtype`` may be set: the
    width of an unsigned type; 32 for signed ones up to 32 bits (they are
    sign-extended to 32); 64 for 64-bit types and pointers."""
    if isinstance(vtype, IntType) and vtype.size <= 4:
        return vtype.bits if not vtype.signed else 32
    return 64


def _bits(value: Value) -> int:
    if isinstance(value, Const):
        return value.value.bit_length() if value.value >= 0 else 64
    return value.storage.bits if not value.dirty else 64


def _result_bits(op: str, a: Value, b: Value, t: IntType) -> int:
    """An upper bound of the significant bits of ``a op b`` (unsigned ``t``),
    so that narrowing it later needs no masking (``u8(flags | 1)``)."""
    width = canonical_bits(t)
    if t.signed:
        return width
    ba, bb = _bits(a), _bits(b)
    if op == "&":
        bits = min(ba, bb)
    elif op in ("|", "^"):
        bits = max(ba, bb)
    elif op == "+":
        bits = max(ba, bb) + 1
    elif op == "*":
        bits = ba + bb
    elif op == "/":
        bits = ba
    elif op == "%":
        bits = bb
    elif op == ">>" and isinstance(b, Const):
        bits = max(ba - b.value, 0)
    elif op == "<<" and isinstance(b, Const):
        bits = ba + b.value
    else:
        bits = width
    return min(bits, width)
