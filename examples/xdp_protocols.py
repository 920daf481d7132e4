"""Packets per IP protocol on an interface, counted by XDP as frames arrive
(``python3 -m pybpf.examples.xdp_protocols --interface eth0``). Every
frame passes; each CPU counts in its own slot and userspace sums them."""

import argparse
import sys

from pybpf.dsl import PerCPUArray, u64, xdp
from pybpf.net import ETH_P_IP, XDP_PASS, EthHdr, IPv4Hdr

from .run import main

by_protocol = PerCPUArray(value=u64, max_entries=256)         # indexed by IPPROTO_*


@xdp
def count_protocols(p, ctx):
    eth = p.packet_header(ctx, EthHdr)
    with p.if_(eth):
        with p.if_(eth.h_proto == ETH_P_IP):
            ip = p.packet_header(ctx, IPv4Hdr, after=eth)
            with p.if_(ip):
                count = by_protocol.lookup(ip.protocol)
                with p.if_(count):
                    count[0] += 1
    p.return_(XDP_PASS)


def report(loaded) -> str:
    """``PROTOCOL PACKETS`` for each protocol seen."""
    names = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
    return "".join("%-8s %10d\n" % (names.get(proto, str(proto)), sum(per_cpu))
                   for proto, per_cpu in loaded.maps.by_protocol.items() if sum(per_cpu))


if __name__ == "__main__":
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--interface", default="lo")
    interface = options.parse_known_args()[0].interface
    main(sys.modules[__name__], report, attach=lambda loaded: loaded.attach_xdp(interface))
