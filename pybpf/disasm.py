"""Instructions as text, in three dialects.

* ``"llvm"``: exactly what ``llvm-objdump -d --no-print-imm-hex --mcpu=v4``
  (LLVM 19) prints after its address and hex columns, so our output can be
  diffed against clang-built objects and fed back to ``llvm-mc``.
* ``"annotated"``: llvm syntax plus what llvm cannot know: labels, helper and
  map names, source lines, slot numbers and short comments for a reader new to
  eBPF. :mod:`pybpf.asm_text` parses it back to the same program.
* ``"kernel"``: the kernel's own syntax, as in verifier logs and
  ``bpftool prog dump xlated`` (``kernel/bpf/disasm.c``), so the two can be
  compared line by line.

This module only formats; it never builds programs (that is :mod:`pybpf.asm`)
and reads an ``AssembledProgram`` through its public attributes only.
Formatting is table-driven: one formatter per opcode byte and dialect, built
once at import.

>>> print(disassemble([isa.mov(isa.R0, 0), isa.exit_()]))
r0 = 0
exit
"""

import linecache
import os
from typing import (TYPE_CHECKING, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, Union)

from . import helper_defs, isa
from .errors import DecodeError
from .isa import (BPF_ABS, BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_ATOMIC, BPF_B,
                  BPF_CALL, BPF_CMPXCHG, BPF_DIV, BPF_DW, BPF_END, BPF_EXIT, BPF_FETCH, BPF_H,
                  BPF_IND, BPF_JA, BPF_JCOND, BPF_JMP, BPF_JMP32, BPF_K, BPF_LD, BPF_LDX,
                  BPF_LSH, BPF_MEM, BPF_MEMSX, BPF_MOD, BPF_MOV, BPF_MUL, BPF_NEG, BPF_OR,
                  BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TO_BE, BPF_W, BPF_X, BPF_XCHG,
                  BPF_XOR, LD_IMM64_OPCODE, Instruction)

if TYPE_CHECKING:  # for annotations only: disasm depends on isa, not on asm
    from .asm import AssembledProgram, Relocation

STYLES = ("llvm", "annotated", "kernel")

Formatter = Callable[[Instruction], str]

# Operator spellings shared by llvm and the kernel (bpf_alu_string,
# bpf_alu_sign_string and bpf_jmp_string in kernel/bpf/disasm.c).
ALU_OPERATORS = {
    BPF_ADD: "+=", BPF_SUB: "-=", BPF_MUL: "*=", BPF_DIV: "/=", BPF_OR: "|=", BPF_AND: "&=",
    BPF_LSH: "<<=", BPF_RSH: ">>=", BPF_MOD: "%=", BPF_XOR: "^=", BPF_MOV: "=", BPF_ARSH: "s>>=",
}
SIGNED_ALU_OPERATORS = {BPF_DIV: "s/=", BPF_MOD: "s%="}  # selected by off == 1
JUMP_OPERATORS = {
    isa.BPF_JEQ: "==", isa.BPF_JGT: ">", isa.BPF_JGE: ">=", isa.BPF_JSET: "&", isa.BPF_JNE: "!=",
    isa.BPF_JSGT: "s>", isa.BPF_JSGE: "s>=", isa.BPF_JLT: "<", isa.BPF_JLE: "<=",
    isa.BPF_JSLT: "s<", isa.BPF_JSLE: "s<=",
}
ATOMIC_ALU_NAMES = {BPF_ADD: "add", BPF_AND: "and", BPF_OR: "or", BPF_XOR: "xor"}
SIZE_BITS = {BPF_B: 8, BPF_H: 16, BPF_W: 32, BPF_DW: 64}

#: Opcodes with a pc-relative target: ``goto``, ``gotol``, ``may_goto``, ``if``.
JUMP_OPCODES = frozenset(
    [BPF_JMP | BPF_JA, BPF_JMP32 | BPF_JA, BPF_JMP | BPF_JCOND]
    + [cls | op | src for cls in (BPF_JMP, BPF_JMP32) for op in JUMP_OPERATORS
       for src in (BPF_K, BPF_X)])
