"""Issue 23's DSL bugs, each a test that failed before its fix: ``elif_``
after a condition that emits code, a Python ``return`` of a value, a DSL
variable rebound by plain assignment, a variable read where it may be
unset, and Python errors that escaped as tracebacks instead of one-line
``file:line`` build errors."""

from pybpf import isa
from pybpf.dsl import u32, xdp
from pybpf.net import ETH_P_IP, ETH_P_IPV6, XDP_DROP, XDP_PASS, XDP_TX, EthHdr

from dsl_helpers import build, build_error


# --- elif_ on a condition that loads a field ----------------------------------------------------

@xdp
def classify(p, ctx):
    eth = p.packet_header(ctx, EthHdr)
    with p.if_(eth.is_null):
        p.return_(XDP_PASS)
    kind = p.var(eth.h_proto.type, 0)
    with p.if_(eth.h_proto == ETH_P_IP):
        kind.set(1)
    with p.elif_(eth.h_proto == ETH_P_IPV6):     # loads h_proto again: code before elif_
        kind.set(2)
    with p.else_():
        p.return_(XDP_DROP)
    with p.if_(kind == 1):
        p.return_(XDP_TX)
    p.return_(XDP_PASS)


def test_elif_on_a_field_builds_a_real_else_if():
    """The IPv6 load runs only on the else path: the if branch jumps over it."""
    insns = classify.build().instructions
    loads = [i for i, insn in enumerate(insns)
             if insn.opcode == isa.BPF_LDX | isa.BPF_MEM | isa.BPF_H and insn.off == 12]
    assert len(loads) == 2
    second = loads[1]
    jump_over = insns[second - 1]
    assert jump_over.opcode == isa.BPF_JMP | isa.BPF_JA
    assert second - 1 + 1 + jump_over.off > second      # lands after the elif's load


def test_statement_between_if_and_elif_is_still_an_error():
    def body(p, ctx):
        x = p.var(u32, 0)
        with p.if_(ctx.args[1] == 1):
            x.set(1)
        x.set(3)
        with p.elif_(ctx.args[1] == 2):  # error: between
            x.set(2)
        p.return_(x)
    with build_error("between", match="must directly follow"):
        build(body)

