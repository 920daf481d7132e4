"""Golden disassembly: each program of ``golden_programs.py`` against the
text stored in ``golden/<name>.txt``. A change to code generation shows up
here as a diff to review; when it is intended, regenerate with

    PYBPF_UPDATE_GOLDEN=1 python3 -m pytest tests/unit/test_dsl_golden.py

and commit the new files with the change.
"""

import os

import pytest

import golden
import golden_programs
from pybpf import disasm
from pybpf.dsl import ProgramDecl

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(HERE, "golden")

PROGRAMS = [value for value in vars(golden_programs).values() if isinstance(value, ProgramDecl)]


def listing(program: ProgramDecl) -> str:
    code = program.build()
    text = disasm.disassemble(code, style="annotated", source=True, legend=False)
    return "%s: %d instructions, %d slots\n%s\n" % (program.name, len(code), code.slot_count,
                                                   text)


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_golden_disassembly(program, monkeypatch):
    monkeypatch.chdir(ROOT)   # source paths print relative to the repository
    actual = listing(program)
    golden.matches_golden(os.path.join(GOLDEN, program.name + ".txt"), actual)