CALL_OPCODE = BPF_JMP | BPF_CALL
EXIT_OPCODE = BPF_JMP | BPF_EXIT
LONG_JUMP_OPCODE = BPF_JMP32 | BPF_JA  # gotol: the offset is in imm
MAY_GOTO_OPCODE = BPF_JMP | BPF_JCOND
ADDR_SPACE_CAST_OPCODE = BPF_ALU64 | BPF_MOV | BPF_X  # with off == BPF_ADDR_SPACE_CAST
# (the same opcode with off == BPF_ADDR_PERCPU is the kernel-internal per-CPU move)


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


def _u64(value: int) -> int:
    return value & 0xFFFFFFFFFFFFFFFF


def _s32(value: int) -> int:
    return value - ((value & 0x80000000) << 1)


def jump_target(insn: Instruction, slot: int) -> int:
    """Slot a jump at ``slot`` goes to (offsets count from the next slot)."""
    return slot + 1 + (insn.imm if insn.opcode == LONG_JUMP_OPCODE else insn.off)


def helper_name(helper_id: int) -> Optional[str]:
    """The kernel's name of helper ``helper_id`` (``bpf_map_lookup_elem``), or None."""
    proto = helper_defs.HELPERS_BY_ID.get(helper_id)
    return proto.name if proto is not None else None


# --- arithmetic: the same text in llvm and kernel syntax ---------------------------
# kernel/bpf/disasm.c print_bpf_insn(), the BPF_ALU/BPF_ALU64 branch; llvm prints
# identical text, so one table serves both dialects.


def _alu_formatter(opcode: int) -> Formatter:
    cls, op, source = opcode & 0x07, opcode & 0xF0, opcode & BPF_X
    r = "w" if cls == BPF_ALU else "r"
    if op == BPF_NEG:  # "(%02x) %c%d = -%c%d"
        fmt = r + "%d = -" + r + "%d"
        return lambda i: fmt % (i.dst, i.dst)
    if op == BPF_END:
        # class ALU converts to little/big endian, ALU64 swaps unconditionally;
        # both dialects name an r register here even for class ALU.
        name = "bswap" if cls == BPF_ALU64 else "be" if source == BPF_TO_BE else "le"
        fmt = "r%d = " + name + "%d r%d"
        return lambda i: fmt % (i.dst, i.imm, i.dst)
    operand = "%d" if source == BPF_K else r + "%d"
    plain = r + "%d " + ALU_OPERATORS[op].replace("%", "%%") + " " + operand
    if op in SIGNED_ALU_OPERATORS:
        signed = r + "%d " + SIGNED_ALU_OPERATORS[op].replace("%", "%%") + " " + operand
        if source == BPF_K:
            return lambda i: (signed if i.off else plain) % (i.dst, i.imm)
        return lambda i: (signed if i.off else plain) % (i.dst, i.src)
    if source == BPF_K:
        return lambda i: plain % (i.dst, i.imm)
    if op != BPF_MOV:
        return lambda i: plain % (i.dst, i.src)
    movsx = r + "%d = (s%d)" + r + "%d"

    def mov(i: Instruction) -> str:
        if not i.off:
            return plain % (i.dst, i.src)
        if i.off == isa.BPF_ADDR_SPACE_CAST and cls == BPF_ALU64:
            # imm = destination address space << 16 | source address space
            return "r%d = addr_space_cast(r%d, %d, %d)" % (
                i.dst, i.src, _u32(i.imm) >> 16, i.imm & 0xFFFF)
        return movsx % (i.dst, i.off, i.src)
    return mov


def _is_percpu_move(insn: Instruction) -> bool:
    """The per-CPU address move the verifier writes when it inlines a per-CPU
    lookup (is_mov_percpu_addr() in kernel/bpf/disasm.c). Only the kernel
    style prints it: llvm has no syntax for it and no loader may submit it."""
    return insn.opcode == ADDR_SPACE_CAST_OPCODE and insn.off == isa.BPF_ADDR_PERCPU


def _kernel_mov64(mov: Formatter) -> Formatter:
    """ALU64 MOV X in the kernel's syntax, the per-CPU address move included
    ("(%02x) r%d = &(void __percpu *)(r%d)")."""
    def kernel_mov(i: Instruction) -> str:
        if i.off == isa.BPF_ADDR_PERCPU:
            return "r%d = &(void __percpu *)(r%d)" % (i.dst, i.src)
        return mov(i)
    return kernel_mov


# --- loads, stores and atomics -----------------------------------------------------


