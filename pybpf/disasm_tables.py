"""The llvm and kernel dialects of eBPF assembly: one formatter per opcode byte.

:mod:`pybpf.disasm` prints programs with these tables and :mod:`pybpf.asm_text`
reads the operator spellings backwards, so that what one prints the other
parses. Built once at import; each formatter takes an
:class:`~pybpf.isa.Instruction` and returns its text without the target
annotations and comments that :mod:`pybpf.disasm` adds.
"""

from typing import Callable, Dict, List, NamedTuple, Optional

from . import helper_defs, isa
from .isa import (BPF_ABS, BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_B,
                  BPF_CALL, BPF_CMPXCHG, BPF_DIV, BPF_DW, BPF_END, BPF_EXIT, BPF_FETCH, BPF_H,
                  BPF_JA, BPF_JCOND, BPF_JMP, BPF_JMP32, BPF_K, BPF_LD, BPF_LDX,
                  BPF_LSH, BPF_MEM, BPF_MEMSX, BPF_MOD, BPF_MOV, BPF_MUL, BPF_NEG, BPF_OR,
                  BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TO_BE, BPF_W, BPF_X, BPF_XCHG,
                  BPF_XOR, LD_IMM64_OPCODE, Instruction)

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


def u32(value: int) -> int:
    """``value`` as the kernel prints an unsigned 32-bit field."""
    return value & 0xFFFFFFFF


def u64(value: int) -> int:
    """``value`` as the kernel prints an unsigned 64-bit field."""
    return value & 0xFFFFFFFFFFFFFFFF


def s32(value: int) -> int:
    """The low 32 bits of ``value`` read as signed, as the kernel prints them."""
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
                i.dst, i.src, u32(i.imm) >> 16, i.imm & 0xFFFF)
        return movsx % (i.dst, i.off, i.src)
    return mov


def is_percpu_move(insn: Instruction) -> bool:
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


def llvm_imm64(i: Instruction) -> str:
    # llvm has no syntax for the pseudo sources beyond this, and prints only
    # the low 32 bits of their immediate, unsigned.
    """An ld_imm64 in llvm-objdump's syntax (``ld_pseudo`` for pseudo sources)."""
    if i.src:
        return "ld_pseudo\tr%d, %d, %d" % (i.dst, i.src, u32(i.imm))
    return "r%d = %d ll" % (i.dst, i.imm)


def _kernel_imm64(i: Instruction) -> str:
    """print_bpf_insn() with bpftool's print_imm() callback (xlated_dumper.c)."""
    low, high = u32(i.imm), u32(i.imm >> 32)
    if i.src == isa.BPF_PSEUDO_MAP_FD:
        text = "map[id:%u]" % low
    elif i.src == isa.BPF_PSEUDO_MAP_VALUE:
        text = "map[id:%u][0]+%u" % (low, high)
    elif i.src == isa.BPF_PSEUDO_MAP_IDX_VALUE:
        text = "map[idx:%u]+%u" % (low, high)
    elif i.src == isa.BPF_PSEUDO_FUNC:
        text = "subprog[%+d]" % s32(low)
    else:
        text = "0x%x" % u64(i.imm)
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
        return lambda i: fmt % (i.dst, u32(i.imm))
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


LLVM_FORMATTERS = _build_table(_LLVM_MEMORY, llvm_imm64, False,
                     lambda i: "call %d" % i.imm)
KERNEL_FORMATTERS = {opcode: _with_opcode(opcode, text) for opcode, text in _build_table(
    _KERNEL_MEMORY, _kernel_imm64, True, _kernel_call).items()}
LLVM_JUMP_PREFIX = {opcode: _jump_prefix(opcode, False) for opcode in JUMP_OPCODES}
