"""DSL code in this kernel: what the verifier says points at DSL lines, and
what the instructions compute is what Python computes."""

import linecache
import struct

import pytest
from older_kernels import without_bpf_loop

from pybpf.dsl import (ArrayMap, Ptr, Struct, collection_spec, raw_tracepoint, s32, s64,
                       subprogram, u8, u32, u64)
from pybpf.dsl.kernel_types import kernel_has_helper
from pybpf.errors import ProgramBuildError, VerifierError
from pybpf.loader import Collection

results = ArrayMap(value=s64[8], max_entries=1)


class Table(Struct):
    data: u8[64]


tables = ArrayMap(value=Table, max_entries=1)


def run(program, *args):
    """Load ``program`` alone, run it once on ``args``, return ``results[0]``."""
    with Collection(collection_spec([program])) as loaded:
        loaded.programs[program.name].test_run(ctx=struct.pack("<%dQ" % len(args), *args))
        return loaded.maps.results[0]


def as_u64(value):
    return value & (1 << 64) - 1


def test_a_verifier_rejection_names_the_dsl_line():
    @raw_tracepoint("sys_enter")
    def broken(p, ctx):
        table = tables.lookup(u32(0))
        with p.if_(table):
            table.data[ctx.args[0]] = 1  # the verifier cannot bound this index
    with pytest.raises(VerifierError) as caught:
        Collection(collection_spec([broken]))
    lines = [linecache.getline(loc.filename, loc.line) for loc in caught.value.source_lines]
    assert any("cannot bound this index" in line for line in lines), caught.value
    assert __file__ in str(caught.value)


def c_div(a, b):
    quotient = abs(a) // abs(b)
    return quotient if (a < 0) == (b < 0) else -quotient


@pytest.mark.parametrize("a, b", [(-7, 2), (7, -2), (-9, -4), (1 << 40, 3), (-5, 7)])
def test_signed_arithmetic_with_cpu_v4(a, b, probe_says):
    @raw_tracepoint("sys_enter", cpu=4)
    def arithmetic(p, ctx):
        x, y = s64(ctx.args[0]), s64(ctx.args[1])
        out = results.lookup(u32(0))
        with p.if_(out):
            out[0] = x / y
            out[1] = x % y
            out[2] = x >> 3
            out[3] = s32(x) / s32(y)
            out[4] = s64(s32(x))
            out[5] = u64(x) >> 3
            with p.if_(x < y):
                out[6] = 1
            with p.else_():
                out[6] = 0
    from pybpf.errors import FeatureRefused, UnsupportedFeature, VerifierError
    answer = probe_says("cpu_v4").answer("cpu_v4")
    if answer.state == "absent":     # Linux < 6.6: not loaded, naming the feature
        with pytest.raises(UnsupportedFeature, match="cpu_v4.*6.6"):
            Collection(collection_spec([arithmetic]))
        return
    if answer.state == "refused":
        with pytest.raises(FeatureRefused, match="refuses cpu_v4"):
            Collection(collection_spec([arithmetic]))
        return
    if not probe_says.host("cpu_v4").available:   # told yes, but the verifier knows better
        with pytest.raises(VerifierError, match="reserved fields"):
            Collection(collection_spec([arithmetic]))
        return
    got = run(arithmetic, as_u64(a), as_u64(b))
    a32, b32 = (a + (1 << 31)) % (1 << 32) - (1 << 31), b
    assert got == [c_div(a, b), a - c_div(a, b) * b, a >> 3, c_div(a32, b32), a32,
                   as_u64(a) >> 3 if as_u64(a) >> 3 < 1 << 63 else (as_u64(a) >> 3) - (1 << 64),
                   int(a < b), 0]


def test_values_spilled_across_calls_keep_their_values():
    @raw_tracepoint("sys_enter")
    def spills(p, ctx):
        values = []
        for i in range(6):
            values.append(ctx.args[i] * (i + 1))
            p.helpers.ktime_get_ns()      # every value so far must survive this call
        out = results.lookup(u32(0))
        with p.if_(out):
            for i, value in enumerate(values):
                out[i] = value
    args = [3, 1 << 33, 12345, 7, 99, 1 << 50]
    assert run(spills, *args)[:6] == [a * (i + 1) for i, a in enumerate(args)]


