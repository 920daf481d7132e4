"""Program section names -> program type, expected attach type and flags,
matched as libbpf matches them (``section_defs`` and ``sec_def_matches`` in
libbpf.c).

A definition ending in ``+`` matches its name exactly or followed by ``/``
and anything (``tp+`` takes ``tp`` and ``tp/syscalls/sys_enter_openat``, not
``tpx``); one ending in ``/`` takes that prefix and anything after it; any
other matches only itself. The first definition that matches wins, so the
table keeps libbpf's order (``sk_reuseport/migrate`` before ``sk_reuseport``,
``xdp.frags/devmap`` before ``xdp``). libbpf 1.0 dropped the old "sloppy"
prefix matching (``SEC_SLOPPY_PFX``, where ``xdp_foo`` was an XDP program);
so do we: such a section is not a program libbpf would load.
"""

from typing import NamedTuple, Optional

from .. import consts as c

# Flags of a definition (libbpf's SEC_* bits, those that change loading).
SEC_SLEEPABLE = 1          # prog_flags |= BPF_F_SLEEPABLE
SEC_XDP_FRAGS = 2          # prog_flags |= BPF_F_XDP_HAS_FRAGS
SEC_ATTACH_BTF = 4         # the text after '/' names a BTF function: attach_btf_id


class SectionDef(NamedTuple):
    """What a section name says about its programs."""

    pattern: str
    prog_type: int
    expected_attach_type: int
    flags: int

    def matches(self, name: str) -> bool:
        """Whether section ``name`` matches this definition, as libbpf decides."""
        pattern = self.pattern
        if pattern.endswith("/"):
            return name.startswith(pattern)
        if pattern.endswith("+"):
            stem = pattern[:-1]
            return name == stem or name.startswith(stem + "/")
        return name == pattern

    @property
    def prog_flags(self) -> int:
        """The ``BPF_PROG_LOAD`` flags this definition asks for."""
        return ((c.BPF_F_SLEEPABLE if self.flags & SEC_SLEEPABLE else 0)
                | (c.BPF_F_XDP_HAS_FRAGS if self.flags & SEC_XDP_FRAGS else 0))

    def attach_target(self, section: str) -> str:
        """What follows the definition's name and its '/' (``syscalls/sys_enter_openat``
        of ``tp/syscalls/sys_enter_openat``), or ``""``."""
        stem = self.pattern.rstrip("+")
        if stem.endswith("/"):
            return section[len(stem):]
        return section[len(stem) + 1:] if section.startswith(stem + "/") else ""


def _defs(*rows: tuple) -> tuple:
    return tuple(SectionDef(*row) for row in rows)


_S, _F, _B = SEC_SLEEPABLE, SEC_XDP_FRAGS, SEC_ATTACH_BTF

