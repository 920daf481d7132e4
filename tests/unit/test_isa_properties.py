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