def test_loops_run_in_the_kernel():
    @raw_tracepoint("sys_enter")
    def loops(p, ctx):
        out = results.lookup(u32(0))
        with p.if_(out.is_null):
            p.return_(0)
        total = p.var(u64, 0)
        for i in p.range(u32(ctx.args[0]) & 31):        # a bound known only at run time
            total += i
        out[0] = total
        evens = p.var(u64, 0)
        for i in p.range(20):
            with p.if_((i & 1) == 1):
                p.continue_()
            with p.if_(i > 12):
                p.break_()
            evens += i
        out[1] = evens
    got = run(loops, 10)
    assert got[:2] == [sum(range(10)), sum(i for i in range(13) if i % 2 == 0)]


class LoopState(Struct):
    total: u64
    limit: u64


@subprogram
def add_square(p, index: u64, state: Ptr(LoopState)) -> s64:
    state.total = state.total + index * index
    with p.if_(index + 1 >= state.limit):
        p.return_(1)                           # stop: bpf_loop counts this call
    p.return_(0)


def looping(count=50):
    """``count``: a constant, or a function of ``ctx`` for one known at run time."""
    @raw_tracepoint("sys_enter")
    def loop_squares(p, ctx):
        out = results.lookup(u32(0))
        with p.if_(out.is_null):
            p.return_(0)
        state = p.stack(LoopState)
        state.total = 0
        state.limit = ctx.args[0]
        out[0] = p.loop(count(ctx) if callable(count) else count, add_square, state)
        out[1] = state.total
    return loop_squares


@pytest.mark.parametrize("limit", [0, 1, 7, 50, 51])
def test_loop_without_bpf_loop_keeps_its_contract(limit):
    """On a kernel without bpf_loop, p.loop() is a bounded loop of calls that
    returns what bpf_loop returns: calls made, the stopping one included."""
    expected_calls = min(max(limit, 1), 50)
    expected_total = sum(i * i for i in range(expected_calls))
    native = looping()                   # bpf_loop where this kernel has it
    assert ("call bpf_loop" in native.disasm()) == kernel_has_helper("bpf_loop")
    assert run(native, limit)[:2] == [expected_calls, expected_total]
    with without_bpf_loop():
        assert not kernel_has_helper("bpf_loop")
        program = looping()
        assert "call bpf_loop" not in program.disasm()
        assert run(program, limit)[:2] == [expected_calls, expected_total]


NO_BPF_LOOP = "this kernel has no bpf_loop helper (added in Linux 5.17)"


@pytest.mark.parametrize("count, problems", [
    (lambda ctx: u32(ctx.args[1]) & 63, [NO_BPF_LOOP, "only for a constant count"]),
    (8192, [NO_BPF_LOOP, "8192 iterations are more than it can follow within "
                         "BPF_COMPLEXITY_LIMIT_JMP_SEQ"]),
    (-1, ["a count of 0 or more, not -1"]),
])
def test_loop_without_bpf_loop_says_what_it_cannot_do(count, problems):
    with without_bpf_loop(), pytest.raises(ProgramBuildError) as caught:
        looping(count).build()
    for problem in problems:
        assert problem in str(caught.value)


def test_sniffwrites_without_bpf_loop_is_bounded_loops():
    """What tests/e2e/test_sniffwrites_strace.py runs as a kernel before 5.17
    runs it: the same steps, called from bounded loops."""
    from sniffwrites.bpf import hooks
    with without_bpf_loop():
        bounded = hooks.sniff_sys_exit.disasm()
    assert "call bpf_loop" not in bounded
    for step in ("walk_step", "compose_step", "sweep_step"):
        assert "call %s " % step in bounded
    native = hooks.sniff_sys_exit.disasm()
    assert ("call bpf_loop" in native) == kernel_has_helper("bpf_loop")
