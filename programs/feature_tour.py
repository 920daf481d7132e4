"""A tour of the DSL: programs that use every feature, checked by the tests.

``tour`` is a raw tracepoint program the tests run with BPF_PROG_TEST_RUN
(it is never attached): ``ctx.args[0]`` is the address of a string in the
test's own memory, ``ctx.args[1]`` a signed number, ``ctx.args[2]`` a
command. It sends one :class:`Report` whose every field the test can
predict in Python. ``tour_getppid`` is a tracepoint program that records
what ``getppid()`` returned to the process named in the config.

Mirrors ``tools/clang/feature_tour.c``.
"""

from pybpf.dsl import (ArrayMap, Config, HashMap, PerCPUArray, Ptr, RingBuf, Struct, UserPtr,
                       char, raw_tracepoint, s16, s32, s64, sizeof, subprogram, tracepoint, u8,
                       u16, u32, u64)

STOP = 0x5709          # ctx.args[2]: return at once
STOPPED = 7            # ... with this value


class Sample(Struct):
    values: s16[4]
    tag: char[6]


class Report(Struct):
    pid: u32
    kind: u8              # if/elif/else on the sign of x
    flags: u8             # one bit per comparison (see tour)
    is_py: u8             # comm starts with b"py" (constant prefix)
    matched: u8           # comm starts with the configured prefix (bounded loop)
    arg_len: s32          # what probe_read_user_str returned
    ops: s64[8]           # arithmetic on x
    arg_sum: u64          # sum of the string's bytes (kernel bounded loop)
    unrolled: u64         # 2 * 3 * 4 * 5 * 6 (unrolled loop)
    loop_sum: u64         # sum of i * i for i < 10 (bpf_loop)
    loops: s64            # what bpf_loop returned
    big_sum: u64          # from the per-CPU scratch buffer
    comm: char[16]        # bpf_get_current_comm
    kcomm: char[16]       # task_struct.comm, read as a kernel string
    arg: char[32]         # the user string
    samples: Sample[2]    # [0] zeroed, [1] copied from the stack


class Big(Struct):
    """More than the 512-byte stack holds: lives in a per-CPU array."""
    data: u8[1024]


class LoopState(Struct):
    total: u64
    limit: u64


settings = Config(prefix=char[16], scale=u32, target_pid=u32, defaults={"scale": 3})
reports = RingBuf(size=1 << 16)
scratch = PerCPUArray(value=Big, max_entries=1)
calls = HashMap(key=u32, value=u64, max_entries=64)
ppids = ArrayMap(value=s64, max_entries=1)


@subprogram
def clamp(p, value: u64, limit: u64) -> u64:
    with p.if_(value > limit):
        p.return_(limit)
    p.return_(value)


@subprogram
def add_square(p, index: u64, state: Ptr(LoopState)) -> s64:
    state.total = state.total + index * index
    with p.if_(index + 1 >= state.limit):
        p.return_(1)
    p.return_(0)


@raw_tracepoint("sys_enter")
def tour(p, ctx):
    with p.if_(ctx.args[2] == STOP):
        p.return_(STOPPED)
    x = s64(ctx.args[1])
    pid = u32(p.helpers.get_current_pid_tgid() >> 32)
    count = calls.lookup(pid)
    with p.if_(count):
        p.atomic_add(count, 1)
    with p.else_():
        calls.update(pid, u64(1))

    with reports.reserve(Report) as rep:
        rep.pid = pid
        # signedness picks the instruction; constants fold at build time
        rep.ops[0] = x >> 2                                   # arithmetic shift
        rep.ops[1] = u64(x) >> 60                             # logical shift
        rep.ops[2] = u64(x) / 7                               # unsigned division
        rep.ops[3] = u64(x) % 8                               # becomes & 7
        rep.ops[4] = x * settings.scale + (2 + 3) * 4         # a load-time setting
        rep.ops[5] = clamp(p, u64(x), 1000)                   # a bpf-to-bpf call
        rep.ops[6] = -s32(x)                                  # 32-bit, sign-extended
        flags = p.var(u8, 0)
        with p.if_(x < 0):
            flags |= 1
        with p.if_(u64(x) > 1000):
            flags |= 2
        with p.if_(s32(x) >= -5):
            flags |= 4
        with p.if_(u16(x) == 0xFFFF):
            flags |= 8
        with p.if_((u8(x) < 200) & (x != 1)):
            flags |= 16
        rep.flags = flags
        with p.if_(x < 0):
            rep.kind = 1
        with p.elif_(x == 0):
            rep.kind = 2
        with p.else_():
            rep.kind = 3

        # strings: user, kernel, and prefixes
        p.helpers.get_current_comm(rep.comm)
        p.helpers.probe_read_kernel_str(rep.kcomm, p.current_task().comm)  # BTF offset
        rep.arg_len = p.helpers.probe_read_user_str(rep.arg, UserPtr(ctx.args[0]))
        rep.is_py = p.var(u8, p.str_prefix_eq(rep.comm, b"py"))
        rep.matched = p.var(u8, p.str_prefix_eq(rep.comm, settings.prefix))

        # loops: kernel bounded, unrolled, bpf_loop
        total = p.var(u64, 0)
        for i in p.range(sizeof(rep.arg)):
            c = rep.arg[i]
            with p.if_(c == 0):
                p.break_()
            total += c
        rep.arg_sum = total
        product = p.var(u64, 1)
        for i in p.range(2, 7, unroll=True):
            product *= i
        rep.unrolled = product
        state = p.stack(LoopState)
        state.total = 0
        state.limit = 10
        rep.loops = p.loop(100, add_square, state)
        rep.loop_sum = state.total

        # stack structs: zeroed, filled, copied
        sample = p.stack(Sample, zero=True)
        for i in p.range(4, unroll=True):
            sample.values[i] = s16(x) - i
        sample.tag = b"tour"
        p.copy(rep.samples[1], sample)
        p.zero(rep.samples[0])
        rep.ops[7] = sample.values[3]                         # s16 load, sign-extended

        # per-CPU scratch for data bigger than the stack
        big = scratch.lookup(0)
        with p.if_(big.is_null):
            p.return_(0)                                      # discards the report
        p.zero(big)
        big.data[10] = 7
        big.data[1000] = u8(x)
        rep.big_sum = big.data[10] + big.data[1000]


@tracepoint("syscalls", "sys_exit_getppid")
def tour_getppid(p, ctx):
    with p.if_(u32(p.helpers.get_current_pid_tgid() >> 32) != settings.target_pid):
        p.return_(0)
    ppids.update(0, ctx.ret)
