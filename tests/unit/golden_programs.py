"""Small programs whose disassembly is kept in ``golden/`` and reviewed:
a change to code generation shows up as a diff of these files. Each one
exercises a different part of the DSL. Keep line numbers stable: the
golden files quote them."""

from pybpf.dsl import (HashMap, Ptr, RingBuf, Struct, char, raw_tracepoint, s32, s64,
                       subprogram, u8, u32, u64)

counts = HashMap(key=u32, value=u64, max_entries=1024)
events = RingBuf(size=1 << 16)


class Record(Struct):
    pid: u32
    code: s32
    comm: char[16]


class Accumulator(Struct):
    sum: u64
    last: u64


@raw_tracepoint("sys_enter")
def counter(p, ctx):
    pid = u32(p.helpers.get_current_pid_tgid() >> 32)
    count = counts.lookup(pid)
    with p.if_(count.is_null):
        counts.update(pid, u64(1))
        p.return_(0)
    p.atomic_add(count, 1)


@raw_tracepoint("sys_enter")
def branches(p, ctx):
    x = s64(ctx.args[1])
    with p.if_(x < -10):
        p.return_(1)
    with p.elif_(u64(x) > 1000):
        p.return_(2)
    with p.elif_((x == 3) | (x == 5)):
        p.return_(1)
    with p.else_():
        p.return_(x >> 1)


@raw_tracepoint("sys_enter")
def loops(p, ctx):
    name = p.stack(char[16])
    p.helpers.get_current_comm(name)
    with p.if_(p.str_prefix_eq(name, b"bash")):
        p.return_(1)
    total = p.var(u32, 0)
    for i in p.range(16):
        c = name[i]
        with p.if_(c == 0):
            p.break_()
        with p.if_(c == ord("/")):
            p.continue_()
        total += c
    for shift in p.range(3, unroll=True):
        total ^= total >> (shift + 1)
    p.return_(total)


@raw_tracepoint("sys_enter")
def records(p, ctx):
    with events.reserve(Record) as record:
        record.pid = u32(p.helpers.get_current_pid_tgid() >> 32)
        record.code = s32(ctx.args[1])
        p.helpers.get_current_comm(record.comm)
        with p.if_(record.code < 0):
            p.return_(0)


@subprogram
def accumulate(p, index: u64, acc: Ptr(Accumulator)) -> s64:
    acc.sum = acc.sum + index
    acc.last = index
    p.return_(0)


@subprogram
def mix(p, a: u64, b: u64) -> u64:
    p.return_((a ^ b) * 31)


@raw_tracepoint("sys_enter")
def calls(p, ctx):
    acc = p.stack(Accumulator, zero=True)
    p.loop(u32(ctx.args[1]) & 63, accumulate, acc)
    first = p.helpers.ktime_get_ns()
    second = mix(p, first, acc.sum)
    flag = p.var(u8, 0)
    with p.if_(second > first):
        flag.set(1)
    p.return_(second + first + flag)