class _MemoryDialect(NamedTuple):
    """How a dialect spells loads, stores and atomics."""

    address: Callable[[int, int], str]  # base register and offset, inside the parentheses
    narrow_reg: str                     # register letter for values narrower than 64 bits
    atomics: Callable[[int, str], Dict[int, str]]  # (bits, value reg letter) -> imm -> template


def _memory_formatter(dialect: _MemoryDialect, opcode: int) -> Formatter:
    cls, mode, size = opcode & 0x07, opcode & 0xE0, opcode & 0x18
    bits, address = SIZE_BITS[size], dialect.address
    v = "r" if size == BPF_DW else dialect.narrow_reg
    if cls == BPF_LDX:
        if mode == BPF_MEMSX:
            fmt = "r%%d = *(s%d *)(%%s)" % bits
        else:
            fmt = "%s%%d = *(u%d *)(%%s)" % (v, bits)
        return lambda i: fmt % (i.dst, address(i.src, i.off))
    if cls == BPF_ST:
        fmt = "*(u%d *)(%%s) = %%d" % bits
        return lambda i: fmt % (address(i.dst, i.off), i.imm)
    if mode == BPF_MEM:
        fmt = "*(u%d *)(%%s) = %s%%d" % (bits, v)
        return lambda i: fmt % (address(i.dst, i.off), i.src)
    templates = dialect.atomics(bits, v)

    def atomic(i: Instruction) -> str:
        # Fetching forms name the value register twice: as operand and result.
        if i.imm in ATOMIC_ALU_NAMES or i.imm == BPF_CMPXCHG:
            return templates[i.imm] % (address(i.dst, i.off), i.src)
        return templates[i.imm] % (i.src, address(i.dst, i.off), i.src)
    return atomic


def _llvm_address(base: int, off: int) -> str:
    if off < 0:
        return "r%d - %d" % (base, -off)
    return "r%d + %d" % (base, off)


def _llvm_atomics(bits: int, v: str) -> Dict[int, str]:
    suffix = "_64" if bits == 64 else "32_32"
    templates = {op: "lock *(u%d *)(%%s) %s %s%%d" % (bits, ALU_OPERATORS[op], v)
                 for op in ATOMIC_ALU_NAMES}
    templates.update({op | BPF_FETCH: "%s%%d = atomic_fetch_%s((u%d *)(%%s), %s%%d)"
                      % (v, name, bits, v) for op, name in ATOMIC_ALU_NAMES.items()})
    templates[BPF_XCHG] = "%s%%d = xchg%s(%%s, %s%%d)" % (v, suffix, v)
    templates[BPF_CMPXCHG] = "%s0 = cmpxchg%s(%%s, %s0, %s%%d)" % (v, suffix, v, v)
    return templates


def _kernel_address(base: int, off: int) -> str:
    return "r%d %+d" % (base, off)  # "*(%s *)(r%d %+d)"


def _kernel_atomics(bits: int, v: str) -> Dict[int, str]:
    """The BPF_STX | BPF_ATOMIC branch of print_bpf_insn()."""
    wide = "64" if bits == 64 else ""
    # "lock *(%s *)(r%d %+d) %s r%d"
    templates = {op: "lock *(u%d *)(%%s) %s r%%d" % (bits, ALU_OPERATORS[op])
                 for op in ATOMIC_ALU_NAMES}
    # "r%d = atomic%s_fetch_%s((%s *)(r%d %+d), r%d)"
    templates.update({op | BPF_FETCH: "r%%d = atomic%s_fetch_%s((u%d *)(%%s), r%%d)"
                      % (wide, name, bits) for op, name in ATOMIC_ALU_NAMES.items()})
    # "r%d = atomic%s_xchg((%s *)(r%d %+d), r%d)"
    templates[BPF_XCHG] = "r%%d = atomic%s_xchg((u%d *)(%%s), r%%d)" % (wide, bits)
    # "r0 = atomic%s_cmpxchg((%s *)(r%d %+d), r0, r%d)"
    templates[BPF_CMPXCHG] = "r0 = atomic%s_cmpxchg((u%d *)(%%s), r0, r%%d)" % (wide, bits)
    return templates


# llvm (--mcpu=v4, which enables alu32) names w registers for narrow values;
# the kernel names r registers for every width.
_LLVM_MEMORY = _MemoryDialect(_llvm_address, "w", _llvm_atomics)
_KERNEL_MEMORY = _MemoryDialect(_kernel_address, "r", _kernel_atomics)


