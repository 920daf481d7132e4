"""Shared by the DSL unit tests: build a small program, and expect a build
error at an exact line (marked in the test source with ``# error: <tag>``)."""

import contextlib
import inspect
import linecache

import pytest

from pybpf import isa
from pybpf.dsl import ProgramBuildError, raw_tracepoint


def build(body, cpu=3):
    """The instructions of a raw tracepoint program whose body is ``body(p, ctx)``."""
    @raw_tracepoint("sys_enter", cpu=cpu)
    def prog(p, ctx):
        body(p, ctx)
    return prog.build()


def opcodes(program):
    return [insn.opcode for insn in program.instructions]


def has(program, opcode, **fields):
    """Whether some instruction has ``opcode`` and the given field values."""
    return any(insn.opcode == opcode and all(getattr(insn, k) == v for k, v in fields.items())
               for insn in program.instructions)


def line_of(tag, source_file):
    for number in range(1, 100000):
        text = linecache.getline(source_file, number)
        if not text:
            break
        if text.rstrip().endswith("# error: " + tag):
            return number
    raise AssertionError("no line tagged %r in %s" % (tag, source_file))


@contextlib.contextmanager
def build_error(tag, match=None):
    """Expect a ProgramBuildError located at the line tagged ``tag`` in the
    calling test file."""
    source_file = inspect.stack()[2].filename
    with pytest.raises(ProgramBuildError, match=match) as caught:
        yield caught
    where = caught.value.location
    assert where is not None, "no location in %s" % caught.value
    assert (where.filename, where.line) == (source_file, line_of(tag, source_file)), \
        "error at %s, expected the line tagged %r: %s" % (where, tag, caught.value)
    assert str(caught.value).startswith("%s:%d: " % (source_file, where.line))


ALU64 = isa.BPF_ALU64
ALU32 = isa.BPF_ALU
JMP = isa.BPF_JMP
JMP32 = isa.BPF_JMP32
