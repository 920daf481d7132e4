"""DSL mistakes are build errors naming the file and line, before the
kernel is asked. Each test marks the line it expects with ``# error: tag``."""

import pytest

from pybpf.dsl import (ArrayMap, Config, HashMap, RingBuf, Struct, char, s32, subprogram,
                       tracepoint, u8, u32, u64)
from pybpf.kernel.tracefs import parse_format

from dsl_helpers import build, build_error


class Event(Struct):
    pid: u32
    comm: char[16]


counts = HashMap(key=u32, value=u64, max_entries=16)
records = ArrayMap(value=Event, max_entries=4)
events = RingBuf(size=4096 * 4)
settings = Config(limit=u32)

OPENAT_FORMAT = parse_format("""name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;
""", category="syscalls")


def test_unknown_field():
    def body(p, ctx):
        ev = p.stack(Event)
        ev.tid = 1  # error: field
    with build_error("field", match="struct Event has no field 'tid'"):
        build(body)


def test_unknown_tracepoint_field():
    @tracepoint("syscalls", "sys_enter_openat", format=OPENAT_FORMAT)
    def prog(p, ctx):
        p.var(u64, ctx.filname)  # error: ctx
    with build_error("ctx", match="no field 'filname'.*filename"):
        prog.build()


def test_type_mismatch_of_a_map_key():
    def body(p, ctx):
        ev = p.stack(Event)
        counts.lookup(ev)  # error: key
    with build_error("key", match="the key is Event .* key type is u32"):
        build(body)


def test_type_mismatch_of_a_variable():
    def body(p, ctx):
        p.var(Event)  # error: var
    with build_error("var", match="p.var\\(\\) holds integers and pointers"):
        build(body)


def test_nullable_pointer_used_without_check():
    def body(p, ctx):
        count = counts.lookup(u32(1))
        count[0] += 1  # error: unchecked
    with build_error("unchecked", match="bpf_map_lookup_elem may be NULL here"):
        build(body)


def test_check_does_not_reach_past_its_block():
    def body(p, ctx):
        count = counts.lookup(u32(1))
        with p.if_(count):
            count[0] += 1
        count[0] += 2  # error: after
    with build_error("after", match="may be NULL"):
        build(body)


def test_checks_that_prove_a_pointer():
    def early_return(p, ctx):
        count = counts.lookup(u32(1))
        with p.if_(count.is_null):
            p.return_(0)
        count[0] += 1

    def else_branch(p, ctx):
        count = counts.lookup(u32(1))
        with p.if_(count.is_null):
            p.var(u32, 1)
        with p.else_():
            count[0] += 1

    def combined(p, ctx):
        count = counts.lookup(u32(1))
        record = records.lookup(u32(0))
        with p.if_(~count.is_null & (record != 0)):
            record.pid = count[0]
    for body in (early_return, else_branch, combined):
        build(body)


def test_ring_buffer_record_outside_its_block():
    def body(p, ctx):
        with events.reserve(Event) as ev:
            ev.pid = 1
        ev.pid = 2  # error: record
    with build_error("record", match="ringbuf_reserve may be NULL"):
        build(body)


def test_stack_overflow():
    def body(p, ctx):
        p.stack(u8[300])
        p.stack(u8[300])  # error: stack
    with build_error("stack", match="stack frame overflow.*608 bytes.*512"):
        build(body)


def test_index_out_of_range():
    def body(p, ctx):
        record = records.lookup(u32(0))
        with p.if_(record):
            record.comm[16] = 0  # error: index
    with build_error("index", match="index 16 is out of range for char\\[16\\]"):
        build(body)


class Huge(Struct):
    data: u64[12000]


huge = ArrayMap(value=Huge, max_entries=1)


def test_jump_out_of_range():
    def body(p, ctx):
        block = huge.lookup(u32(0))
        with p.if_(block):  # error: jump
            p.store_bytes(block.data, b"\x11\x22\x33\x44\x55\x66\x77\x88" * 11000)
    with build_error("jump", match="beyond the 16-bit offset range"):
        build(body)


def test_unreachable_code():
    def body(p, ctx):
        p.return_(1)
        p.var(u32, 2)  # error: unreachable
    with build_error("unreachable", match="unreachable code"):
        build(body)


def test_value_from_a_block_used_after_it():
    def body(p, ctx):
        with p.if_(ctx.args[0] == 1):
            inside = ctx.args[1] + 1
        p.var(u64, inside)  # error: scope
    with build_error("scope", match="computed inside the if block"):
        build(body)


def test_else_must_follow_if():
    def body(p, ctx):
        with p.if_(ctx.args[0] == 1):
            p.var(u32, 1)
        p.var(u32, 2)
        with p.else_():  # error: else
            pass
    with build_error("else", match="must directly follow"):
        build(body)


def test_python_break_leaves_a_loop_open():
    def body(p, ctx):
        for i in p.range(4):  # error: loop
            break
    with build_error("loop", match="never closed"):
        build(body)


def test_break_outside_a_loop():
    def body(p, ctx):
        p.break_()  # error: break
    with build_error("break", match="outside a"):
        build(body)


def test_config_is_read_only():
    def body(p, ctx):
        p.var(u32, settings.limit)
        settings.limit = 3  # error: config
    with pytest.raises(AttributeError, match="set when loading"):
        build(body)
    with pytest.raises(KeyError, match="no setting limits"):
        settings.encode({"limits": 1})


def test_helper_mistakes():
    def unknown(p, ctx):
        p.helpers.get_current_pidtgid()  # error: unknown
    with build_error("unknown", match="no helper bpf_get_current_pidtgid"):
        build(unknown)

    def too_many(p, ctx):
        p.helpers.ktime_get_ns(1)  # error: many
    with build_error("many", match="too many arguments"):
        build(too_many)

    def not_memory(p, ctx):
        p.helpers.get_current_comm(ctx.args[0], 16)  # error: memory
    with build_error("memory", match="must be program memory"):
        build(not_memory)


def test_subprogram_mistakes():
    with pytest.raises(TypeError, match="annotate the type of x"):
        @subprogram
        def untyped(p, x):
            p.return_(x)

    @subprogram
    def recursive(p, x: s32) -> s32:
        p.return_(recursive(p, x))

    with pytest.raises(Exception, match="calls itself"):
        build(lambda p, ctx: p.var(u32, recursive(p, 1)))