# --- BPF_LD: packet loads and ld_imm64 ----------------------------------------------


def _llvm_imm64(i: Instruction) -> str:
    # llvm has no syntax for the pseudo sources beyond this, and prints only
    # the low 32 bits of their immediate, unsigned.
    if i.src:
        return "ld_pseudo\tr%d, %d, %d" % (i.dst, i.src, _u32(i.imm))
    return "r%d = %d ll" % (i.dst, i.imm)


def _kernel_imm64(i: Instruction) -> str:
    """print_bpf_insn() with bpftool's print_imm() callback (xlated_dumper.c)."""
    low, high = _u32(i.imm), _u32(i.imm >> 32)
    if i.src == isa.BPF_PSEUDO_MAP_FD:
        text = "map[id:%u]" % low
    elif i.src == isa.BPF_PSEUDO_MAP_VALUE:
        text = "map[id:%u][0]+%u" % (low, high)
    elif i.src == isa.BPF_PSEUDO_MAP_IDX_VALUE:
        text = "map[idx:%u]+%u" % (low, high)
    elif i.src == isa.BPF_PSEUDO_FUNC:
        text = "subprog[%+d]" % _s32(low)
    else:
        text = "0x%x" % _u64(i.imm)
    return "r%d = %s" % (i.dst, text)  # "(%02x) r%d = %s"


def _ld_formatter(imm64: Formatter, kernel: bool, opcode: int) -> Formatter:
    if opcode == LD_IMM64_OPCODE:
        return imm64
    bits = SIZE_BITS[opcode & 0x18]
    if opcode & 0xE0 == BPF_ABS:  # "(%02x) r0 = *(%s *)skb[%d]"
        fmt = "r0 = *(u%d *)skb[%%d]" % bits
        return lambda i: fmt % i.imm
    if kernel:  # "(%02x) r0 = *(%s *)skb[r%d + %d]"
        fmt = "r0 = *(u%d *)skb[r%%d + %%d]" % bits
        return lambda i: fmt % (i.src, i.imm)
    fmt = "r0 = *(u%d *)skb[r%%d]" % bits  # llvm drops the imm of an indirect load
    return lambda i: fmt % i.src


# --- jumps and calls ------------------------------------------------------------------


def _jump_prefix(opcode: int, kernel: bool) -> Formatter:
    """A jump's text up to its target: ``if r1 > 5 goto ``. The kernel prints a
    conditional jump's immediate as unsigned hex (``0x%x``), llvm as signed
    decimal; the kernel writes the target as ``pc%+d``, llvm as ``%+d``."""
    cls, op, source = opcode & 0x07, opcode & 0xF0, opcode & BPF_X
    pc = "pc" if kernel else ""
    if op == BPF_JA:
        text = ("goto " if cls == BPF_JMP else "gotol ") + pc
        return lambda i: text
    if op == BPF_JCOND:
        text = "may_goto " + pc
        return lambda i: text
    r = "w" if cls == BPF_JMP32 else "r"
    head = "if " + r + "%d " + JUMP_OPERATORS[op] + " "
    if source == BPF_X:
        fmt = head + r + "%d goto " + pc
        return lambda i: fmt % (i.dst, i.src)
    if kernel:
        fmt = head + "0x%x goto pc"
        return lambda i: fmt % (i.dst, _u32(i.imm))
    fmt = head + "%d goto "
    return lambda i: fmt % (i.dst, i.imm)


def _jump_formatter(kernel: bool, opcode: int) -> Formatter:
    prefix = _jump_prefix(opcode, kernel)
    if opcode == LONG_JUMP_OPCODE:
        return lambda i: "%s%+d" % (prefix(i), i.imm)
    return lambda i: "%s%+d" % (prefix(i), i.off)


def _kernel_call(i: Instruction) -> str:
    """``call pc%+d`` for bpf-to-bpf calls, else ``call %s#%d`` with the helper's
    name, ``kernel-function`` for a kfunc or ``unknown`` (__func_get_name)."""
    if i.src == isa.BPF_PSEUDO_CALL:
        return "call pc%+d" % i.imm
    if i.src == isa.BPF_PSEUDO_KFUNC_CALL:
        name = "kernel-function"
    else:
        name = helper_name(i.imm) or "unknown"
    return "call %s#%d" % (name, i.imm)


# --- the tables -----------------------------------------------------------------------


