"""Packets and bytes per protocol, counted by XDP as frames arrive.

Mirrors ``tools/clang/xdp_count.c``. ``stats`` is a per-CPU array indexed
by a protocol class (:data:`CLASSES`): ICMP, TCP and UDP over IPv4, the
rest of IPv4, IPv6, and everything else (ARP, and IPv4 frames too short
for their header). Each CPU counts packets and their frames' bytes
(Ethernet header included) in its own slot, so no atomics are needed;
userspace sums the CPUs. Every frame passes (XDP_PASS): the program only
watches.
"""

from pybpf.dsl import PerCPUArray, Struct, u32, u64, xdp
from pybpf.net import (ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, XDP_PASS,
                       EthHdr, IPv4Hdr)

CLASSES = ("other", "icmp", "tcp", "udp", "ipv4", "ipv6")
OTHER, ICMP, TCP, UDP, IPV4, IPV6 = range(len(CLASSES))


class Counter(Struct):
    packets: u64
    bytes: u64


stats = PerCPUArray(value=Counter, max_entries=len(CLASSES))


@xdp
def xdp_count(p, ctx):
    kind = p.var(u32, OTHER)
    eth = p.packet_header(ctx, EthHdr)
    with p.if_(eth):
        proto = eth.h_proto
        with p.if_(proto == ETH_P_IP):
            ip = p.packet_header(ctx, IPv4Hdr, after=eth)
            with p.if_(ip):
                protocol = ip.protocol
                with p.if_(protocol == IPPROTO_ICMP):
                    kind.set(ICMP)
                with p.elif_(protocol == IPPROTO_TCP):
                    kind.set(TCP)
                with p.elif_(protocol == IPPROTO_UDP):
                    kind.set(UDP)
                with p.else_():
                    kind.set(IPV4)
        with p.elif_(proto == ETH_P_IPV6):
            kind.set(IPV6)
    counter = stats.lookup(kind)
    with p.if_(counter):
        counter.packets += 1
        counter.bytes += ctx.len
    p.return_(XDP_PASS)
