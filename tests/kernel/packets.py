"""Crafted packets for the network program tests, built with the construct
parsers of ``pybpf.net``'s headers (the same declarations the programs
read), and the counters of ``programs/xdp_count.py`` summed over CPUs.

Checksums are left zero: neither XDP nor tc test runs verify them, and the
programs under test do not look at them.
"""

from typing import Dict, Tuple

from pybpf.net import (ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
                       EthHdr, IPv4Hdr, IPv6Hdr, TCPHdr, UDPHdr)

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
IP_A, IP_B = 0xC0000201, 0xC0000202          # 192.0.2.1, 192.0.2.2 (TEST-NET-1)
IP6_A = bytes.fromhex("20010db8000000000000000000000001")
IP6_B = bytes.fromhex("20010db8000000000000000000000002")


def ethernet(proto: int, payload: bytes) -> bytes:
    return EthHdr.construct().build(dict(h_dest=MAC_B, h_source=MAC_A, h_proto=proto)) + payload


def ipv4(protocol: int, payload: bytes, *, options: bytes = b"", frag_off: int = 0) -> bytes:
    """An Ethernet frame with an IPv4 packet; ``options`` (a multiple of 4
    bytes) make the IHL larger than 5."""
    ihl = 5 + len(options) // 4
    header = IPv4Hdr.construct().build(dict(
        version_ihl=0x40 | ihl, tos=0, tot_len=ihl * 4 + len(payload), id=1,
        frag_off=frag_off, ttl=64, protocol=protocol, check=0, saddr=IP_A, daddr=IP_B))
    return ethernet(ETH_P_IP, header + options + payload)


def ipv6(nexthdr: int, payload: bytes) -> bytes:
    header = IPv6Hdr.construct().build(dict(
        version_priority=0x60, flow_lbl=bytes(3), payload_len=len(payload), nexthdr=nexthdr,
        hop_limit=64, saddr=IP6_A, daddr=IP6_B))
    return ethernet(ETH_P_IPV6, header + payload)


def udp(dest: int, data: bytes = b"ping", source: int = 40000) -> bytes:
    """A UDP header and ``data``, to go inside ipv4() or ipv6()."""
    return UDPHdr.construct().build(dict(source=source, dest=dest, len=8 + len(data),
                                         check=0)) + data


def tcp(dest: int, source: int = 40000) -> bytes:
    return TCPHdr.construct().build(dict(source=source, dest=dest, seq=1, ack_seq=0,
                                         doff_res=5 << 4, flags=0x02, window=1024, check=0,
                                         urg_ptr=0))


def icmp_echo() -> bytes:
    return bytes([8, 0, 0, 0, 0, 1, 0, 1]) + bytes(56)   # type 8: echo request


def arp() -> bytes:
    return ethernet(ETH_P_ARP, bytes(28))


def udp4(dest: int) -> bytes:
    return ipv4(IPPROTO_UDP, udp(dest))


def tcp4(dest: int) -> bytes:
    return ipv4(IPPROTO_TCP, tcp(dest))


def icmp4() -> bytes:
    return ipv4(IPPROTO_ICMP, icmp_echo())


def totals(stats) -> Dict[int, Tuple[int, int]]:
    """xdp_count's ``stats`` as {class: (packets, bytes)}, summed over CPUs."""
    return {kind: (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
            for kind, per_cpu in stats.items()}