def _valid_opcodes() -> List[int]:
    """Every opcode byte that some valid instruction has (probing isa's
    validator with the field values that select variants)."""
    probes = [(src, off, imm) for src in (0, 1) for off in (0, 1)
              for imm in (0, 16) + isa.ATOMIC_OPS]
    return [opcode for opcode in range(256)
            if any(not isa.validity_problem(Instruction(opcode, 0, src, off, imm))
                   for src, off, imm in probes)]


VALID_OPCODES = tuple(_valid_opcodes())


def _build_table(memory: _MemoryDialect, imm64: Formatter, kernel: bool,
                 call: Formatter) -> Dict[int, Formatter]:
    """One formatter per valid opcode byte."""
    table: Dict[int, Formatter] = {}
    for opcode in VALID_OPCODES:
        cls = opcode & 0x07
        if cls in (BPF_ALU, BPF_ALU64):
            table[opcode] = _alu_formatter(opcode)
            if kernel and opcode == ADDR_SPACE_CAST_OPCODE:
                table[opcode] = _kernel_mov64(table[opcode])
        elif cls == BPF_LD:
            table[opcode] = _ld_formatter(imm64, kernel, opcode)
        elif cls in (BPF_LDX, BPF_ST, BPF_STX):
            table[opcode] = _memory_formatter(memory, opcode)
        elif opcode == CALL_OPCODE:
            table[opcode] = call
        elif opcode == EXIT_OPCODE:
            table[opcode] = lambda i: "exit"
        else:
            table[opcode] = _jump_formatter(kernel, opcode)
    return table


def _with_opcode(opcode: int, text: Formatter) -> Formatter:
    head = "(%02x) " % opcode  # every kernel line starts with the opcode byte
    return lambda i: head + text(i)


_LLVM = _build_table(_LLVM_MEMORY, _llvm_imm64, False,
                     lambda i: "call %d" % i.imm)
_KERNEL = {opcode: _with_opcode(opcode, text) for opcode, text in _build_table(
    _KERNEL_MEMORY, _kernel_imm64, True, _kernel_call).items()}
_LLVM_JUMP_PREFIX = {opcode: _jump_prefix(opcode, False) for opcode in JUMP_OPCODES}


# --- annotated ----------------------------------------------------------------------
# llvm text with names where llvm has numbers, and a comment where an instruction
# has implicit operands. pybpf.asm_text parses every form printed here.

PSEUDO_NAMES = {
    isa.BPF_PSEUDO_MAP_FD: "BPF_PSEUDO_MAP_FD", isa.BPF_PSEUDO_MAP_VALUE: "BPF_PSEUDO_MAP_VALUE",
    isa.BPF_PSEUDO_BTF_ID: "BPF_PSEUDO_BTF_ID", isa.BPF_PSEUDO_FUNC: "BPF_PSEUDO_FUNC",
    isa.BPF_PSEUDO_MAP_IDX: "BPF_PSEUDO_MAP_IDX",
    isa.BPF_PSEUDO_MAP_IDX_VALUE: "BPF_PSEUDO_MAP_IDX_VALUE",
}
_PSEUDO_MEANINGS = {  # fields: low and high 32 bits of imm, low as a signed offset
    isa.BPF_PSEUDO_MAP_FD: "the map with fd {low}",
    isa.BPF_PSEUDO_MAP_VALUE: "address in the value of the map with fd {low}, offset {high}",
    isa.BPF_PSEUDO_BTF_ID: "kernel variable with BTF id {low} (BTF object fd {high})",
    isa.BPF_PSEUDO_FUNC: "address of the function at pc{offset:+d}",
    isa.BPF_PSEUDO_MAP_IDX: "map number {low} of the fd_array",
    isa.BPF_PSEUDO_MAP_IDX_VALUE: "address in the value of map number {low}, offset {high}",
}
_ATOMIC_COMMENTS = {
    BPF_CMPXCHG: "store if the old value equals r0; r0 = the old value",
    BPF_XCHG: "store; the register gets the old value",
}
_ATOMIC_COMMENTS.update({op | BPF_FETCH: "the register gets the old value"
                         for op in ATOMIC_ALU_NAMES})
_FIXED_COMMENTS = {
    EXIT_OPCODE: "return r0",
    MAY_GOTO_OPCODE: "taken when the loop budget is used up",
}
_FIXED_COMMENTS.update({opcode: "legacy packet load into r0 (network to host byte order)"
                        for opcode in VALID_OPCODES
                        if opcode & 0x07 == BPF_LD and opcode != LD_IMM64_OPCODE})

