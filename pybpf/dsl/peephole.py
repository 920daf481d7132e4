"""A peephole pass over one function's instructions, before assembly.

Structured control flow leaves two patterns clang would not emit:

* ``if c goto A; goto B; A:`` (an ``if`` whose body is only ``p.break_()``
  or a ``goto``): becomes ``if !c goto B; A:``;
* ``goto A; A:`` (an ``else`` that ended where the chain ends): removed.

The pass rewrites the list of :class:`pybpf.asm.Instruction` the function
emitted: jumps still refer to labels, which name instructions, so a rule
only changes references and labels; the assembler computes every offset.
"""

from typing import List

from .. import isa
from ..asm import GOTO_OPCODE, REF_JUMP, Instruction

# not (a OP b) as a jump operation
_NEGATED = {isa.BPF_JEQ: isa.BPF_JNE, isa.BPF_JNE: isa.BPF_JEQ,
            isa.BPF_JGT: isa.BPF_JLE, isa.BPF_JLE: isa.BPF_JGT,
            isa.BPF_JGE: isa.BPF_JLT, isa.BPF_JLT: isa.BPF_JGE,
            isa.BPF_JSGT: isa.BPF_JSLE, isa.BPF_JSLE: isa.BPF_JSGT,
            isa.BPF_JSGE: isa.BPF_JSLT, isa.BPF_JSLT: isa.BPF_JSGE}
_OP_BITS = 0xF0


def optimize(instructions: List[Instruction]) -> List[Instruction]:
    """Apply the rules (in place) until none matches; returns the list."""
    changed = True
    while changed:
        changed = _invert_over_goto(instructions) or _drop_goto_next(instructions)
    return instructions


def _is_goto(entry: Instruction) -> bool:
    return entry.kind == REF_JUMP and entry.insn.opcode == GOTO_OPCODE


def _invert_over_goto(instructions: List[Instruction]) -> bool:
    for i in range(len(instructions) - 2):
        jump, goto, after = instructions[i], instructions[i + 1], instructions[i + 2]
        if jump.kind == REF_JUMP and (jump.insn.opcode & _OP_BITS) in _NEGATED \
                and _is_goto(goto) and not goto.labels and jump.reference in after.labels:
            opcode = jump.insn.opcode
            negated = opcode & ~_OP_BITS | _NEGATED[opcode & _OP_BITS]
            instructions[i] = jump._replace(insn=jump.insn._replace(opcode=negated),
                                            reference=goto.reference)
            del instructions[i + 1]
            return True
    return False


def _drop_goto_next(instructions: List[Instruction]) -> bool:
    for i in range(len(instructions) - 1):
        goto, after = instructions[i], instructions[i + 1]
        if _is_goto(goto) and goto.reference in after.labels:
            instructions[i + 1] = after._replace(labels=goto.labels + after.labels)
            del instructions[i]
            return True
    return False
