"""The network programs run on crafted packets with BPF_PROG_TEST_RUN: no
interface, just packets in and verdicts and counters out. The packets are
built from ``pybpf.net``'s declarations (``packets.py``)."""

import pytest
from packets import arp, icmp4, ipv4, ipv6, tcp4, udp, udp4, totals

import pybpf.programs.tc_drop_port as tc_drop_port
import pybpf.programs.xdp_count as xdp_count
from pybpf.dsl import collection_spec, xdp
from pybpf.dsl.packet import SkBuff, XdpMd
from pybpf.errors import ProgramTypeError
from pybpf.kernel.btf import vmlinux
from pybpf.loader import Collection
from pybpf.net import IP_MF, IPPROTO_TCP, IPPROTO_UDP, TC_ACT_OK, TC_ACT_SHOT, XDP_PASS

PORT = 5353



@pytest.mark.parametrize("declared, kernel", [(XdpMd, "xdp_md"), (SkBuff, "__sk_buff")])
def test_context_layouts_match_the_kernels_btf(declared, kernel):
    btf = vmlinux()
    for name, field in declared.layout.fields.items():
        resolved = btf.resolve("%s.%s" % (kernel, name))
        assert (resolved.offset, resolved.size) == (field.offset, field.type.size), name


# --- xdp_count --------------------------------------------------------------------------------

def test_xdp_count_classifies_and_counts_bytes(no_leaks):
    frames = {
        xdp_count.ICMP: [icmp4()],
        xdp_count.TCP: [tcp4(80), tcp4(443)],
        xdp_count.UDP: [udp4(53), ipv4(IPPROTO_UDP, udp(53), options=bytes(8))],
        xdp_count.IPV4: [ipv4(47, bytes(24))],                       # GRE
        xdp_count.IPV6: [ipv6(IPPROTO_UDP, udp(53)), ipv6(IPPROTO_TCP, bytes(20))],
        xdp_count.OTHER: [arp(), udp4(53)[:14 + 19]],                # ARP; IPv4 cut short
    }
    with Collection(collection_spec(xdp_count)) as loaded:
        program = loaded.programs["xdp_count"]
        for kind_frames in frames.values():
            for frame in kind_frames:
                result = program.test_run(frame)
                assert result.retval == XDP_PASS
                assert result.data_out == frame
        assert totals(loaded.maps.stats) == {
            kind: (len(kind_frames), sum(len(f) for f in kind_frames))
            for kind, kind_frames in frames.items()}


def test_xdp_count_counts_every_run(no_leaks):
    frame = udp4(53)
    with Collection(collection_spec(xdp_count)) as loaded:
        loaded.programs["xdp_count"].test_run(frame, repeat=100)
        assert totals(loaded.maps.stats)[xdp_count.UDP] == (100, 100 * len(frame))


# --- tc_drop_port -----------------------------------------------------------------------------

VERDICTS = [
    ("UDP to the port", udp4(PORT), TC_ACT_SHOT),
    ("UDP to another port", udp4(PORT + 1), TC_ACT_OK),
    ("UDP from the port", ipv4(IPPROTO_UDP, udp(53, source=PORT)), TC_ACT_OK),
    ("TCP to the port", tcp4(PORT), TC_ACT_OK),
    ("IPv4 options, UDP to the port", ipv4(IPPROTO_UDP, udp(PORT), options=bytes(12)),
     TC_ACT_SHOT),
    ("first fragment", ipv4(IPPROTO_UDP, udp(PORT), frag_off=IP_MF), TC_ACT_SHOT),
    ("later fragment", ipv4(IPPROTO_UDP, udp(PORT), frag_off=185), TC_ACT_OK),
    ("IPv6, UDP to the port", ipv6(IPPROTO_UDP, udp(PORT)), TC_ACT_SHOT),
    ("IPv6, UDP to another port", ipv6(IPPROTO_UDP, udp(53)), TC_ACT_OK),
    ("UDP header cut short", udp4(PORT)[:14 + 20 + 6], TC_ACT_OK),
    ("ARP", arp(), TC_ACT_OK),
    ("ICMP", icmp4(), TC_ACT_OK),
]


def test_tc_drop_port_drops_exactly_udp_to_the_port(no_leaks):
    with Collection(collection_spec(tc_drop_port), config={"port": PORT}) as loaded:
        program = loaded.programs["tc_drop_port"]
        verdicts = {name: program.test_run(packet).retval for name, packet, _ in VERDICTS}
        assert verdicts == {name: verdict for name, _, verdict in VERDICTS}
        dropped = sum(1 for _, _, verdict in VERDICTS if verdict == TC_ACT_SHOT)
        assert sum(loaded.maps.drops[0]) == dropped


def test_tc_drop_port_follows_its_config(no_leaks):
    with Collection(collection_spec(tc_drop_port), config={"port": 53}) as loaded:
        program = loaded.programs["tc_drop_port"]
        assert program.test_run(udp4(53)).retval == TC_ACT_SHOT
        assert program.test_run(udp4(PORT)).retval == TC_ACT_OK
        assert loaded.maps.settings[0].port == 53


def test_attach_refuses_network_programs_by_name(no_leaks):
    @xdp
    def watch(p, ctx):
        p.return_(XDP_PASS)
    with Collection(collection_spec([watch])) as collection:
        with pytest.raises(ProgramTypeError, match=r"watch attaches to a network interface, "
                                                   r"not a tracepoint: use attach_xdp\(interface\)"):
            collection.attach("watch")