LEGEND = (
    "# slot: instruction. rN is a 64-bit register, wN its low 32 bits; r0 holds results",
    "# and the return value, r1-r5 call arguments (clobbered by calls), r6-r9 survive",
    "# calls, r10 is the read-only frame pointer. An ld_imm64 (\"... ll\") fills two slots.",
)
COMMENT_COLUMN = 48  # where the "#" of a trailing comment goes
SLOT_FORMAT = "%4d: "


class _Context(NamedTuple):
    """What the annotated style knows about a whole program."""

    names: Mapping[int, str]        # slot -> label name of jump, call and function targets
    relocations: Mapping[int, "Relocation"]  # by logical index
    slot_count: int                 # 0 for a lone instruction


_NO_CONTEXT = _Context({}, {}, 0)


def _annotate(i: Instruction, index: int, slot: int, ctx: _Context) -> Tuple[str, str]:
    """(text, comment) of one instruction in the annotated style."""
    opcode = i.opcode
    comment = _FIXED_COMMENTS.get(opcode, "")
    if opcode in JUMP_OPCODES:
        name = ctx.names.get(jump_target(i, slot))
        if name is not None:
            return _LLVM_JUMP_PREFIX[opcode](i) + name, comment
        if ctx.slot_count:
            comment = "target is not an instruction of this program"
        return _LLVM[opcode](i), comment
    if opcode == CALL_OPCODE:
        return _annotate_call(i, slot, ctx)
    if opcode == LD_IMM64_OPCODE:
        return _annotate_ld_imm64(i, index, slot, ctx)
    if opcode & 0xE7 == BPF_STX | BPF_ATOMIC:
        comment = _ATOMIC_COMMENTS.get(i.imm, "")
    elif opcode == ADDR_SPACE_CAST_OPCODE and i.off == isa.BPF_ADDR_SPACE_CAST:
        comment = "pointer to address space %d from %d (arena)" % (_u32(i.imm) >> 16,
                                                                   i.imm & 0xFFFF)
    elif opcode & 0xE7 == BPF_LD | BPF_IND and i.imm:
        # llvm would drop the imm; keep it so the text says the whole truth.
        return "r0 = *(u%d *)skb[r%d + %d]" % (SIZE_BITS[opcode & 0x18], i.src, i.imm), comment
    return _LLVM[opcode](i), comment


def _annotate_call(i: Instruction, slot: int, ctx: _Context) -> Tuple[str, str]:
    if i.src == isa.BPF_PSEUDO_CALL:
        name = ctx.names.get(slot + 1 + i.imm)
        return "call " + (name or "pc%+d" % i.imm), "bpf-to-bpf call"
    if i.src == isa.BPF_PSEUDO_KFUNC_CALL:
        return "call kfunc %d" % i.imm, "kernel function (kfunc) with BTF id %d" % i.imm
    name = helper_name(i.imm)
    if name is None:
        return "call %d" % i.imm, "unknown helper"
    return "call " + name, "helper %d" % i.imm


def _annotate_ld_imm64(i: Instruction, index: int, slot: int,
                       ctx: _Context) -> Tuple[str, str]:
    reloc = ctx.relocations.get(index)
    if reloc is not None:
        if i.src == isa.BPF_PSEUDO_MAP_VALUE:
            return ("r%d = map[%s][0]+%d ll" % (i.dst, reloc.symbol, reloc.offset),
                    "address in the map's value, set at load time")
        return "r%d = map[%s] ll" % (i.dst, reloc.symbol), "the map, set at load time"
    if not i.src:
        return _llvm_imm64(i), ""
    if i.src == isa.BPF_PSEUDO_FUNC:
        name = ctx.names.get(slot + 1 + i.imm)
        if name is not None:
            return "r%d = subprog[%s] ll" % (i.dst, name), "address of a function (a callback)"
    low = _u32(i.imm)
    meaning = _PSEUDO_MEANINGS[i.src].format(low=low, high=_u32(i.imm >> 32), offset=_s32(low))
    return ("ld_pseudo r%d, %d, %#x" % (i.dst, i.src, _u64(i.imm)),
            "%s: %s" % (PSEUDO_NAMES[i.src], meaning))


