"""Drop the UDP datagrams sent to one port, with tc, and count them.

Mirrors ``tools/clang/tc_drop_port.c``. The port is load-time config
(``load(config={"port": 5353})``); it is declared ``be16``, so it is stored
in network order and compared with the header's field as it is. IPv4
(first fragments: later ones carry no UDP header) and IPv6 without
extension headers are looked at. ``drops`` counts, per CPU, the datagrams
dropped (TC_ACT_SHOT); everything else goes on (TC_ACT_OK).
"""

from pybpf.dsl import Config, PerCPUArray, be16, tc, u64
from pybpf.net import (ETH_P_IP, ETH_P_IPV6, IP_OFFSET, IPPROTO_UDP, TC_ACT_OK, TC_ACT_SHOT,
                       EthHdr, IPv4Hdr, IPv6Hdr, UDPHdr)

settings = Config(port=be16)
drops = PerCPUArray(value=u64, max_entries=1)


def drop_if_port(p, udp):
    """Drop the packet if its UDP header ``udp`` is there and goes to the port."""
    with p.if_(udp):
        with p.if_(udp.dest == settings.port):
            count = drops.lookup(0)
            with p.if_(count):
                count[0] += 1
            p.return_(TC_ACT_SHOT)


@tc
def tc_drop_port(p, ctx):
    eth = p.packet_header(ctx, EthHdr)
    with p.if_(eth.is_null):
        p.return_(TC_ACT_OK)
    proto = eth.h_proto
    with p.if_(proto == ETH_P_IP):
        ip = p.packet_header(ctx, IPv4Hdr, after=eth)
        with p.if_(ip):
            with p.if_((ip.protocol == IPPROTO_UDP) & ((ip.frag_off & IP_OFFSET) == 0)):
                drop_if_port(p, p.packet_header(ctx, UDPHdr, after=ip))
    with p.elif_(proto == ETH_P_IPV6):
        ip6 = p.packet_header(ctx, IPv6Hdr, after=eth)
        with p.if_(ip6):
            with p.if_(ip6.nexthdr == IPPROTO_UDP):
                drop_if_port(p, p.packet_header(ctx, UDPHdr, after=ip6))
    p.return_(TC_ACT_OK)
