"""Properties of the instruction encoding, over every kind of instruction."""

from hypothesis import given
from hypothesis import strategies as st

from pybpf import isa

from strategies import instructions


@given(instructions())
def test_generated_instructions_are_valid(insn):
    assert isa.validity_problem(insn) == ""


@given(st.lists(instructions(), max_size=20))
def test_decode_inverts_encode(insns):
    data = isa.encode(insns)
    assert len(data) == 8 * sum(insn.width for insn in insns)
    assert isa.decode(data) == insns


@given(instructions())
def test_encode_inverts_decode(insn):
    data = insn.encode()
    assert isa.encode(isa.decode(data)) == data


def test_inline_decode_rules_agree_with_validity_problem():
    """decode() checks common opcodes inline; it must accept and reject exactly
    what validity_problem does, for every field value that matters."""
    for opcode, (src_zero, off_zero, imm_zero) in isa._SIMPLE_RULES.items():
        for dst in (0, 10, 11):
            for src in (0, 3, 11):
                for off in (0, -1, 7):
                    for imm in (0, 1, -5):
                        insn = isa.Instruction(opcode, dst, src, off, imm)
                        inline_ok = not ((src_zero and src) or (off_zero and off)
                                         or (imm_zero and imm) or dst > 10 or src > 10)
                        assert inline_ok == (isa.validity_problem(insn) == ""), insn
