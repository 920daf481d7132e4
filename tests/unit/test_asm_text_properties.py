"""Disassembly and assembly text invert each other.

llvm's syntax cannot say everything an instruction holds, so the llvm-style
round trip keeps what llvm keeps (:func:`as_llvm_keeps_it`); the annotated
style loses nothing, labels and map references included.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf import asm_text, disasm, isa

from strategies import instructions, programs


def as_llvm_keeps_it(insn: isa.Instruction) -> isa.Instruction:
    """What survives llvm's text: every call prints as ``call imm`` (so reads
    back as a helper call), ``ld_pseudo`` prints the low 32 bits of imm,
    unsigned, and ``skb[rN]`` drops the imm of an indirect packet load."""
    if insn.opcode == isa.BPF_JMP | isa.BPF_CALL:
        return insn._replace(src=isa.BPF_HELPER_CALL)
    if insn.is_ld_imm64 and insn.src:
        return insn._replace(imm=insn.imm & 0xFFFFFFFF)
    if insn.opcode & 0xE7 == isa.BPF_LD | isa.BPF_IND:
        return insn._replace(imm=0)
    return insn


@given(st.lists(instructions(), max_size=30))
def test_llvm_text_reads_back_to_what_llvm_keeps(insns):
    text = disasm.disassemble(insns, style="llvm")
    assert list(asm_text.parse(text).instructions) == [as_llvm_keeps_it(i) for i in insns]


@given(st.lists(instructions(), max_size=30))
def test_annotated_text_of_bare_instructions_reads_back_exactly(insns):
    text = disasm.disassemble(insns, style="annotated")
    assert list(asm_text.parse(text).instructions) == insns


@settings(max_examples=200)
@given(programs(), st.booleans())
def test_annotated_text_of_programs_reads_back_exactly(program, source):
    text = disasm.disassemble(program, style="annotated", source=source)
    parsed = asm_text.parse(text)
    assert parsed.instructions == program.instructions
    assert parsed.relocations == program.relocations
    # labels are printed only where a jump lands (and invented L<slot> ones
    # name unnamed targets); each printed one is where the program has it
    for name, index in parsed.labels.items():
        assert program.labels.get(name, index) == index


@given(instructions())
def test_one_annotated_instruction_reads_back(insn):
    text = disasm.format_instruction(insn, style="annotated")
    assert asm_text.parse(text).instructions == (insn,)
