"""The perf event array and the stack trace map, from the DSL: records
through ``PerfEventArray.output`` read back by the collection's reader, and
the kernel stack of a ``getppid`` read back with its symbols."""

import os
import platform

from pybpf.dsl import (HashMap, PerfEventArray, StackTrace, Struct, char, collection_spec,
                       raw_tracepoint, s64, u32)
from pybpf.loader import Collection

GETPPID = {"x86_64": 110, "aarch64": 173}[platform.machine()]
#: Functions every syscall passes through on its way in, by architecture.
SYSCALL_ENTRY = {"x86_64": ("do_syscall_64", "entry_SYSCALL_64"),
                 "aarch64": ("invoke_syscall", "el0_svc")}[platform.machine()]
COMM = open("/proc/self/comm").read().strip()


class Call(Struct):
    pid: u32
    nr: u32
    comm: char[16]


calls = PerfEventArray()
stacks = StackTrace(max_entries=64)
stack_of = HashMap(key=u32, value=s64, max_entries=1)


def ours(p, ctx):
    """Leave unless this is our process calling getppid."""
    with p.if_((u32(p.helpers.get_current_pid_tgid() >> 32) != os.getpid())
               | (ctx.args[1] != GETPPID)):
        p.return_(0)


@raw_tracepoint("sys_enter")
def send_call(p, ctx):
    ours(p, ctx)
    call = p.stack(Call, zero=True)
    call.pid = u32(p.helpers.get_current_pid_tgid() >> 32)
    call.nr = u32(ctx.args[1])
    p.helpers.get_current_comm(call.comm)
    calls.output(ctx, call)


@raw_tracepoint("sys_enter")
def keep_stack(p, ctx):
    ours(p, ctx)
    stack_of.update(u32(0), p.get_stackid(ctx, stacks))


def test_perf_event_array_records_reach_the_reader(no_leaks):
    with Collection(collection_spec([send_call])).attach() as loaded:
        reader = loaded.reader(calls, Call)
        os.getppid()
        seen = []
        while not seen:
            assert reader.poll(seen.append, timeout=30)
        assert reader.lost() == 0
    assert (seen[0].pid, seen[0].nr, seen[0].comm) == (os.getpid(), GETPPID, COMM)


def test_the_kernel_stack_of_a_syscall_names_its_entry(no_leaks):
    with Collection(collection_spec([keep_stack])).attach() as loaded:
        os.getppid()
        stack_id = loaded.maps.stack_of[0]
        assert stack_id >= 0, "bpf_get_stackid failed: %d" % stack_id
        frames = stacks.kernel_stack(loaded.maps.stacks, stack_id)
        addresses = stacks.addresses(loaded.maps.stacks, stack_id)
    assert len(frames) == len(addresses) > 1
    names = [frame.split("+")[0] for frame in frames]
    assert any(name.startswith(SYSCALL_ENTRY) for name in names), frames
    assert all(not name.startswith("0x") for name in names), frames
