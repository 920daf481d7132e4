"""pybpf.asm's one instruction list: metadata on each instruction, the
peephole pass that rewrites it, and programs rebuilt from plain data."""

import sys

import pytest

from pybpf import asm, isa
from pybpf.asm import Instruction
from pybpf.dsl import peephole
from pybpf.errors import AssemblyError, SourceLocation
from pybpf.isa import R0, R1


def _program() -> asm.AssembledProgram:
    a = asm.Assembler("listing")
    a.label("start", SourceLocation("p.py", 1))
    a.ld_map(R1, "events", location=SourceLocation("p.py", 2))
    a.jump(isa.BPF_JEQ, R1, 0, "out", location=SourceLocation("p.py", 3))
    a.ld_map(R1, "config", value_offset=8, location=SourceLocation("p.py", 4))
    a.call_function("helper", location=SourceLocation("p.py", 5))
    a.label("out", SourceLocation("p.py", 6))
    a.emit(isa.exit_(), SourceLocation("p.py", 6))
    a.function("helper", SourceLocation("p.py", 8))
    a.ld_function(R1, "start", location=SourceLocation("p.py", 9))
    a.goto("end", location=SourceLocation("p.py", 10))
    a.label("end", SourceLocation("p.py", 11))
    return a.assemble()


def test_each_instruction_carries_its_labels_reference_and_source():
    listing = _program().listing
    assert listing[0].labels == ("start",)
    assert (listing[0].reference, listing[0].kind) == ("events", asm.RELOC_MAP_FD)
    assert (listing[1].reference, listing[1].kind, listing[1].insn.off) == ("out", asm.REF_JUMP, 3)
    assert (listing[2].reference, listing[2].offset) == ("config", 8)
    assert listing[4].labels == ("out",) and listing[5].labels == ("helper",)
    assert listing[4].location == SourceLocation("p.py", 6)


def test_tables_are_views_of_the_list():
    program = _program()
    assert program.labels == {"start": 0, "out": 4, "helper": 5, "end": 7}
    assert program.end_labels == ("end",)
    assert program.relocations == (asm.Relocation(0, asm.RELOC_MAP_FD, "events"),
                                   asm.Relocation(2, asm.RELOC_MAP_VALUE, "config", 8))
    assert program.functions == ("helper",)
    assert program.lines == tuple(entry.location for entry in program.listing)
    assert program.instructions == tuple(entry.insn for entry in program.listing)


def test_a_program_is_rebuilt_from_plain_data():
    program = _program()
    again = asm.AssembledProgram(program.instructions, program.relocations, program.labels,
                                 program.lines, program.functions, program.name)
    assert again.name == "listing"
    for field in ("instructions", "relocations", "labels", "lines", "functions", "end_labels"):
        assert getattr(again, field) == getattr(program, field), field
    # jumps and calls are resolved: the tables keep labels and map references
    assert [(e.labels, e.location) for e in again.listing] == \
        [(e.labels, e.location) for e in program.listing]
    assert again.bytecode({"events": 3, "config": 4}) == program.bytecode({"events": 3,
                                                                           "config": 4})


def test_unknown_reference_names_the_line_that_made_it():
    a = asm.Assembler()
    a.goto("nowhere", location=SourceLocation("p.py", 3))
    with pytest.raises(AssemblyError) as caught:
        a.assemble()
    assert "unknown label 'nowhere'" in str(caught.value)
    assert caught.value.location == SourceLocation("p.py", 3)


def test_a_label_on_an_appended_instruction_is_checked_for_duplicates():
    a = asm.Assembler()
    a.label("here")
    with pytest.raises(AssemblyError, match="defined twice"):
        a.append(Instruction(isa.exit_(), labels=("here",)))


def test_emit_records_the_users_line():
    a = asm.Assembler()
    line = sys._getframe().f_lineno + 1
    a.emit(isa.exit_())
    assert a.assemble().lines[0] == SourceLocation(__file__, line)


def test_peephole_inverts_a_jump_over_a_goto():
    jump = asm.jump(isa.BPF_JGT, R1, 5, "body")
    body = Instruction(isa.mov(R0, 1), labels=("body",))
    done = Instruction(isa.exit_(), labels=("done",))
    out = peephole.optimize([jump, asm.goto("done"), body, done])
    assert out == [jump._replace(insn=isa.jump(isa.BPF_JLE, R1, 5, 0), reference="done"),
                   body, done]


def test_peephole_keeps_a_goto_that_something_jumps_to():
    jump = asm.jump(isa.BPF_JGT, R1, 5, "body")
    goto = asm.goto("done")._replace(labels=("else",))
    stream = [jump, goto, Instruction(isa.mov(R0, 1), labels=("body",)),
              Instruction(isa.exit_(), labels=("done",))]
    assert peephole.optimize(list(stream)) == stream


def test_peephole_drops_a_goto_to_the_next_instruction_keeping_its_labels():
    goto = asm.goto("next")._replace(labels=("else",))
    after = Instruction(isa.exit_(), labels=("next",))
    assert peephole.optimize([goto, after]) == [after._replace(labels=("else", "next"))]
