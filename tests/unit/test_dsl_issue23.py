"""Issue 23's DSL bugs, each a test that failed before its fix: ``elif_``
after a condition that emits code, a Python ``return`` of a value, a DSL
variable rebound by plain assignment, a variable read where it may be
unset, and Python errors that escaped as tracebacks instead of one-line
``file:line`` build errors."""

import pytest

from pybpf import isa
from pybpf.dsl import (HashMap, ProgramBuildError, Struct, char, raw_tracepoint, tracepoint,
                       u32, u64, xdp)
from pybpf.kernel.tracefs import parse_format
from pybpf.net import ETH_P_IP, ETH_P_IPV6, XDP_DROP, XDP_PASS, XDP_TX, EthHdr

from dsl_helpers import JMP32, build, build_error, has


class Event(Struct):
    pid: u32
    comm: char[16]


counts = HashMap(key=u32, value=u64, max_entries=16)

EXECVE_FORMAT = parse_format("""name: sys_enter_execve
ID: 800
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:const char * filename;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char *const * argv;\toffset:24;\tsize:8;\tsigned:0;
\tfield:const char *const * envp;\toffset:32;\tsize:8;\tsigned:0;
""", category="syscalls")


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



# --- a Python return of a value -------------------------------------------------------------

def test_return_of_a_value_is_an_error_naming_p_return():
    @raw_tracepoint("sys_enter")
    def prog(p, ctx):
        with p.if_(ctx.args[1] == 1):
            p.return_(2)
        return 1  # error: return
    with build_error("return", match=r"`return 1` is lost .*use p\.return_\(1\)"):
        prog.build()


def test_return_of_none_is_fine():
    @raw_tracepoint("sys_enter")
    def prog(p, ctx):
        with p.if_(ctx.args[1] == 1):
            p.return_(2)
        return None
    prog.build()


def test_return_of_a_value_without_source_is_still_an_error():
    namespace = {}
    exec(compile("def prog(p, ctx):\n    return 1\n", "<typed>", "exec"), namespace)
    with pytest.raises(ProgramBuildError, match=r"<typed>:1: prog returned a value"):
        raw_tracepoint("sys_enter")(namespace["prog"]).build()


# --- a DSL variable rebound by plain assignment -----------------------------------------------

def test_variable_rebound_in_a_branch_names_the_line_and_set():
    @raw_tracepoint("sys_enter")
    def prog(p, ctx):
        x = p.var(u64, 0)
        with p.if_(ctx.args[1] == 1):
            x = 5  # error: rebind
        counts.update(u32(1), x)
    with build_error("rebind", match=r"x is a DSL variable .* write x\.set\(5\)"):
        prog.build()


def test_variable_rebound_in_a_loop():
    @raw_tracepoint("sys_enter")
    def prog(p, ctx):
        total = p.var(u64, 0)
        for i in p.range(4):
            total = total + i  # error: loop
        counts.update(u32(1), total)
    with build_error("loop", match=r"write total\.set\(total \+ i\)"):
        prog.build()


def test_names_that_are_not_variables_may_be_bound_in_blocks():
    @raw_tracepoint("sys_enter")
    def prog(p, ctx):
        x = p.var(u64, 0)
        with p.if_(ctx.args[1] == 1):
            y = ctx.args[0] + 1
            x.set(y)
            x = p.var(u64, 2)      # a new declaration is not a rebinding
            counts.update(u32(2), x)
        counts.update(u32(1), u64(3))
    prog.build()


# --- a variable read where it may be unset ----------------------------------------------------

def test_variable_set_in_one_branch_only():
    def body(p, ctx):
        x = p.var(u64)
        with p.if_(ctx.args[1] == 1):
            x.set(5)
        counts.update(u32(1), x)  # error: one-branch
    with build_error("one-branch", match=r"declared at line \d+, which is not set on every"):
        build(body)


def test_variable_never_set():
    def body(p, ctx):
        x = p.var(u64)
        x += 1  # error: never
    with build_error("never", match="not set on every path"):
        build(body)


def test_variable_set_on_every_path():
    def body(p, ctx):
        x = p.var(u64)
        with p.if_(ctx.args[1] == 1):
            x.set(5)
        with p.elif_(ctx.args[1] == 2):
            p.return_(1)              # this path does not go on
        with p.else_():
            x.set(6)
        counts.update(u32(1), x)
        y = p.var(u64)
        for i in p.range(4):
            y.set(i)
        counts.update(u32(2), y)      # a loop counts as setting what its body sets
    build(body)


def test_variable_set_in_if_and_elif_but_no_else():
    def body(p, ctx):
        x = p.var(u64)
        with p.if_(ctx.args[1] == 1):
            x.set(5)
        with p.elif_(ctx.args[1] == 2):
            x.set(6)
        counts.update(u32(1), x)  # error: no-else
    with build_error("no-else", match="not set on every path"):
        build(body)


# --- one-line errors instead of Python tracebacks ---------------------------------------------

def test_ret_on_a_raw_tracepoint():
    @raw_tracepoint("sys_exit")
    def prog(p, ctx):
        counts.update(u32(1), ctx.ret)  # error: ret
    with build_error("ret", match=r"no field 'ret'.*sys_exit: .*ctx\.args\[1\] the return value"):
        prog.build()


def test_increment_of_a_lookup_pointer():
    def body(p, ctx):
        c = counts.lookup(u32(1))
        with p.if_(c):
            c += 1  # error: pointer
    with build_error("pointer", match=r"a pointer to u64, not a number: .*`c\[0\] \+= 1`"):
        build(body)


def test_index_of_a_user_pointer():
    @tracepoint("syscalls", "sys_enter_execve", format=EXECVE_FORMAT)
    def prog(p, ctx):
        counts.update(u32(1), ctx.argv[0])  # error: user
    with build_error("user", match=r"user-space pointer .*probe_read_user"):
        prog.build()


def test_comm_compared_with_bytes_is_string_equality():
    def body(p, ctx):
        ev = p.stack(Event)
        p.helpers.get_current_comm(ev.comm)
        with p.if_(ev.comm == b"bash"):
            p.return_(1)
    program = build(body)
    # one 4-byte compare with "bash", one 1-byte compare with its NUL
    assert has(program, JMP32 | isa.BPF_JNE | isa.BPF_K, imm=int.from_bytes(b"bash", "little"))
    assert has(program, JMP32 | isa.BPF_JNE | isa.BPF_K, imm=0)


def test_comm_compared_with_a_too_long_string():
    def body(p, ctx):
        ev = p.stack(Event)
        with p.if_(ev.comm == b"a-name-longer-than-16"):  # error: long
            p.return_(1)
    with build_error("long", match="longer than char\\[16\\]"):
        build(body)
