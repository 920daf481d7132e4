"""Hypothesis strategies for eBPF code: valid instructions of every kind, and
whole programs with labels, symbolic jumps and calls, and map references.

The instruction strategy is written from the instruction set's rules, not
from ``isa.validity_problem``, so the property tests check the validator too
(``test_isa_properties`` asserts every instruction drawn here is valid).
"""

from typing import List, Optional

from hypothesis import strategies as st

from pybpf import asm, isa
from pybpf.isa import Instruction

registers = st.integers(0, 10)
s16 = st.integers(-(1 << 15), (1 << 15) - 1)
s32 = st.integers(-(1 << 31), (1 << 31) - 1)
s64 = st.integers(-(1 << 63), (1 << 63) - 1)
small = st.integers(-4, 4)  # offsets that land inside small programs

# Byte sizes by their opcode bits.
SIZES = (isa.BPF_B, isa.BPF_H, isa.BPF_W, isa.BPF_DW)
PLAIN_ALU_OPS = [op for op in isa.ALU_OPS if op not in (isa.BPF_NEG, isa.BPF_END)]


@st.composite
def alu(draw) -> Instruction:
    cls = draw(st.sampled_from((isa.BPF_ALU, isa.BPF_ALU64)))
    op = draw(st.sampled_from(PLAIN_ALU_OPS))
    dst = draw(registers)
    off = 0
    if op in (isa.BPF_DIV, isa.BPF_MOD):
        off = draw(st.sampled_from((0, 1)))  # 1: signed division
    if draw(st.booleans()):
        return Instruction(cls | op | isa.BPF_K, dst, 0, off, draw(s32))
    if op == isa.BPF_MOV:
        widths = (0, 8, 16, 32, isa.BPF_ADDR_SPACE_CAST) if cls == isa.BPF_ALU64 else (0, 8, 16)
        off = draw(st.sampled_from(widths))
    imm = draw(s32) if op == isa.BPF_MOV and off == isa.BPF_ADDR_SPACE_CAST else 0
    return Instruction(cls | op | isa.BPF_X, dst, draw(registers), off, imm)


@st.composite
def alu_unary(draw) -> Instruction:
    """neg, and the byte swaps (to little/big endian, or unconditional)."""
    dst = draw(registers)
    kind = draw(st.sampled_from(("neg32", "neg64", "le", "be", "bswap")))
    if kind.startswith("neg"):
        return isa.neg(isa.Reg(dst), alu64=kind == "neg64")
    bits = draw(st.sampled_from((16, 32, 64)))
    if kind == "bswap":
        return isa.bswap(isa.Reg(dst), bits)
    return isa.endian(isa.Reg(dst), bits, big=kind == "be")


@st.composite
def jumps(draw, offsets=s16) -> Instruction:
    cls = draw(st.sampled_from((isa.BPF_JMP, isa.BPF_JMP32)))
    op = draw(st.sampled_from(isa.COND_JUMP_OPS))
    if draw(st.booleans()):
        return Instruction(cls | op | isa.BPF_K, draw(registers), 0, draw(offsets), draw(s32))
    return Instruction(cls | op | isa.BPF_X, draw(registers), draw(registers), draw(offsets), 0)


def control(offsets=s16, long_offsets=s32) -> st.SearchStrategy:
    """Unconditional jumps, calls of every kind and exit."""
    return st.one_of(
        offsets.map(isa.ja), long_offsets.map(isa.gotol), offsets.map(isa.may_goto),
        st.integers(0, 250).map(isa.call_helper), s32.map(isa.call_helper),
        long_offsets.map(isa.call_local), s32.map(isa.call_kfunc), st.just(isa.exit_()))


