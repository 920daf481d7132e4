"""Kernel UAPI constants: one home, imported by every layer, defined nowhere else.

The enums and flags of ``include/uapi/linux/bpf.h`` that more than one
module needs: program, map, link, attach and perf-event types (with
:class:`EnumNames` tables that turn values into the kernel's names and
bpftool's short ones), the update flags of ``BPF_MAP_UPDATE_ELEM``, the
``BPF_F_*`` flags of ``BPF_MAP_CREATE`` and ``BPF_PROG_LOAD``, the verifier
log levels, and the layout of ``struct bpf_func_info``. Every name keeps
its kernel spelling so that it can be looked up in the kernel source. This
module imports nothing of pybpf: the DSL, the ELF reader, the loader and the
kernel layer all take their constants from here.

>>> MAP_TYPES.name(BPF_MAP_TYPE_RINGBUF), MAP_TYPES.short(27)
('BPF_MAP_TYPE_RINGBUF', 'ringbuf')
"""

import struct
from typing import Dict, List, Tuple

# --- enum bpf_prog_type (include/uapi/linux/bpf.h) ----------------------------------
BPF_PROG_TYPE_UNSPEC = 0
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_SCHED_ACT = 4
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_XDP = 6
BPF_PROG_TYPE_PERF_EVENT = 7
BPF_PROG_TYPE_CGROUP_SKB = 8
BPF_PROG_TYPE_CGROUP_SOCK = 9
BPF_PROG_TYPE_LWT_IN = 10
BPF_PROG_TYPE_LWT_OUT = 11
BPF_PROG_TYPE_LWT_XMIT = 12
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_PROG_TYPE_SK_SKB = 14
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_PROG_TYPE_SK_MSG = 16
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_PROG_TYPE_LWT_SEG6LOCAL = 19
BPF_PROG_TYPE_LIRC_MODE2 = 20
BPF_PROG_TYPE_SK_REUSEPORT = 21
BPF_PROG_TYPE_FLOW_DISSECTOR = 22
BPF_PROG_TYPE_CGROUP_SYSCTL = 23
BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE = 24
BPF_PROG_TYPE_CGROUP_SOCKOPT = 25
BPF_PROG_TYPE_TRACING = 26
BPF_PROG_TYPE_STRUCT_OPS = 27
BPF_PROG_TYPE_EXT = 28
BPF_PROG_TYPE_LSM = 29
BPF_PROG_TYPE_SK_LOOKUP = 30
BPF_PROG_TYPE_SYSCALL = 31
BPF_PROG_TYPE_NETFILTER = 32

# --- enum bpf_map_type ----------------------------------------------------------------
BPF_MAP_TYPE_UNSPEC = 0
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_STACK_TRACE = 7
BPF_MAP_TYPE_CGROUP_ARRAY = 8
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_LPM_TRIE = 11
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13
BPF_MAP_TYPE_DEVMAP = 14
BPF_MAP_TYPE_SOCKMAP = 15
BPF_MAP_TYPE_CPUMAP = 16
BPF_MAP_TYPE_XSKMAP = 17
BPF_MAP_TYPE_SOCKHASH = 18
BPF_MAP_TYPE_CGROUP_STORAGE = 19
BPF_MAP_TYPE_REUSEPORT_SOCKARRAY = 20
BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21
BPF_MAP_TYPE_QUEUE = 22
BPF_MAP_TYPE_STACK = 23
BPF_MAP_TYPE_SK_STORAGE = 24
BPF_MAP_TYPE_DEVMAP_HASH = 25
BPF_MAP_TYPE_STRUCT_OPS = 26
BPF_MAP_TYPE_RINGBUF = 27
BPF_MAP_TYPE_INODE_STORAGE = 28
BPF_MAP_TYPE_TASK_STORAGE = 29
BPF_MAP_TYPE_BLOOM_FILTER = 30
BPF_MAP_TYPE_USER_RINGBUF = 31
BPF_MAP_TYPE_CGRP_STORAGE = 32
BPF_MAP_TYPE_ARENA = 33

# --- enum bpf_link_type ---------------------------------------------------------------
BPF_LINK_TYPE_UNSPEC = 0
BPF_LINK_TYPE_RAW_TRACEPOINT = 1
BPF_LINK_TYPE_TRACING = 2
BPF_LINK_TYPE_CGROUP = 3
BPF_LINK_TYPE_ITER = 4
BPF_LINK_TYPE_NETNS = 5
BPF_LINK_TYPE_XDP = 6
BPF_LINK_TYPE_PERF_EVENT = 7
BPF_LINK_TYPE_KPROBE_MULTI = 8
BPF_LINK_TYPE_STRUCT_OPS = 9
BPF_LINK_TYPE_NETFILTER = 10
BPF_LINK_TYPE_TCX = 11
BPF_LINK_TYPE_UPROBE_MULTI = 12
BPF_LINK_TYPE_NETKIT = 13
BPF_LINK_TYPE_SOCKMAP = 14