def _with_comment(text: str, comment: str, column: int) -> str:
    if not comment:
        return text
    return "%-*s # %s" % (column - 1, text, comment)


# --- public API -----------------------------------------------------------------------


def _check(insn: Instruction, slot: int, style: str) -> None:
    """Raise DecodeError for an instruction ``style`` cannot print: an invalid
    one, or (outside the kernel style) the kernel-internal per-CPU move."""
    percpu = _is_percpu_move(insn)
    problem = isa.validity_problem(insn._replace(off=0) if percpu else insn)
    if percpu and not problem and style != "kernel":
        problem = "%s; only the kernel style prints it" % isa.validity_problem(insn)
    if problem:
        try:
            data = insn.encode()
        except ValueError:
            data = b""
        raise DecodeError(slot * isa.SLOT_SIZE, data, problem)


def _objdump_target(insn: Instruction, slot: int, section: str) -> str:
    """The `` <.text+0x18>`` llvm-objdump appends to a jump: the target's byte
    offset in the section, wrapping like its 64-bit arithmetic (``<.text>`` at 0)."""
    offset = _u64(jump_target(insn, slot) * isa.SLOT_SIZE)
    return " <%s+%#x>" % (section, offset) if offset else " <%s>" % section


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError("unknown style %r (expected one of: %s)" % (style, ", ".join(STYLES)))


def format_instruction(insn: Instruction, *, style: str = "llvm", slot: Optional[int] = None,
                       section: Optional[str] = None) -> str:
    """One instruction as text.

    With both ``slot`` (where the instruction sits) and ``section``, the llvm
    style appends llvm-objdump's jump-target annotation (``goto +1 <.text+0x18>``).
    A lone instruction in the annotated style has helper names and a comment
    but no labels; the kernel style starts with the opcode byte. An invalid
    instruction raises :class:`~pybpf.errors.DecodeError`.

    >>> format_instruction(isa.stx(4, isa.R10, -4, isa.R1))
    '*(u32 *)(r10 - 4) = w1'
    >>> format_instruction(isa.ldx(8, isa.R1, isa.R10, -8), style="kernel")
    '(79) r1 = *(u64 *)(r10 -8)'
    """
    _check_style(style)
    _check(insn, slot or 0, style)
    if style == "kernel":
        return _KERNEL[insn.opcode](insn)
    if style == "annotated":
        return _with_comment(*_annotate(insn, 0, slot or 0, _NO_CONTEXT),
                             column=COMMENT_COLUMN - len(SLOT_FORMAT % 0))
    text = _LLVM[insn.opcode](insn)
    if section is not None and slot is not None and insn.opcode in JUMP_OPCODES:
        text += _objdump_target(insn, slot, section)
    return text


ProgramLike = Union["AssembledProgram", Sequence[Instruction], bytes]


def disassemble(program: ProgramLike, *, style: str = "llvm", source: bool = False,
                section: Optional[str] = None, legend: bool = True) -> str:
    """A whole program as text, one instruction per line.

    ``program`` is an ``asm.AssembledProgram``, a sequence of instructions, or
    bytecode (decoded by :func:`isa.decode`, which raises
    :class:`~pybpf.errors.DecodeError` naming the offset and bytes of a bad slot).

    * ``"llvm"``: llvm-objdump's text; with ``section=".text"`` jumps carry its
      `` <.text+0x..>`` target annotation.
    * ``"annotated"``: slot numbers, labels (invented as ``L<slot>`` where the
      program named no target), helper and map names, comments, and a short
      legend unless ``legend=False``.
    * ``"kernel"``: ``bpftool prog dump xlated`` lines, ``   0: (b7) r0 = 1``.

    ``source=True`` prints the source line that produced the next instructions
    above the first of them, as ``; file:line  text`` (programs from
    :mod:`pybpf.asm` carry a line table; bare instructions have none).
    """
    _check_style(style)
    instructions, lines, labels, relocations, functions = _unpack(program, style)
    slots = isa.slot_starts(instructions)   # and the slot after the last
    out: List[str] = []
    show_source = _source_printer(lines, out) if source and lines else None
    if style == "annotated":
        ctx, labels, function_names = _annotated_context(instructions, slots, labels,
                                                         relocations, functions)
        _annotated_lines(instructions, slots, ctx, labels, function_names, show_source,
                         legend, out)
        return "\n".join(out)
    if style == "kernel":
        def line(index: int, insn: Instruction) -> str:
            return "% 4d: %s" % (slots[index], _KERNEL[insn.opcode](insn))  # "% 4d: "
    else:
        def line(index: int, insn: Instruction) -> str:
            text = _LLVM[insn.opcode](insn)
            if section is not None and insn.opcode in JUMP_OPCODES:
                text += _objdump_target(insn, slots[index], section)
            return text
    for index, insn in enumerate(instructions):
        if show_source is not None:
            show_source(index)
        out.append(line(index, insn))
    return "\n".join(out)


