"""Per-process syscall counts, from the raw ``sys_enter`` tracepoint.

Mirrors ``tools/clang/count_syscalls.c``. Userspace reads ``counts`` (tgid
-> number of syscalls entered) while the program is attached.
"""

from pybpf.dsl import BPF_NOEXIST, HashMap, raw_tracepoint, u32, u64

counts = HashMap(key=u32, value=u64, max_entries=10240)


@raw_tracepoint("sys_enter")
def count_syscalls(p, ctx):
    pid = u32(p.helpers.get_current_pid_tgid() >> 32)
    count = counts.lookup(pid)
    with p.if_(count):
        p.atomic_add(count, 1)
    with p.else_():
        counts.update(pid, u64(1), BPF_NOEXIST)