SECTION_DEFS = _defs(
    ("socket", c.BPF_PROG_TYPE_SOCKET_FILTER, 0, 0),
    ("sk_reuseport/migrate", c.BPF_PROG_TYPE_SK_REUSEPORT,
     c.BPF_SK_REUSEPORT_SELECT_OR_MIGRATE, 0),
    ("sk_reuseport", c.BPF_PROG_TYPE_SK_REUSEPORT, c.BPF_SK_REUSEPORT_SELECT, 0),
    ("kprobe+", c.BPF_PROG_TYPE_KPROBE, 0, 0),
    ("uprobe+", c.BPF_PROG_TYPE_KPROBE, 0, 0),
    ("uprobe.s+", c.BPF_PROG_TYPE_KPROBE, 0, _S),
    ("kretprobe+", c.BPF_PROG_TYPE_KPROBE, 0, 0),
    ("uretprobe+", c.BPF_PROG_TYPE_KPROBE, 0, 0),
    ("uretprobe.s+", c.BPF_PROG_TYPE_KPROBE, 0, _S),
    ("kprobe.multi+", c.BPF_PROG_TYPE_KPROBE, c.BPF_TRACE_KPROBE_MULTI, 0),
    ("kretprobe.multi+", c.BPF_PROG_TYPE_KPROBE, c.BPF_TRACE_KPROBE_MULTI, 0),
    ("kprobe.session+", c.BPF_PROG_TYPE_KPROBE, c.BPF_TRACE_KPROBE_SESSION, 0),
    ("uprobe.multi+", c.BPF_PROG_TYPE_KPROBE, c.BPF_TRACE_UPROBE_MULTI, 0),
    ("uretprobe.multi+", c.BPF_PROG_TYPE_KPROBE, c.BPF_TRACE_UPROBE_MULTI, 0),
    ("uprobe.session+", c.BPF_PROG_TYPE_KPROBE, c.BPF_TRACE_UPROBE_SESSION, 0),
    ("uprobe.multi.s+", c.BPF_PROG_TYPE_KPROBE, c.BPF_TRACE_UPROBE_MULTI, _S),
    ("uretprobe.multi.s+", c.BPF_PROG_TYPE_KPROBE, c.BPF_TRACE_UPROBE_MULTI, _S),
    ("uprobe.session.s+", c.BPF_PROG_TYPE_KPROBE, c.BPF_TRACE_UPROBE_SESSION, _S),
    ("ksyscall+", c.BPF_PROG_TYPE_KPROBE, 0, 0),
    ("kretsyscall+", c.BPF_PROG_TYPE_KPROBE, 0, 0),
    ("usdt+", c.BPF_PROG_TYPE_KPROBE, 0, 0),
    ("usdt.s+", c.BPF_PROG_TYPE_KPROBE, 0, _S),
    ("tc/ingress", c.BPF_PROG_TYPE_SCHED_CLS, c.BPF_TCX_INGRESS, 0),
    ("tc/egress", c.BPF_PROG_TYPE_SCHED_CLS, c.BPF_TCX_EGRESS, 0),
    ("tcx/ingress", c.BPF_PROG_TYPE_SCHED_CLS, c.BPF_TCX_INGRESS, 0),
    ("tcx/egress", c.BPF_PROG_TYPE_SCHED_CLS, c.BPF_TCX_EGRESS, 0),
    ("tc", c.BPF_PROG_TYPE_SCHED_CLS, 0, 0),
    ("classifier", c.BPF_PROG_TYPE_SCHED_CLS, 0, 0),
    ("action", c.BPF_PROG_TYPE_SCHED_ACT, 0, 0),
    ("netkit/primary", c.BPF_PROG_TYPE_SCHED_CLS, c.BPF_NETKIT_PRIMARY, 0),
    ("netkit/peer", c.BPF_PROG_TYPE_SCHED_CLS, c.BPF_NETKIT_PEER, 0),
    ("tracepoint+", c.BPF_PROG_TYPE_TRACEPOINT, 0, 0),
    ("tp+", c.BPF_PROG_TYPE_TRACEPOINT, 0, 0),
    ("tracepoint.s+", c.BPF_PROG_TYPE_TRACEPOINT, 0, _S),
    ("tp.s+", c.BPF_PROG_TYPE_TRACEPOINT, 0, _S),
    ("raw_tracepoint+", c.BPF_PROG_TYPE_RAW_TRACEPOINT, 0, 0),
    ("raw_tp+", c.BPF_PROG_TYPE_RAW_TRACEPOINT, 0, 0),
    ("raw_tracepoint.s+", c.BPF_PROG_TYPE_RAW_TRACEPOINT, 0, _S),
    ("raw_tp.s+", c.BPF_PROG_TYPE_RAW_TRACEPOINT, 0, _S),
    ("raw_tracepoint.w+", c.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, 0, 0),
    ("raw_tp.w+", c.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, 0, 0),
    ("tp_btf+", c.BPF_PROG_TYPE_TRACING, c.BPF_TRACE_RAW_TP, _B),
    ("tp_btf.s+", c.BPF_PROG_TYPE_TRACING, c.BPF_TRACE_RAW_TP, _B | _S),
    ("fentry+", c.BPF_PROG_TYPE_TRACING, c.BPF_TRACE_FENTRY, _B),
    ("fmod_ret+", c.BPF_PROG_TYPE_TRACING, c.BPF_MODIFY_RETURN, _B),
    ("fexit+", c.BPF_PROG_TYPE_TRACING, c.BPF_TRACE_FEXIT, _B),
    ("fentry.s+", c.BPF_PROG_TYPE_TRACING, c.BPF_TRACE_FENTRY, _B | _S),
    ("fmod_ret.s+", c.BPF_PROG_TYPE_TRACING, c.BPF_MODIFY_RETURN, _B | _S),
    ("fexit.s+", c.BPF_PROG_TYPE_TRACING, c.BPF_TRACE_FEXIT, _B | _S),
    ("freplace+", c.BPF_PROG_TYPE_EXT, 0, _B),
    ("lsm+", c.BPF_PROG_TYPE_LSM, c.BPF_LSM_MAC, _B),
    ("lsm.s+", c.BPF_PROG_TYPE_LSM, c.BPF_LSM_MAC, _B | _S),
    ("lsm_cgroup+", c.BPF_PROG_TYPE_LSM, c.BPF_LSM_CGROUP, _B),
    ("iter+", c.BPF_PROG_TYPE_TRACING, c.BPF_TRACE_ITER, _B),
    ("iter.s+", c.BPF_PROG_TYPE_TRACING, c.BPF_TRACE_ITER, _B | _S),
    ("syscall", c.BPF_PROG_TYPE_SYSCALL, 0, _S),
    ("xdp.frags/devmap", c.BPF_PROG_TYPE_XDP, c.BPF_XDP_DEVMAP, _F),
    ("xdp/devmap", c.BPF_PROG_TYPE_XDP, c.BPF_XDP_DEVMAP, 0),
    ("xdp.frags/cpumap", c.BPF_PROG_TYPE_XDP, c.BPF_XDP_CPUMAP, _F),
    ("xdp/cpumap", c.BPF_PROG_TYPE_XDP, c.BPF_XDP_CPUMAP, 0),
    ("xdp.frags", c.BPF_PROG_TYPE_XDP, c.BPF_XDP, _F),
    ("xdp", c.BPF_PROG_TYPE_XDP, c.BPF_XDP, 0),
    ("perf_event", c.BPF_PROG_TYPE_PERF_EVENT, 0, 0),
    ("lwt_in", c.BPF_PROG_TYPE_LWT_IN, 0, 0),
    ("lwt_out", c.BPF_PROG_TYPE_LWT_OUT, 0, 0),
    ("lwt_xmit", c.BPF_PROG_TYPE_LWT_XMIT, 0, 0),
    ("lwt_seg6local", c.BPF_PROG_TYPE_LWT_SEG6LOCAL, 0, 0),
    ("sockops", c.BPF_PROG_TYPE_SOCK_OPS, c.BPF_CGROUP_SOCK_OPS, 0),
    ("sk_skb/stream_parser", c.BPF_PROG_TYPE_SK_SKB, c.BPF_SK_SKB_STREAM_PARSER, 0),
    ("sk_skb/stream_verdict", c.BPF_PROG_TYPE_SK_SKB, c.BPF_SK_SKB_STREAM_VERDICT, 0),
    ("sk_skb/verdict", c.BPF_PROG_TYPE_SK_SKB, c.BPF_SK_SKB_VERDICT, 0),
    ("sk_skb", c.BPF_PROG_TYPE_SK_SKB, 0, 0),
    ("sk_msg", c.BPF_PROG_TYPE_SK_MSG, c.BPF_SK_MSG_VERDICT, 0),
    ("lirc_mode2", c.BPF_PROG_TYPE_LIRC_MODE2, c.BPF_LIRC_MODE2, 0),
    ("flow_dissector", c.BPF_PROG_TYPE_FLOW_DISSECTOR, c.BPF_FLOW_DISSECTOR, 0),
    ("cgroup_skb/ingress", c.BPF_PROG_TYPE_CGROUP_SKB, c.BPF_CGROUP_INET_INGRESS, 0),
    ("cgroup_skb/egress", c.BPF_PROG_TYPE_CGROUP_SKB, c.BPF_CGROUP_INET_EGRESS, 0),
    ("cgroup/skb", c.BPF_PROG_TYPE_CGROUP_SKB, 0, 0),
    ("cgroup/sock_create", c.BPF_PROG_TYPE_CGROUP_SOCK, c.BPF_CGROUP_INET_SOCK_CREATE, 0),
    ("cgroup/sock_release", c.BPF_PROG_TYPE_CGROUP_SOCK, c.BPF_CGROUP_INET_SOCK_RELEASE, 0),
    ("cgroup/sock", c.BPF_PROG_TYPE_CGROUP_SOCK, c.BPF_CGROUP_INET_SOCK_CREATE, 0),
    ("cgroup/post_bind4", c.BPF_PROG_TYPE_CGROUP_SOCK, c.BPF_CGROUP_INET4_POST_BIND, 0),
    ("cgroup/post_bind6", c.BPF_PROG_TYPE_CGROUP_SOCK, c.BPF_CGROUP_INET6_POST_BIND, 0),
    ("cgroup/bind4", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_INET4_BIND, 0),
    ("cgroup/bind6", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_INET6_BIND, 0),
    ("cgroup/connect4", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_INET4_CONNECT, 0),
    ("cgroup/connect6", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_INET6_CONNECT, 0),
    ("cgroup/connect_unix", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_UNIX_CONNECT, 0),
    ("cgroup/sendmsg4", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_UDP4_SENDMSG, 0),
    ("cgroup/sendmsg6", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_UDP6_SENDMSG, 0),
    ("cgroup/sendmsg_unix", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_UNIX_SENDMSG, 0),
    ("cgroup/recvmsg4", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_UDP4_RECVMSG, 0),
    ("cgroup/recvmsg6", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_UDP6_RECVMSG, 0),
    ("cgroup/recvmsg_unix", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_CGROUP_UNIX_RECVMSG, 0),
    ("cgroup/getpeername4", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
     c.BPF_CGROUP_INET4_GETPEERNAME, 0),
    ("cgroup/getpeername6", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
     c.BPF_CGROUP_INET6_GETPEERNAME, 0),
    ("cgroup/getpeername_unix", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
     c.BPF_CGROUP_UNIX_GETPEERNAME, 0),
    ("cgroup/getsockname4", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
     c.BPF_CGROUP_INET4_GETSOCKNAME, 0),
    ("cgroup/getsockname6", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
     c.BPF_CGROUP_INET6_GETSOCKNAME, 0),
    ("cgroup/getsockname_unix", c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
     c.BPF_CGROUP_UNIX_GETSOCKNAME, 0),
    ("cgroup/sysctl", c.BPF_PROG_TYPE_CGROUP_SYSCTL, c.BPF_CGROUP_SYSCTL, 0),
    ("cgroup/getsockopt", c.BPF_PROG_TYPE_CGROUP_SOCKOPT, c.BPF_CGROUP_GETSOCKOPT, 0),
    ("cgroup/setsockopt", c.BPF_PROG_TYPE_CGROUP_SOCKOPT, c.BPF_CGROUP_SETSOCKOPT, 0),
    ("cgroup/dev", c.BPF_PROG_TYPE_CGROUP_DEVICE, c.BPF_CGROUP_DEVICE, 0),
    ("struct_ops+", c.BPF_PROG_TYPE_STRUCT_OPS, 0, 0),
    ("struct_ops.s+", c.BPF_PROG_TYPE_STRUCT_OPS, 0, _S),
    ("sk_lookup", c.BPF_PROG_TYPE_SK_LOOKUP, c.BPF_SK_LOOKUP, 0),
    ("netfilter", c.BPF_PROG_TYPE_NETFILTER, c.BPF_NETFILTER, 0),
)


def find_section_def(name: str) -> Optional[SectionDef]:
    """The first definition that matches section ``name``, or ``None``."""
    return next((d for d in SECTION_DEFS if d.matches(name)), None)