def _unpack(program: ProgramLike, style: str):
    """(instructions, line table, labels by index, relocations by index, function names)."""
    if isinstance(program, (bytes, bytearray, memoryview)):
        return isa.decode(bytes(program)), None, {}, {}, ()
    if hasattr(program, "instructions"):  # an asm.AssembledProgram, validated when built
        return (program.instructions, program.lines, program.labels_by_index(),
                program.map_symbols(), program.functions)
    instructions = list(program)
    for insn, slot in zip(instructions, isa.slot_starts(instructions)):
        _check(insn, slot, style)
    return instructions, None, {}, {}, ()


def display_path(filename: str) -> str:
    """A source file's name, relative to the working directory when inside it."""
    cwd = os.getcwd() + os.sep
    return filename[len(cwd):] if filename.startswith(cwd) else filename


def _source_printer(lines: Sequence, out: List[str]) -> Callable[[int], None]:
    """A function that appends ``; file:line  text`` when instruction ``index``
    comes from a different source line than the instruction before it."""
    previous = [None]

    def show(index: int) -> None:
        location = lines[index]
        if location is None or location == previous[0]:
            return
        previous[0] = location
        text = linecache.getline(location.filename, location.line).strip()
        out.append(("; %s:%d  %s" % (display_path(location.filename), location.line, text))
                   .rstrip())
    return show


def _target_slots(instructions: Sequence[Instruction],
                  slots: Sequence[int]) -> Tuple[List[int], List[int]]:
    """Slots that jumps point at, and slots where functions start (targets of
    bpf-to-bpf calls and of function addresses)."""
    jumps, functions = [], []
    for insn, slot in zip(instructions, slots):
        opcode = insn.opcode
        if opcode in JUMP_OPCODES:
            jumps.append(jump_target(insn, slot))
        elif opcode == CALL_OPCODE and insn.src == isa.BPF_PSEUDO_CALL:
            functions.append(slot + 1 + insn.imm)
        elif opcode == LD_IMM64_OPCODE and insn.src == isa.BPF_PSEUDO_FUNC:
            functions.append(slot + 1 + insn.imm)
    return jumps, functions


def _annotated_context(instructions, slots, labels, relocations, functions):
    """The program's labels plus invented ``L<slot>`` ones for unnamed targets,
    the names that start functions, and the context that turns target slots
    into label names. ``slots`` ends with the slot after the last instruction,
    which a label may name."""
    index_of_slot = {slot: index for index, slot in enumerate(slots)}
    labels = {index: list(names) for index, names in labels.items()}
    taken = {name for names in labels.values() for name in names}
    jumps, calls = _target_slots(instructions, slots)
    for target in sorted(set(jumps + calls)):
        index = index_of_slot.get(target)
        if index is None or index in labels:
            continue
        name = "L%d" % target
        while name in taken:
            name += "_"
        labels[index] = [name]
    names = {slots[index]: label_names[0] for index, label_names in labels.items()
             if index <= len(instructions)}
    function_names = set(functions)
    function_names.update(names[slot] for slot in calls if slot in names)
    return _Context(names, relocations, slots[-1]), labels, function_names


def _annotated_lines(instructions, slots, ctx: _Context, labels, functions, show_source,
                     legend: bool, out: List[str]) -> None:
    if legend:
        out.extend(LEGEND)
    for index in range(len(instructions) + 1):
        for name in labels.get(index, ()):
            if name in functions and out:
                out.append("")  # a blank line before each bpf-to-bpf function
            out.append(name + ":")
        if index == len(instructions):
            break
        if show_source is not None:
            show_source(index)
        text, comment = _annotate(instructions[index], index, slots[index], ctx)
        out.append(_with_comment(SLOT_FORMAT % slots[index] + text, comment, COMMENT_COLUMN))
