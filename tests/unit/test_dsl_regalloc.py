"""Register allocation: values that live across calls go to r6-r9, then to
the stack; dead values cost nothing; copies coalesce; every read is of a
register that holds a value (checked by a small data-flow walk)."""

import pytest

from pybpf import isa
from pybpf.dsl import HashMap, ProgramBuildError, s64, subprogram, u32, u64

from dsl_helpers import build, has

lookups = HashMap(key=u32, value=u64, max_entries=8)


def registers_read(insn):
    """Registers an instruction reads (r10 excluded)."""
    cls, op = insn.cls, insn.opcode & 0xF0
    source = insn.opcode & isa.BPF_X
    read = set()
    if insn.opcode == isa.BPF_JMP | isa.BPF_CALL:
        return set()   # arguments: checked by the caller
    if insn.opcode == isa.BPF_JMP | isa.BPF_EXIT:
        return {0}
    if cls in (isa.BPF_ALU, isa.BPF_ALU64):
        if op != isa.BPF_MOV:
            read.add(insn.dst)
        if source:
            read.add(insn.src)
    elif cls == isa.BPF_LDX:
        read.add(insn.src)
    elif cls == isa.BPF_ST:
        read.add(insn.dst)
    elif cls == isa.BPF_STX:
        read |= {insn.dst, insn.src}
    elif cls in (isa.BPF_JMP, isa.BPF_JMP32) and op not in (isa.BPF_JA,):
        read.add(insn.dst)
        if source:
            read.add(insn.src)
    return read - {10}


def registers_written(insn):
    cls = insn.cls
    if cls in (isa.BPF_ALU, isa.BPF_ALU64, isa.BPF_LDX) or insn.is_ld_imm64:
        return {insn.dst}
    return set()


def check_straight_line(program, argument_counts, start=0, arguments=1):
    """Every register read holds a value: r1..r<arguments> at entry (at
    instruction ``start``), r0 after a call, r1..rN before the N-argument
    calls listed in order."""
    defined = set(range(1, arguments + 1))
    calls = iter(argument_counts)
    for insn in program.instructions[start:]:
        if insn.opcode == isa.BPF_JMP | isa.BPF_CALL:
            count = next(calls)
            assert set(range(1, count + 1)) <= defined, "call arguments not all set"
            defined = (defined - {0, 1, 2, 3, 4, 5}) | {0}
            continue
        assert registers_read(insn) <= defined, "%r reads an undefined register" % (insn,)
        defined |= registers_written(insn)


def test_values_live_across_calls_use_callee_saved_registers_then_the_stack():
    def body(p, ctx):
        values = [p.helpers.ktime_get_ns() for _ in range(6)]   # each lives past the others
        total = p.var(u64, 0)
        for value in values:
            total += value
        slot = p.stack(u64)
        slot[0] = total
    program = build(body)
    check_straight_line(program, [0] * 6)
    used = {insn.dst for insn in program.instructions if insn.cls in (isa.BPF_ALU64,)}
    assert {6, 7, 8, 9} <= used
    spills = [insn for insn in program.instructions
              if insn.opcode == isa.BPF_STX | isa.BPF_MEM | isa.BPF_DW and insn.dst == 10]
    reloads = [insn for insn in program.instructions
               if insn.opcode == isa.BPF_LDX | isa.BPF_MEM | isa.BPF_DW and insn.src == 10]
    assert spills and reloads   # the fifth value waits on the stack


def test_argument_shuffles_are_correct():
    def body(p, ctx):
        a = p.helpers.ktime_get_ns()
        b = p.helpers.ktime_get_ns()
        buf = p.stack(u64[4])
        p.helpers.probe_read_kernel(buf, u32(b), a)       # b before a: a swap-like shuffle
        p.helpers.probe_read_kernel(buf, u32(a), b)
    program = build(body)
    check_straight_line(program, [0, 0, 3, 3])


def test_a_value_used_after_a_call_is_not_in_r0_to_r5():
    def body(p, ctx):
        pid = u32(p.helpers.get_current_pid_tgid() >> 32)
        p.helpers.ktime_get_ns()
        lookups.update(pid, u64(1))
    program = build(body)
    check_straight_line(program, [0, 0, 4])
    shift = next(i for i in program.instructions if i.opcode == isa.BPF_ALU64 | isa.BPF_RSH)
    assert shift.dst >= 6


def test_unused_values_are_not_computed():
    def body(p, ctx):
        unused = ctx.args[0] * 3 + 1
        assert unused << 2 is not None   # computed in Python, never emitted
    program = build(body)
    assert [i.opcode for i in program.instructions] == [
        isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_K, isa.BPF_JMP | isa.BPF_EXIT]


def test_copies_coalesce():
    def body(p, ctx):
        x = p.var(u64, ctx.args[0] + 5)
        x += 1
        p.return_(x)
    program = build(body)
    assert len(program) == 4   # load, add 5, add 1, exit: all in r0
    assert all(i.dst == 0 for i in program.instructions[:3])


def test_the_body_must_be_deterministic():
    runs = []

    def body(p, ctx):
        runs.append(1)
        for _ in range(len(runs)):
            p.helpers.ktime_get_ns()
    with pytest.raises(ProgramBuildError, match="did not do the same thing"):
        build(body)


def test_key_copies_on_the_stack_are_reused():
    def body(p, ctx):
        key = u32(ctx.args[0])
        found = lookups.lookup(key)
        with p.if_(found.is_null):
            lookups.update(key, u64(1))
    program = build(body)
    stores = [i for i in program.instructions
              if i.opcode == isa.BPF_STX | isa.BPF_MEM | isa.BPF_W and i.dst == 10]
    assert len(stores) == 1
    assert has(program, isa.BPF_ST | isa.BPF_MEM | isa.BPF_DW, imm=1)


@subprogram
def crossed(p, a: u64, b: u64) -> s64:
    buf = p.stack(u64[2])
    p.helpers.probe_read_kernel(buf, u32(b) & 15, a)   # a goes to r3, b to r2
    p.return_(0)


def test_arguments_are_not_overwritten_before_they_are_read():
    program = build(lambda p, ctx: p.var(u64, crossed(p, ctx.args[0], ctx.args[1])))
    start = program.labels["crossed"]
    check_straight_line(program, [3], start=start, arguments=2)


def test_a_key_copy_is_not_reused_inside_a_loop_that_changes_it():
    def body(p, ctx):
        key = p.var(u32, 0)
        lookups.lookup(key)
        for _ in p.range(4):
            lookups.lookup(key)          # key changes below: copy it again each time
            key += 1
    program = build(body)
    stores = [i for i in program.instructions
              if i.opcode == isa.BPF_STX | isa.BPF_MEM | isa.BPF_W and i.dst == 10]
    assert len(stores) == 2
