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
once at import in :mod:`pybpf.disasm_tables`; this module adds what needs the
whole program (labels, map names, source lines) and the annotated style.

>>> print(disassemble([isa.mov(isa.R0, 0), isa.exit_()]))
r0 = 0
exit
"""

import linecache
import os
from typing import (TYPE_CHECKING, Callable, List, Mapping, NamedTuple, Optional, Sequence, Tuple,
                    Union)

from . import isa
from .disasm_tables import (ADDR_SPACE_CAST_OPCODE, ATOMIC_ALU_NAMES, CALL_OPCODE, EXIT_OPCODE,
                            JUMP_OPCODES, KERNEL_FORMATTERS, LLVM_FORMATTERS, LLVM_JUMP_PREFIX,
                            MAY_GOTO_OPCODE, SIZE_BITS, VALID_OPCODES, helper_name,
                            is_percpu_move, jump_target, llvm_imm64, s32, u32, u64)
from .errors import DecodeError
from .isa import (BPF_ATOMIC, BPF_CMPXCHG, BPF_FETCH, BPF_IND, BPF_LD, BPF_STX, BPF_XCHG,
                  LD_IMM64_OPCODE, Instruction)

if TYPE_CHECKING:  # for annotations only: disasm depends on isa, not on asm
    from .asm import AssembledProgram, Relocation

STYLES = ("llvm", "annotated", "kernel")

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
            return LLVM_JUMP_PREFIX[opcode](i) + name, comment
        if ctx.slot_count:
            comment = "target is not an instruction of this program"
        return LLVM_FORMATTERS[opcode](i), comment
    if opcode == CALL_OPCODE:
        return _annotate_call(i, slot, ctx)
    if opcode == LD_IMM64_OPCODE:
        return _annotate_ld_imm64(i, index, slot, ctx)
    if opcode & 0xE7 == BPF_STX | BPF_ATOMIC:
        comment = _ATOMIC_COMMENTS.get(i.imm, "")
    elif opcode == ADDR_SPACE_CAST_OPCODE and i.off == isa.BPF_ADDR_SPACE_CAST:
        comment = "pointer to address space %d from %d (arena)" % (u32(i.imm) >> 16,
                                                                   i.imm & 0xFFFF)
    elif opcode & 0xE7 == BPF_LD | BPF_IND and i.imm:
        # llvm would drop the imm; keep it so the text says the whole truth.
        return "r0 = *(u%d *)skb[r%d + %d]" % (SIZE_BITS[opcode & 0x18], i.src, i.imm), comment
    return LLVM_FORMATTERS[opcode](i), comment


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
        return llvm_imm64(i), ""
    if i.src == isa.BPF_PSEUDO_FUNC:
        name = ctx.names.get(slot + 1 + i.imm)
        if name is not None:
            return "r%d = subprog[%s] ll" % (i.dst, name), "address of a function (a callback)"
    low = u32(i.imm)
    meaning = _PSEUDO_MEANINGS[i.src].format(low=low, high=u32(i.imm >> 32), offset=s32(low))
    return ("ld_pseudo r%d, %d, %#x" % (i.dst, i.src, u64(i.imm)),
            "%s: %s" % (PSEUDO_NAMES[i.src], meaning))


def _with_comment(text: str, comment: str, column: int) -> str:
    if not comment:
        return text
    return "%-*s # %s" % (column - 1, text, comment)


# --- public API -----------------------------------------------------------------------


def _check(insn: Instruction, slot: int, style: str) -> None:
    """Raise DecodeError for an instruction ``style`` cannot print: an invalid
    one, or (outside the kernel style) the kernel-internal per-CPU move."""
    percpu = is_percpu_move(insn)
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
    offset = u64(jump_target(insn, slot) * isa.SLOT_SIZE)
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
        return KERNEL_FORMATTERS[insn.opcode](insn)
    if style == "annotated":
        return _with_comment(*_annotate(insn, 0, slot or 0, _NO_CONTEXT),
                             column=COMMENT_COLUMN - len(SLOT_FORMAT % 0))
    text = LLVM_FORMATTERS[insn.opcode](insn)
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
            return "% 4d: %s" % (slots[index], KERNEL_FORMATTERS[insn.opcode](insn))  # "% 4d: "
    else:
        def line(index: int, insn: Instruction) -> str:
            text = LLVM_FORMATTERS[insn.opcode](insn)
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
    """The labels to print, the names that start functions, and the context
    that turns target slots into label names. A label is printed only where
    a jump or call lands or a function starts, and only the one name the
    jumps use there: the program's own labels (``else_3``), or an invented
    ``L<slot>`` for an unnamed target. ``slots`` ends with the slot after the
    last instruction, which a label may name."""
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
    landing = set(jumps + calls)
    shown = {}
    for index, label_names in labels.items():
        if index > len(instructions):
            continue
        kept = [name for position, name in enumerate(label_names)
                if (position == 0 and slots[index] in landing) or name in function_names]
        if kept:
            shown[index] = kept
    return _Context(names, relocations, slots[-1]), shown, function_names


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
