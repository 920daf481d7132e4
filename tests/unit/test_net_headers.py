"""``pybpf.net``: header layouts as the kernel declares them, and their
userspace parsers and builders (big-endian fields, host-order ints)."""

import ipaddress
import socket
import struct

import pytest

from pybpf import net
from pybpf.dsl import offsetof, sizeof
from pybpf.net import EthHdr, IPv4Hdr, IPv6Hdr, TCPHdr, UDPHdr


def common(format_, data, obj, size):
    """parse, build and size in one assertion (construct's test idiom)."""
    assert format_.parse(data) == obj
    assert format_.build(obj) == data
    assert format_.sizeof() == size


# offsetof() in the kernel's struct ethhdr, iphdr, ipv6hdr, udphdr, tcphdr
LAYOUTS = {
    EthHdr: (14, {"h_dest": 0, "h_source": 6, "h_proto": 12}),
    IPv4Hdr: (20, {"version_ihl": 0, "tos": 1, "tot_len": 2, "id": 4, "frag_off": 6, "ttl": 8,
                   "protocol": 9, "check": 10, "saddr": 12, "daddr": 16}),
    IPv6Hdr: (40, {"version_priority": 0, "flow_lbl": 1, "payload_len": 4, "nexthdr": 6,
                   "hop_limit": 7, "saddr": 8, "daddr": 24}),
    UDPHdr: (8, {"source": 0, "dest": 2, "len": 4, "check": 6}),
    TCPHdr: (20, {"source": 0, "dest": 2, "seq": 4, "ack_seq": 8, "doff_res": 12, "flags": 13,
                  "window": 14, "check": 16, "urg_ptr": 18}),
}


@pytest.mark.parametrize("header", list(LAYOUTS), ids=lambda h: h.__name__)
def test_layout_is_the_kernels(header):
    size, offsets = LAYOUTS[header]
    assert sizeof(header) == size
    assert {name: offsetof(header, name) for name in offsets} == offsets
    assert list(header.layout.fields) == list(offsets)


def test_ethernet_round_trip():
    data = bytes.fromhex("ffffffffffff" "020000000001" "0806")
    common(EthHdr.construct(), data,
           dict(h_dest=b"\xff" * 6, h_source=bytes.fromhex("020000000001"), h_proto=0x0806), 14)


def test_ipv4_fields_are_network_order():
    data = bytes.fromhex("4500 0054 1234 4000 4001 b1e6 c0000201 c0000202")
    ip = IPv4Hdr.construct().parse(data)
    assert (ip.version_ihl, ip.tot_len, ip.id, ip.frag_off) == (0x45, 84, 0x1234, 0x4000)
    assert (ip.ttl, ip.protocol, ip.check) == (64, net.IPPROTO_ICMP, 0xB1E6)
    assert ipaddress.IPv4Address(ip.saddr) == ipaddress.IPv4Address("192.0.2.1")
    assert IPv4Hdr.construct().build(ip) == data


def test_ipv6_addresses_are_bytes():
    source = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    dest = socket.inet_pton(socket.AF_INET6, "2001:db8::2")
    fields = dict(version_priority=0x60, flow_lbl=b"\x00\x00\x00", payload_len=8,
                  nexthdr=net.IPPROTO_UDP, hop_limit=64, saddr=source, daddr=dest)
    data = bytes.fromhex("6000000000081140") + source + dest
    common(IPv6Hdr.construct(), data, fields, 40)


def test_udp_and_tcp_ports():
    common(UDPHdr.construct(), struct.pack("!HHHH", 1234, 53, 8, 0),
           dict(source=1234, dest=53, len=8, check=0), 8)
    tcp = dict(source=40000, dest=443, seq=1, ack_seq=0, doff_res=5 << 4,
               flags=net.TH_SYN | net.TH_ACK, window=65535, check=0, urg_ptr=0)
    common(TCPHdr.construct(), struct.pack("!HHIIBBHHH", 40000, 443, 1, 0, 0x50, 0x12, 65535,
                                           0, 0), tcp, 20)


def test_constants_are_the_kernels():
    assert (net.ETH_P_IP, net.ETH_P_IPV6, net.ETH_P_ARP) == (0x0800, 0x86DD, 0x0806)
    assert (net.IPPROTO_ICMP, net.IPPROTO_TCP, net.IPPROTO_UDP) == (1, 6, 17)
    assert (net.XDP_ABORTED, net.XDP_DROP, net.XDP_PASS, net.XDP_TX) == (0, 1, 2, 3)
    assert (net.TC_ACT_UNSPEC, net.TC_ACT_OK, net.TC_ACT_SHOT) == (-1, 0, 2)
    assert net.ETH_HLEN == sizeof(EthHdr)
