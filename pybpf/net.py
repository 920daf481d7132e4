"""Network headers and constants for XDP and tc programs, declared once for
both sides.

Programs read the headers from packets (``p.packet_header(ctx, IPv4Hdr,
after=eth)``, see :mod:`pybpf.dsl.packet`); userspace parses and builds
the same bytes with ``IPv4Hdr.construct()``, which is how the tests craft
packets. Layouts and field names are the kernel's: ``struct ethhdr``
(``<linux/if_ether.h>``), ``struct iphdr`` (``<linux/ip.h>``), ``struct
ipv6hdr`` (``<linux/ipv6.h>``), ``struct udphdr`` (``<linux/udp.h>``) and
``struct tcphdr`` (``<linux/tcp.h>``). Multi-byte fields are ``be16``/``be32``
(network order: compared with plain ints in programs, plain ints in
userspace); addresses other than IPv4's are byte strings. DSL structs have
no bit fields, so a byte holding two of them is one field named after both,
high bits first (``version_ihl``), and the flag bits of TCP are ``flags``.

This module is not a packet library: it has what programs that classify
traffic need, and no checksums, options or extension-header walks.

>>> udp = UDPHdr.construct().build(dict(source=1234, dest=53, len=8, check=0))
>>> udp.hex()
'04d2003500080000'
"""

from typing import Any

from .dsl import Struct, be16, be32, char, u8

# --- verdicts ---------------------------------------------------------------------------------
# enum xdp_action (include/uapi/linux/bpf.h)
XDP_ABORTED = 0
XDP_DROP = 1
XDP_PASS = 2
XDP_TX = 3
XDP_REDIRECT = 4

# tc direct-action verdicts (include/uapi/linux/pkt_cls.h); tcx links take the same values
TC_ACT_UNSPEC = -1
TC_ACT_OK = 0
TC_ACT_RECLASSIFY = 1
TC_ACT_SHOT = 2
TC_ACT_PIPE = 3
TC_ACT_STOLEN = 4
TC_ACT_QUEUED = 5
TC_ACT_REPEAT = 6
TC_ACT_REDIRECT = 7

# --- protocols --------------------------------------------------------------------------------
# Ethernet frame types (include/uapi/linux/if_ether.h)
ETH_ALEN = 6
ETH_HLEN = 14
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD

# IP protocols (include/uapi/linux/in.h, in6.h)
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

# iphdr.frag_off (include/net/ip.h)
IP_MF = 0x2000
IP_OFFSET = 0x1FFF

# tcphdr.flags bits (BSD <netinet/tcp.h> spelling; Linux has them as bit fields)
TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20
TH_ECE = 0x40
TH_CWR = 0x80


# --- headers ----------------------------------------------------------------------------------

class EthHdr(Struct):
    """``struct ethhdr``: 14 bytes."""
    h_dest: char[ETH_ALEN]
    h_source: char[ETH_ALEN]
    h_proto: be16


class IPv4Hdr(Struct):
    """``struct iphdr``: 20 bytes without options. ``version_ihl`` is
    version (high nibble) and IHL, the header's length in 32-bit words."""
    version_ihl: u8
    tos: u8
    tot_len: be16
    id: be16
    frag_off: be16
    ttl: u8
    protocol: u8
    check: be16
    saddr: be32
    daddr: be32

    @staticmethod
    def header_length(ip: Any) -> Any:
        """IHL * 4: where the next header starts, options included (a
        malformed IHL below 5 is the program's to reject)."""
        return (ip.version_ihl & 0x0F) << 2


class IPv6Hdr(Struct):
    """``struct ipv6hdr``: 40 bytes; ``after=`` an IPv6Hdr is the fixed
    header's end (extension headers are not walked)."""
    version_priority: u8
    flow_lbl: char[3]
    payload_len: be16
    nexthdr: u8
    hop_limit: u8
    saddr: char[16]
    daddr: char[16]


class UDPHdr(Struct):
    """``struct udphdr``: 8 bytes."""
    source: be16
    dest: be16
    len: be16
    check: be16


class TCPHdr(Struct):
    """``struct tcphdr``: 20 bytes without options. ``doff_res`` is the
    data offset (high nibble, in 32-bit words) and reserved bits;
    ``flags`` holds the TH_* bits."""
    source: be16
    dest: be16
    seq: be32
    ack_seq: be32
    doff_res: u8
    flags: u8
    window: be16
    check: be16
    urg_ptr: be16

    @staticmethod
    def header_length(tcp: Any) -> Any:
        """The data offset * 4: where the payload starts, options included."""
        return (tcp.doff_res >> 4) << 2
