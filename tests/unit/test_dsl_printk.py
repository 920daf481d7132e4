"""``p.printk``: the format in read-only data, the helper chosen by the
number of arguments, mistakes as build errors (the kernel runs it in
``tests/e2e/test_cli_trace.py``)."""

from pybpf import isa
from pybpf.dsl.printk import format_config

from dsl_helpers import build, build_error, has


def test_three_arguments_call_trace_printk_with_the_format_in_a_map():
    program = build(lambda p, ctx: p.printk("a %d b %u c %x", 1, 2, ctx.args[1]))
    assert has(program, isa.BPF_JMP | isa.BPF_CALL, imm=6)          # bpf_trace_printk


def test_more_arguments_call_trace_vprintk():
    program = build(lambda p, ctx: p.printk("%d %d %d %d", 1, 2, 3, 4))
    assert has(program, isa.BPF_JMP | isa.BPF_CALL, imm=177)        # bpf_trace_vprintk


def test_one_map_per_format_holding_it_with_its_nul():
    config = format_config(b"x=%d")
    assert config is format_config(b"x=%d")
    assert config.encode() == b"x=%d\0"


def test_argument_count_must_match_the_format():
    def body(p, ctx):
        p.printk("%d and %d, 100%%", 1)  # error: count
    with build_error("count", match="has 2 conversions but p.printk\\(\\) got 1"):
        build(body)


def test_at_most_twelve_arguments():
    def body(p, ctx):
        p.printk("%d" * 13, *range(13))  # error: many
    with build_error("many", match="at most 12"):
        build(body)
