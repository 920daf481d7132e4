"""One eBPF instruction: encoding, decoding, validation and constructors.

This module mirrors the instruction set as the kernel documents it
(Documentation/bpf/standardization/instruction-set.rst, RFC 9669) plus the
two later additions LLVM 19 knows (``may_goto`` and ``addr_space_cast``).
The opcode constants live in :mod:`pybpf.opcodes` and are re-exported
here. It knows nothing about labels, maps or source lines: those belong to
:mod:`pybpf.asm`. Text belongs to :mod:`pybpf.disasm` and :mod:`pybpf.asm_text`.

An instruction is an immutable :class:`Instruction` value. A 64-bit immediate
load (``ld_imm64``) is one logical instruction that occupies two 8-byte slots;
:attr:`Instruction.width` says how many.

Raw layout of one slot (little-endian)::

    msb                                                        lsb
    +------------------------+----------------+----+----+--------+
    |immediate (s32)         |offset (s16)    |src |dst |opcode  |
    +------------------------+----------------+----+----+--------+

Opcode byte of an arithmetic or jump instruction::

    +----+-+---+
    |op  |s|cls|       op: 4 bits, s: BPF_K (0) or BPF_X (1), cls: 3 bits
    +----+-+---+

Opcode byte of a load or store::

    +---+--+---+
    |mde|sz|cls|       mode: 3 bits, size: 2 bits, cls: 3 bits
    +---+--+---+
"""

import struct
from typing import Dict, Iterable, List, NamedTuple, Tuple, Union

from .errors import DecodeError, EncodeError

# Opcode constants live in .opcodes; every one is re-exported here (isa.BPF_MOV).
from .opcodes import *  # noqa: F401,F403

SLOT = struct.Struct("<BBhi")
SLOT_SIZE = 8