@st.composite
def memory(draw) -> Instruction:
    """Loads, stores and atomics of every size and mode."""
    dst, src, off = draw(registers), draw(registers), draw(s16)
    size = draw(st.sampled_from(SIZES))
    kind = draw(st.sampled_from(("ldx", "ldsx", "st", "stx", "atomic")))
    if kind == "ldx":
        return Instruction(isa.BPF_LDX | isa.BPF_MEM | size, dst, src, off)
    if kind == "ldsx":
        size = draw(st.sampled_from((isa.BPF_B, isa.BPF_H, isa.BPF_W)))
        return Instruction(isa.BPF_LDX | isa.BPF_MEMSX | size, dst, src, off)
    if kind == "st":
        return Instruction(isa.BPF_ST | isa.BPF_MEM | size, dst, 0, off, draw(s32))
    if kind == "stx":
        return Instruction(isa.BPF_STX | isa.BPF_MEM | size, dst, src, off)
    size = draw(st.sampled_from((isa.BPF_W, isa.BPF_DW)))
    return Instruction(isa.BPF_STX | isa.BPF_ATOMIC | size, dst, src, off,
                       draw(st.sampled_from(isa.ATOMIC_OPS)))


@st.composite
def loads(draw) -> Instruction:
    """BPF_LD: legacy packet loads and ld_imm64 with every pseudo source."""
    kind = draw(st.sampled_from(("abs", "ind", "imm64")))
    if kind == "imm64":
        pseudo = draw(st.integers(0, isa.BPF_PSEUDO_MAP_IDX_VALUE))
        return isa.ld_imm64(isa.Reg(draw(registers)), draw(s64), pseudo)
    size = draw(st.sampled_from((1, 2, 4)))
    if kind == "abs":
        return isa.ld_abs(size, draw(s32))
    return isa.ld_ind(size, isa.Reg(draw(registers)), draw(s32))


def instructions(offsets=s16, long_offsets=s32) -> st.SearchStrategy:
    """Any valid instruction; jump offsets drawn from ``offsets`` (16-bit) and
    ``long_offsets`` (gotol and bpf-to-bpf calls)."""
    return st.one_of(alu(), alu_unary(), jumps(offsets), control(offsets, long_offsets),
                     memory(), loads())


# --- programs ----------------------------------------------------------------------

label_names = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda name: not (name[0] in "rw" and name[1:].isdigit()))
map_names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)


@st.composite
def programs(draw) -> asm.AssembledProgram:
    """A program built with the assembler: plain instructions (with numeric
    jumps that may leave the program) mixed with labels, symbolic jumps, gotol,
    may_goto, bpf-to-bpf calls, function addresses and map references."""
    names: List[str] = draw(st.lists(label_names, max_size=4, unique=True))
    functions = set(draw(st.lists(st.sampled_from(names), unique=True))) if names else set()
    plain = instructions(small, small)
    item_kinds = ["insn", "map"] + (["jump", "goto", "gotol", "may_goto", "call", "func"]
                                    if names else [])
    items = draw(st.lists(st.sampled_from(item_kinds), max_size=25))
    positions = {name: draw(st.integers(0, len(items))) for name in names}
    a = asm.Assembler()
    for index in range(len(items) + 1):
        for name in names:
            if positions[name] == index:
                (a.function if name in functions else a.label)(name)
        if index < len(items):
            _emit_item(draw, a, items[index], names, plain)
    return a.assemble()


def _emit_item(draw, a: asm.Assembler, kind: str, names: List[str],
               plain: st.SearchStrategy) -> None:
    if kind == "insn":
        a.emit(draw(plain))
        return
    reg = isa.Reg(draw(registers))
    if kind == "map":
        offset: Optional[int] = draw(st.one_of(st.none(), st.integers(0, (1 << 31) - 1)))
        a.ld_map(reg, draw(map_names), value_offset=offset)
        return
    target = draw(st.sampled_from(names))
    if kind == "jump":
        op = draw(st.sampled_from(isa.COND_JUMP_OPS))
        operand = isa.Reg(draw(registers)) if draw(st.booleans()) else draw(s32)
        a.jump(op, reg, operand, target, jmp32=draw(st.booleans()))
    elif kind in ("goto", "gotol"):
        a.goto(target, long=kind == "gotol")
    elif kind == "may_goto":
        a.may_goto(target)
    elif kind == "call":
        a.call_function(target)
    else:
        a.ld_function(reg, target)