# --- enum bpf_attach_type -------------------------------------------------------------
BPF_CGROUP_INET_INGRESS = 0
BPF_CGROUP_INET_EGRESS = 1
BPF_CGROUP_INET_SOCK_CREATE = 2
BPF_CGROUP_SOCK_OPS = 3
BPF_SK_SKB_STREAM_PARSER = 4
BPF_SK_SKB_STREAM_VERDICT = 5
BPF_CGROUP_DEVICE = 6
BPF_SK_MSG_VERDICT = 7
BPF_CGROUP_INET4_BIND = 8
BPF_CGROUP_INET6_BIND = 9
BPF_CGROUP_INET4_CONNECT = 10
BPF_CGROUP_INET6_CONNECT = 11
BPF_CGROUP_INET4_POST_BIND = 12
BPF_CGROUP_INET6_POST_BIND = 13
BPF_CGROUP_UDP4_SENDMSG = 14
BPF_CGROUP_UDP6_SENDMSG = 15
BPF_LIRC_MODE2 = 16
BPF_FLOW_DISSECTOR = 17
BPF_CGROUP_SYSCTL = 18
BPF_CGROUP_UDP4_RECVMSG = 19
BPF_CGROUP_UDP6_RECVMSG = 20
BPF_CGROUP_GETSOCKOPT = 21
BPF_CGROUP_SETSOCKOPT = 22
BPF_TRACE_RAW_TP = 23
BPF_TRACE_FENTRY = 24
BPF_TRACE_FEXIT = 25
BPF_MODIFY_RETURN = 26
BPF_LSM_MAC = 27
BPF_TRACE_ITER = 28
BPF_CGROUP_INET4_GETPEERNAME = 29
BPF_CGROUP_INET6_GETPEERNAME = 30
BPF_CGROUP_INET4_GETSOCKNAME = 31
BPF_CGROUP_INET6_GETSOCKNAME = 32
BPF_XDP_DEVMAP = 33
BPF_CGROUP_INET_SOCK_RELEASE = 34
BPF_XDP_CPUMAP = 35
BPF_SK_LOOKUP = 36
BPF_XDP = 37
BPF_SK_SKB_VERDICT = 38
BPF_SK_REUSEPORT_SELECT = 39
BPF_SK_REUSEPORT_SELECT_OR_MIGRATE = 40
BPF_PERF_EVENT = 41
BPF_TRACE_KPROBE_MULTI = 42
BPF_LSM_CGROUP = 43
BPF_STRUCT_OPS = 44
BPF_NETFILTER = 45
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
BPF_TRACE_UPROBE_MULTI = 48
BPF_CGROUP_UNIX_CONNECT = 49
BPF_CGROUP_UNIX_SENDMSG = 50
BPF_CGROUP_UNIX_RECVMSG = 51
BPF_CGROUP_UNIX_GETPEERNAME = 52
BPF_CGROUP_UNIX_GETSOCKNAME = 53
BPF_NETKIT_PRIMARY = 54
BPF_NETKIT_PEER = 55
BPF_TRACE_KPROBE_SESSION = 56
BPF_TRACE_UPROBE_SESSION = 57

# --- enum bpf_perf_event_type (bpf_link_info.perf_event.type) -------------------------
BPF_PERF_EVENT_UNSPEC = 0
BPF_PERF_EVENT_UPROBE = 1
BPF_PERF_EVENT_URETPROBE = 2
BPF_PERF_EVENT_KPROBE = 3
BPF_PERF_EVENT_KRETPROBE = 4
BPF_PERF_EVENT_TRACEPOINT = 5
BPF_PERF_EVENT_EVENT = 6