class Reg(int):
    """A register number. A distinct type so that constructors can tell
    ``add(R1, R2)`` (register operand) from ``add(R1, 2)`` (immediate)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "r%d" % int(self)


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = (Reg(i) for i in range(MAX_BPF_REG))
FP = R10

Operand = Union[Reg, int]


class Instruction(NamedTuple):
    """One logical eBPF instruction.

    ``imm`` is a signed 32-bit value, except for ``ld_imm64`` where it holds
    the whole signed 64-bit constant and the instruction is two slots wide.

    >>> Instruction(BPF_ALU64 | BPF_MOV | BPF_K, dst=0, imm=1).encode().hex()
    'b700000001000000'
    """

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    @property
    def cls(self) -> int:
        """The instruction class (BPF_LD ... BPF_ALU64): the low 3 opcode bits."""
        return self.opcode & 0x07

    @property
    def width(self) -> int:
        """Number of 8-byte slots: 2 for ld_imm64, else 1."""
        return 2 if self.opcode == LD_IMM64_OPCODE else 1

    @property
    def is_ld_imm64(self) -> bool:
        """Whether this is the two-slot 64-bit immediate load."""
        return self.opcode == LD_IMM64_OPCODE

    @property
    def is_jump(self) -> bool:
        """True for any instruction with a pc-relative target (not call/exit)."""
        if self.cls not in (BPF_JMP, BPF_JMP32):
            return False
        op = self.opcode & 0xF0
        return op not in (BPF_CALL, BPF_EXIT)

    @property
    def is_helper_call(self) -> bool:
        """Whether this calls a kernel helper by number (``call bpf_...``)."""
        return self.opcode == BPF_JMP | BPF_CALL and self.src == BPF_HELPER_CALL

    @property
    def is_local_call(self) -> bool:
        """Whether this is a bpf-to-bpf call (BPF_PSEUDO_CALL)."""
        return self.opcode == BPF_JMP | BPF_CALL and self.src == BPF_PSEUDO_CALL

    @property
    def jump_offset(self) -> int:
        """The pc-relative target in slots: imm for ``gotol``, else off."""
        if self.opcode == BPF_JMP32 | BPF_JA:
            return self.imm
        return self.off

    def encode(self) -> bytes:
        """The bytecode of this instruction alone (16 bytes for ld_imm64)."""
        return encode([self])


def slot_starts(instructions: Iterable[Instruction]) -> List[int]:
    """The slot where each instruction starts (an ld_imm64 takes two), then
    the slot after the last: the numbers the kernel and its logs use.

    >>> slot_starts([ld_imm64(R1, 1), exit_()])
    [0, 2, 3]
    """
    starts, slot = [], 0
    for insn in instructions:
        starts.append(slot)
        slot += 2 if insn.opcode == LD_IMM64_OPCODE else 1
    starts.append(slot)
    return starts


# --- encoding -------------------------------------------------------------------


def _signed32(value: int) -> int:
    return value - ((value & 0x80000000) << 1)


def _ld_imm64_slots(insn: Instruction) -> Tuple[Tuple[int, int, int, int], ...]:
    """The two slots of an ld_imm64: the low 32 bits of the constant in the
    first, the high 32 bits in the second (whose other fields are 0)."""
    imm = insn.imm & 0xFFFFFFFFFFFFFFFF
    return ((insn.opcode, (insn.src << 4) | insn.dst, insn.off, _signed32(imm & 0xFFFFFFFF)),
            (0, 0, 0, _signed32(imm >> 32)))


def encode(instructions: Iterable[Instruction]) -> bytes:
    """Encode instructions to little-endian bytecode.

    Fields out of range raise :class:`EncodeError` naming the instruction index.
    """
    out = bytearray()
    pack = SLOT.pack
    for index, insn in enumerate(instructions):
        try:
            if insn.opcode == LD_IMM64_OPCODE:
                first, second = _ld_imm64_slots(insn)
                out += pack(*first)
                out += pack(*second)
            else:
                out += pack(insn.opcode, (insn.src << 4) | insn.dst, insn.off, insn.imm)
        except struct.error as exc:
            raise EncodeError("instruction %d (%r): %s" % (index, insn, exc)) from None
        if not (0 <= insn.dst < 16 and 0 <= insn.src < 16):
            raise EncodeError("instruction %d (%r): register field out of range" % (index, insn))
    return bytes(out)


# --- decoding ---------------------------------------------------------------------


def decode(data: bytes, validate: bool = True) -> List[Instruction]:
    """Decode bytecode into logical instructions.

    Every slot is checked against the instruction set unless ``validate`` is
    false; anything else raises :class:`DecodeError` with the byte offset and
    the bytes of the offending slot.
    """
    if len(data) % SLOT_SIZE:
        raise DecodeError(len(data) - len(data) % SLOT_SIZE,
                          bytes(data[len(data) - len(data) % SLOT_SIZE:]),
                          "trailing %d bytes do not make a whole instruction" % (len(data) % SLOT_SIZE))
    out: List[Instruction] = []
    append = out.append
    new = tuple.__new__
    slots = SLOT.iter_unpack(data)
    position = 0
    simple = _SIMPLE_RULES
    for opcode, regs, off, imm in slots:
        if opcode == LD_IMM64_OPCODE:
            try:
                op2, regs2, off2, imm2 = next(slots)
            except StopIteration:
                raise DecodeError(position * SLOT_SIZE, bytes(data[position * SLOT_SIZE:]),
                                  "ld_imm64 is missing its second slot") from None
            if validate and (op2 or regs2 or off2):
                raise DecodeError((position + 1) * SLOT_SIZE,
                                  bytes(data[(position + 1) * SLOT_SIZE:(position + 2) * SLOT_SIZE]),
                                  "second slot of ld_imm64 must have opcode, registers and offset 0")
            wide = (imm & 0xFFFFFFFF) | ((imm2 & 0xFFFFFFFF) << 32)
            insn = new(Instruction, (opcode, regs & 0xF, regs >> 4, off, wide - ((wide >> 63) << 64)))
            width = 2
        else:
            insn = new(Instruction, (opcode, regs & 0xF, regs >> 4, off, imm))
            width = 1
        if validate:
            rule = simple.get(opcode)
            if rule is None or ((rule[0] and regs >> 4) or (rule[1] and off) or (rule[2] and imm)
                                or regs & 0xF > 10 or regs >> 4 > 10):
                problem = validity_problem(insn)
            else:
                problem = ""
            if problem:
                start = position * SLOT_SIZE
                raise DecodeError(start, bytes(data[start:start + width * SLOT_SIZE]), problem)
        append(insn)
        position += width
    return out


# --- validation ---------------------------------------------------------------------

def _check_alu(insn: Instruction) -> str:
    op = insn.opcode & 0xF0
    source = insn.opcode & BPF_X
    alu64 = insn.cls == BPF_ALU64
    if op not in ALU_OPS:
        return "unknown ALU operation 0x%02x" % op
    if op == BPF_END:
        if alu64 and source:
            return "bswap has no register-source form"
        if insn.imm not in (16, 32, 64) or insn.src or insn.off:
            return "byte swap needs imm 16, 32 or 64 and zero src and offset"
        return ""
    if op == BPF_NEG:
        if source or insn.src or insn.imm or insn.off:
            return "neg takes only a destination register"
        return ""
    if op in (BPF_DIV, BPF_MOD):
        allowed_off = (0, 1)
    elif op == BPF_MOV and source:
        allowed_off = (0, 8, 16, 32, BPF_ADDR_SPACE_CAST) if alu64 else (0, 8, 16)
    else:
        allowed_off = (0,)
    if insn.off not in allowed_off:
        if alu64 and op == BPF_MOV and source and insn.off == BPF_ADDR_PERCPU:
            return "per-CPU address move (off -1), which only the verifier writes"
        return "offset %d is not valid for this operation" % insn.off
    if source:
        if insn.imm and not (alu64 and op == BPF_MOV and insn.off == BPF_ADDR_SPACE_CAST):
            return "register-source ALU instruction must have imm 0"
    elif insn.src:
        return "immediate-source ALU instruction must have src 0"
    return ""


def _check_jmp(insn: Instruction) -> str:
    op = insn.opcode & 0xF0
    source = insn.opcode & BPF_X
    jmp64 = insn.cls == BPF_JMP
    if op == BPF_JA:
        if source or insn.src or insn.dst:
            return "goto takes no registers"
        if jmp64 and insn.imm:
            return "goto must have imm 0 (gotol is the JMP32 form)"
        if not jmp64 and insn.off:
            return "gotol must have offset 0"
        return ""
    if op == BPF_CALL:
        if not jmp64 or source or insn.dst or insn.off:
            return "call must be JMP|CALL|K with dst 0 and offset 0"
        if insn.src not in (BPF_HELPER_CALL, BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL):
            return "call has unknown src %d" % insn.src
        return ""
    if op == BPF_EXIT:
        if not jmp64 or source or insn.src or insn.dst or insn.off or insn.imm:
            return "exit takes no operands"
        return ""
    if op == BPF_JCOND:
        if not jmp64 or source or insn.src or insn.dst or insn.imm:
            return "may_goto takes only an offset"
        return ""
    if op not in COND_JUMP_OPS:
        return "unknown jump operation 0x%02x" % op
    if not source and insn.src:
        return "immediate-source jump must have src 0"
    if source and insn.imm:
        return "register-source jump must have imm 0"
    return ""


def _check_ld(insn: Instruction) -> str:
    mode = insn.opcode & 0xE0
    size = insn.opcode & 0x18
    if insn.opcode == LD_IMM64_OPCODE:
        if insn.src > BPF_PSEUDO_MAP_IDX_VALUE:
            return "ld_imm64 has unknown pseudo source %d" % insn.src
        return "ld_imm64 must have offset 0" if insn.off else ""
    if mode == BPF_ABS and size != BPF_DW:
        if insn.src or insn.dst or insn.off:
            return "packet load (abs) takes only imm"
        return ""
    if mode == BPF_IND and size != BPF_DW:
        if insn.dst or insn.off:
            return "packet load (ind) takes a source register and imm"
        return ""
    return "unknown BPF_LD opcode 0x%02x" % insn.opcode


def _check_ldx(insn: Instruction) -> str:
    mode = insn.opcode & 0xE0
    if mode == BPF_MEM or (mode == BPF_MEMSX and insn.opcode & 0x18 != BPF_DW):
        return "load must have imm 0" if insn.imm else ""
    return "unknown BPF_LDX opcode 0x%02x" % insn.opcode


def _check_st(insn: Instruction) -> str:
    if insn.opcode & 0xE0 != BPF_MEM:
        return "unknown BPF_ST opcode 0x%02x" % insn.opcode
    return "store of an immediate must have src 0" if insn.src else ""


def _check_stx(insn: Instruction) -> str:
    mode = insn.opcode & 0xE0
    if mode == BPF_MEM:
        return "register store must have imm 0" if insn.imm else ""
    if mode == BPF_ATOMIC and insn.opcode & 0x18 in (BPF_W, BPF_DW):
        return "" if insn.imm in ATOMIC_OPS else "unknown atomic operation 0x%x" % insn.imm
    return "unknown BPF_STX opcode 0x%02x" % insn.opcode


_CHECK_BY_CLASS = {
    BPF_LD: _check_ld, BPF_LDX: _check_ldx, BPF_ST: _check_st, BPF_STX: _check_stx,
    BPF_ALU: _check_alu, BPF_ALU64: _check_alu, BPF_JMP: _check_jmp, BPF_JMP32: _check_jmp,
}


def _simple_rules() -> Dict[int, Tuple[bool, bool, bool]]:
    """Opcodes whose only constraints (besides registers r0-r10) are fields
    that must be zero: opcode -> (src must be 0, off must be 0, imm must be 0).

    ``decode`` checks these inline because they are most of every program;
    everything else goes through :func:`validity_problem`. A unit test holds
    the two in agreement.
    """
    rules: Dict[int, Tuple[bool, bool, bool]] = {}
    for cls in (BPF_ALU, BPF_ALU64):
        for op in (BPF_ADD, BPF_SUB, BPF_MUL, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH, BPF_XOR,
                   BPF_ARSH, BPF_MOV):
            rules[cls | op | BPF_K] = (True, True, False)
            if op != BPF_MOV:  # mov X also encodes movsx and addr_space_cast
                rules[cls | op | BPF_X] = (False, True, True)
    for cls in (BPF_JMP, BPF_JMP32):
        for op in COND_JUMP_OPS:
            rules[cls | op | BPF_K] = (True, False, False)
            rules[cls | op | BPF_X] = (False, False, True)
    for size in (BPF_B, BPF_H, BPF_W, BPF_DW):
        rules[BPF_LDX | BPF_MEM | size] = (False, False, True)
        rules[BPF_ST | BPF_MEM | size] = (True, False, False)
        rules[BPF_STX | BPF_MEM | size] = (False, False, True)
        if size != BPF_DW:
            rules[BPF_LDX | BPF_MEMSX | size] = (False, False, True)
    return rules


_SIMPLE_RULES = _simple_rules()


def validity_problem(insn: Instruction) -> str:
    """Why ``insn`` is not a valid instruction, or ``""`` when it is."""
    # src also carries the pseudo kinds of ld_imm64 and call, all below 11.
    if not (0 <= insn.dst < MAX_BPF_REG and 0 <= insn.src < MAX_BPF_REG):
        return "register out of range (r0-r10)"
    if not -0x8000 <= insn.off <= 0x7FFF:
        return "offset out of range"
    limit = 1 << 63 if insn.opcode == LD_IMM64_OPCODE else 1 << 31
    if not -limit <= insn.imm < limit:
        return "immediate out of range"
    return _CHECK_BY_CLASS[insn.opcode & 0x07](insn)


# --- constructors -----------------------------------------------------------------------
# Named after what they build; each returns one Instruction. ``operand`` may be
# a Reg (register source, BPF_X) or a plain int (immediate, BPF_K).


def _source(operand: Operand):
    if isinstance(operand, Reg):
        return BPF_X, int(operand), 0
    return BPF_K, 0, int(operand)


def alu(op: int, dst: Reg, operand: Operand = 0, *, alu64: bool = True, off: int = 0) -> Instruction:
    """An arithmetic instruction: ``dst op= operand``. ``off=1`` selects the
    signed form of div/mod; for mov it is the sign-extension width."""
    source, src, imm = _source(operand)
    return Instruction((BPF_ALU64 if alu64 else BPF_ALU) | op | source, int(dst), src, off, imm)


def mov(dst: Reg, operand: Operand, *, alu64: bool = True) -> Instruction:
    """``dst = operand``, 64-bit unless ``alu64`` is false (upper half zeroed)."""
    return alu(BPF_MOV, dst, operand, alu64=alu64)


def movsx(dst: Reg, src: Reg, bits: int, *, alu64: bool = True) -> Instruction:
    """Sign-extending move of the low ``bits`` (8, 16 or 32) of ``src``."""
    return alu(BPF_MOV, dst, src, alu64=alu64, off=bits)


def neg(dst: Reg, *, alu64: bool = True) -> Instruction:
    """``dst = -dst``."""
    return Instruction((BPF_ALU64 if alu64 else BPF_ALU) | BPF_NEG, int(dst))


def endian(dst: Reg, bits: int, big: bool) -> Instruction:
    """Convert ``dst`` between host order and little (``big=False``) or big endian."""
    return Instruction(BPF_ALU | BPF_END | (BPF_TO_BE if big else BPF_TO_LE), int(dst), imm=bits)


def bswap(dst: Reg, bits: int) -> Instruction:
    """Unconditional byte swap (ALU64 form, kernel 6.6)."""
    return Instruction(BPF_ALU64 | BPF_END, int(dst), imm=bits)


def addr_space_cast(dst: Reg, src: Reg, dst_as: int, src_as: int) -> Instruction:
    """Convert ``src`` between BPF arena address spaces (kernel 6.9)."""
    return Instruction(BPF_ALU64 | BPF_MOV | BPF_X, int(dst), int(src), BPF_ADDR_SPACE_CAST,
                       (dst_as << 16) | src_as)


def jump(op: int, dst: Reg, operand: Operand, off: int, *, jmp32: bool = False) -> Instruction:
    """A conditional jump ``if dst op operand goto +off``."""
    source, src, imm = _source(operand)
    return Instruction((BPF_JMP32 if jmp32 else BPF_JMP) | op | source, int(dst), src, off, imm)


def ja(off: int) -> Instruction:
    """``goto +off`` with a 16-bit offset."""
    return Instruction(BPF_JMP | BPF_JA, off=off)


def gotol(off: int) -> Instruction:
    """``gotol +off`` with a 32-bit offset (kernel 6.6)."""
    return Instruction(BPF_JMP32 | BPF_JA, imm=off)


def may_goto(off: int) -> Instruction:
    """``may_goto +off``: the kernel may take it to bound a loop (6.9)."""
    return Instruction(BPF_JMP | BPF_JCOND, off=off)


def call_helper(helper_id: int) -> Instruction:
    """Call the kernel helper with number ``helper_id`` (``bpf_func_id``)."""
    return Instruction(BPF_JMP | BPF_CALL, src=BPF_HELPER_CALL, imm=helper_id)


def call_local(off: int) -> Instruction:
    """bpf-to-bpf call; ``off`` is relative to the next instruction, in slots."""
    return Instruction(BPF_JMP | BPF_CALL, src=BPF_PSEUDO_CALL, imm=off)


def call_kfunc(btf_id: int) -> Instruction:
    """Call the kernel function with BTF id ``btf_id`` (a kfunc)."""
    return Instruction(BPF_JMP | BPF_CALL, src=BPF_PSEUDO_KFUNC_CALL, imm=btf_id)


def exit_() -> Instruction:
    """Return r0 to the caller, or to the kernel from the main program."""
    return Instruction(BPF_JMP | BPF_EXIT)


def ld_imm64(dst: Reg, value: int, pseudo: int = 0) -> Instruction:
    """Load a 64-bit constant; with ``pseudo`` the kernel rewrites it
    (map fd, map value, BTF id, function, map index)."""
    return Instruction(LD_IMM64_OPCODE, int(dst), pseudo, 0, value)


def ldx(size: int, dst: Reg, src: Reg, off: int, *, signed: bool = False) -> Instruction:
    """``dst = *(size *)(src + off)``; ``size`` in bytes (1, 2, 4, 8)."""
    mode = BPF_MEMSX if signed else BPF_MEM
    return Instruction(BPF_LDX | mode | SIZE_OF_BYTES[size], int(dst), int(src), off)


def st(size: int, dst: Reg, off: int, imm: int) -> Instruction:
    """``*(size *)(dst + off) = imm``."""
    return Instruction(BPF_ST | BPF_MEM | SIZE_OF_BYTES[size], int(dst), 0, off, imm)


def stx(size: int, dst: Reg, off: int, src: Reg) -> Instruction:
    """``*(size *)(dst + off) = src``."""
    return Instruction(BPF_STX | BPF_MEM | SIZE_OF_BYTES[size], int(dst), int(src), off)


def atomic(size: int, op: int, dst: Reg, off: int, src: Reg) -> Instruction:
    """Atomic ``op`` (an ATOMIC_OPS value) on ``*(size *)(dst + off)`` with ``src``."""
    return Instruction(BPF_STX | BPF_ATOMIC | SIZE_OF_BYTES[size], int(dst), int(src), off, op)


def ld_abs(size: int, imm: int) -> Instruction:
    """Legacy packet load ``r0 = *(size *)skb[imm]``."""
    return Instruction(BPF_LD | BPF_ABS | SIZE_OF_BYTES[size], imm=imm)


def ld_ind(size: int, src: Reg, imm: int) -> Instruction:
    """Legacy packet load ``r0 = *(size *)skb[src + imm]``."""
    return Instruction(BPF_LD | BPF_IND | SIZE_OF_BYTES[size], src=int(src), imm=imm)