class EnumNames:
    """Value <-> name for one kernel enum, built from the constants above.

    ``name`` gives the kernel spelling (``BPF_MAP_TYPE_LRU_HASH``), ``short``
    bpftool's (``lru_hash``); ``value`` accepts either.
    """

    def __init__(self, prefix: str, first: str, last: str):
        names = list(globals())
        members = names[names.index(first):names.index(last) + 1]
        self.prefix = prefix
        self._names: Dict[int, str] = {globals()[n]: n for n in members}
        self._values: Dict[str, int] = {}
        for value, name in self._names.items():
            self._values[name] = value
            self._values[self._short(name)] = value

    def _short(self, name: str) -> str:
        return name[len(self.prefix):].lower()

    def name(self, value: int) -> str:
        """Kernel spelling; a value this table does not know (a newer kernel)
        reads ``<prefix>UNKNOWN_<value>``."""
        return self._names.get(value) or "%sUNKNOWN_%d" % (self.prefix, value)

    def short(self, value: int) -> str:
        """bpftool's spelling: ``lru_hash`` for ``BPF_MAP_TYPE_LRU_HASH``."""
        return self._short(self.name(value))

    def value(self, name: str) -> int:
        """The value of ``BPF_MAP_TYPE_HASH`` or ``hash`` (case-insensitive
        for the short form); ``KeyError`` for an unknown name."""
        found = self._values.get(name, self._values.get(name.lower()))
        if found is None:
            raise KeyError("unknown %s name %r" % (self.prefix.rstrip("_"), name))
        return found

    def __contains__(self, value: int) -> bool:
        return value in self._names

    def items(self) -> List[Tuple[int, str]]:
        """(value, kernel name) of every member, by value."""
        return sorted(self._names.items())


PROG_TYPES = EnumNames("BPF_PROG_TYPE_", "BPF_PROG_TYPE_UNSPEC", "BPF_PROG_TYPE_NETFILTER")
MAP_TYPES = EnumNames("BPF_MAP_TYPE_", "BPF_MAP_TYPE_UNSPEC", "BPF_MAP_TYPE_ARENA")
LINK_TYPES = EnumNames("BPF_LINK_TYPE_", "BPF_LINK_TYPE_UNSPEC", "BPF_LINK_TYPE_SOCKMAP")
ATTACH_TYPES = EnumNames("BPF_", "BPF_CGROUP_INET_INGRESS", "BPF_TRACE_UPROBE_SESSION")
PERF_EVENT_TYPES = EnumNames("BPF_PERF_EVENT_", "BPF_PERF_EVENT_UNSPEC", "BPF_PERF_EVENT_EVENT")

# --- BPF_MAP_UPDATE_ELEM / BPF_MAP_LOOKUP_ELEM flags ----------------------------------------
BPF_ANY = 0          # create a new element or update an existing one
BPF_NOEXIST = 1      # create a new element only if it did not exist
BPF_EXIST = 2        # update an existing element
BPF_F_LOCK = 4       # spin_lock-ed map_lookup/map_update

# --- flags of bpf_perf_event_output and bpf_get_stackid (enum in <linux/bpf.h>) ------------
BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK     # the perf event of the CPU the program runs on
BPF_F_SKIP_FIELD_MASK = 0xFF             # bpf_get_stackid: frames to skip
BPF_F_USER_STACK = 1 << 8                # the user stack, not the kernel one
BPF_F_FAST_STACK_CMP = 1 << 9            # compare stacks by hash only
BPF_F_REUSE_STACKID = 1 << 10            # a hash collision replaces the older stack
PERF_MAX_STACK_DEPTH = 127               # sysctl kernel.perf_event_max_stack's default

# --- map_flags of BPF_MAP_CREATE -----------------------------------------------------------
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3          # also BPF_OBJ_GET / GET_FD_BY_ID open flags
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12

# --- prog_flags of BPF_PROG_LOAD -----------------------------------------------------------
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5
BPF_F_XDP_DEV_BOUND_ONLY = 1 << 6

# --- log_level bits of BPF_PROG_LOAD and BPF_BTF_LOAD --------------------------------------
BPF_LOG_LEVEL1 = 1   # the instructions the verifier walks, and why it stopped
BPF_LOG_LEVEL2 = 2   # also every state at every instruction (very large)
BPF_LOG_STATS = 4    # only the statistics: insns processed, time, stack depth

#: ``struct bpf_func_info { __u32 insn_off; __u32 type_id; }``: one per
#: function of a program, in BPF_PROG_LOAD's ``func_info`` and in
#: ``bpf_prog_info``'s (``insn_off`` counts instruction slots).
BPF_FUNC_INFO = struct.Struct("=II")

#: ``struct bpf_line_info { __u32 insn_off; __u32 file_name_off; __u32
#: line_off; __u32 line_col; }``: a program's source lines, in BPF_PROG_LOAD's
#: ``line_info``; the offsets are into the program's BTF string section, and
#: ``line_col`` is ``line << 10 | column``.
BPF_LINE_INFO = struct.Struct("=IIII")
