"""Packet programs in the DSL: headers checked against ``data_end`` by the
``if`` around their use, network byte order by type, and the mistakes the
verifier would reject found at build time, naming the line."""

import pytest

from pybpf import isa
from pybpf.dsl import (Config, HashMap, ProgramBuildError, be16, be32, tc, u16, u32,
                       u64, xdp)
from pybpf.net import (ETH_P_IP, IP_OFFSET, IPPROTO_TCP, IPPROTO_UDP, TC_ACT_OK, XDP_DROP,
                       XDP_PASS, EthHdr, IPv4Hdr, TCPHdr, UDPHdr)

from dsl_helpers import build, build_error, has

JMP = isa.BPF_JMP
JMP32 = isa.BPF_JMP32
LDX_H = isa.BPF_LDX | isa.BPF_MEM | isa.BPF_H
LDX_W = isa.BPF_LDX | isa.BPF_MEM | isa.BPF_W
TO_BE = isa.BPF_ALU | isa.BPF_END | isa.BPF_TO_BE
ports = HashMap(key=be16, value=u64, max_entries=16)
settings = Config(port=be16)


def xdp_program(body):
    @xdp
    def prog(p, ctx):
        body(p, ctx)
        p.return_(XDP_PASS)
    return prog.build()


def test_context_pointers_are_32_bit_loads_at_the_uapi_offsets():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth.is_null):
            p.return_(XDP_DROP)

    code = xdp_program(body)
    assert has(code, LDX_W, src=1, off=0) and has(code, LDX_W, src=1, off=4)

    @tc
    def prog(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            p.return_(ctx.len)
        p.return_(TC_ACT_OK)
    code = prog.build()
    assert has(code, LDX_W, src=1, off=76) and has(code, LDX_W, src=1, off=80)
    assert has(code, LDX_W, src=1, off=0)   # skb->len


def test_the_check_is_a_64_bit_compare_of_the_header_end_with_data_end():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            p.return_(eth.h_proto)

    code = xdp_program(body)
    add = [i for i in code.instructions if i.opcode == isa.BPF_ALU64 | isa.BPF_ADD | isa.BPF_K]
    assert [i.imm for i in add] == [14]
    assert any(i.opcode == JMP | isa.BPF_JGT | isa.BPF_X for i in code.instructions)
    assert has(code, LDX_H, off=12)


def test_a_header_after_a_fixed_one_is_read_at_a_constant_offset():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            udp = p.packet_header(ctx, UDPHdr, after=eth)
            with p.if_(udp):
                p.return_(udp.dest)

    code = xdp_program(body)
    assert has(code, LDX_H, off=14 + 2)
    add = [i.imm for i in code.instructions if i.opcode == isa.BPF_ALU64 | isa.BPF_ADD | isa.BPF_K]
    assert add == [14, 22]


def test_after_an_ipv4_header_uses_its_ihl():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            ip = p.packet_header(ctx, IPv4Hdr, after=eth)
            with p.if_(ip):
                udp = p.packet_header(ctx, UDPHdr, after=ip)
                with p.if_(udp):
                    p.return_(udp.dest)

    code = xdp_program(body)
    assert has(code, isa.BPF_ALU | isa.BPF_AND | isa.BPF_K, imm=0x0F)
    assert has(code, isa.BPF_ALU | isa.BPF_LSH | isa.BPF_K, imm=2)
    assert has(code, LDX_H, off=2)   # udp->dest from the computed pointer


def test_reading_an_unchecked_header_is_a_build_error():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        p.return_(eth.h_proto)  # error: unchecked
    with build_error("unchecked", match="the EthHdr header may extend past the end of the "
                                        "packet here: check it first"):
        xdp_program(body)


def test_checking_the_ethernet_header_does_not_prove_the_next():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            ip = p.packet_header(ctx, IPv4Hdr, after=eth)
            p.return_(ip.protocol)  # error: next
    with build_error("next", match="the IPv4Hdr header may extend past the end"):
        xdp_program(body)


def test_a_header_is_proven_only_inside_its_check():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            p.var(be16, eth.h_proto)
        p.var(be16, eth.h_proto)  # error: outside
    with build_error("outside", match="may extend past the end"):
        xdp_program(body)


def test_early_return_proves_the_rest():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth.is_null):
            p.return_(XDP_DROP)
        with p.if_(eth.h_proto == ETH_P_IP):
            p.return_(XDP_DROP)
    xdp_program(body)


def test_variable_length_needs_the_header_it_reads():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            ip = p.packet_header(ctx, IPv4Hdr, after=eth)
            p.packet_header(ctx, TCPHdr, after=ip)  # error: ihl
    with build_error("ihl", match="the IPv4Hdr header may extend past"):
        xdp_program(body)


def test_a_header_is_not_compared_with_null():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth != 0):  # error: null
            pass
    with build_error("null", match="checked against the end of the packet"):
        xdp_program(body)


def test_packet_header_needs_a_packet_context():
    def body(p, ctx):
        p.packet_header(ctx, EthHdr)  # error: ctx
    with build_error("ctx", match="takes the ctx of an @xdp or @tc program"):
        build(body)


def test_falling_off_the_end_of_a_packet_program_is_a_build_error():
    @xdp
    def prog(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            p.return_(XDP_PASS)  # error: end
    with build_error("end", match="prog can reach its end without returning a verdict"):
        prog.build()


def test_context_fields():
    @tc
    def prog(p, ctx):
        with p.if_(ctx.protocol == ETH_P_IP):   # a be16 in a 32-bit slot
            p.return_(ctx.ifindex)
        ctx.mark = 1  # error: write
        p.return_(TC_ACT_OK)
    with build_error("write", match="the fields of SkBuff are read-only"):
        prog.build()

    @xdp
    def unknown(p, ctx):
        p.return_(ctx.ifindex)  # error: unknown
    with build_error("unknown", match="struct XdpMd has no field 'ifindex'"):
        unknown.build()


# --- byte order -------------------------------------------------------------------------------

def test_comparing_with_a_constant_swaps_it_at_build_time():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            with p.if_(eth.h_proto == ETH_P_IP):
                p.return_(XDP_DROP)

    code = xdp_program(body)
    assert has(code, JMP32 | isa.BPF_JNE | isa.BPF_K, imm=0x0008)
    assert not any(i.opcode == TO_BE for i in code.instructions)


def test_bitwise_operators_swap_their_constants_too():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            ip = p.packet_header(ctx, IPv4Hdr, after=eth)
            with p.if_(ip):
                with p.if_((ip.frag_off & IP_OFFSET) != 0):
                    p.return_(XDP_DROP)
    assert has(xdp_program(body), isa.BPF_ALU | isa.BPF_AND | isa.BPF_K, imm=0xFF1F)


@pytest.mark.parametrize("expression, message", [
    (lambda v: v + 1, r"`\+` on a be16 depends on byte order: convert it to host order first, "
                      r"with p.ntohs\(x\)"),
    (lambda v: v < 1024, r"`<` on a be16 depends on byte order"),
    (lambda v: v >> 8, r"`>>` on a be16 depends on byte order"),
    (lambda v: v == u16(53), r"mixes be16 and u16: be16 holds network byte order"),
    (lambda v: u32(v), r"be16 holds network byte order: convert it with p.ntohs\(x\), not to "
                       r"u32"),
])
def test_order_dependent_operations_are_build_errors(expression, message):
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            expression(eth.h_proto)
    with pytest.raises(ProgramBuildError, match=message):
        xdp_program(body)


def test_ntohs_and_htons():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            with p.if_(p.ntohs(eth.h_proto) < 0x0600):     # an 802.3 length, not a type
                p.return_(XDP_DROP)
            with p.if_(eth.h_proto == p.htons(ETH_P_IP)):  # folded: be16(0x0800)
                p.return_(XDP_PASS)

    code = xdp_program(body)
    assert has(code, TO_BE, imm=16)
    assert has(code, JMP32 | isa.BPF_JNE | isa.BPF_K, imm=0x0008)


def test_byte_swaps_of_constants_fold():
    def body(p, ctx):
        v = p.var(u32, p.ntohl(be32(0x0A000001)))
        p.return_(v)
    code = build(body)
    assert not any(i.opcode == TO_BE for i in code.instructions)
    assert has(code, isa.BPF_ALU | isa.BPF_MOV | isa.BPF_K, imm=0x0A000001)


def test_be16_config_and_map_keys():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            ip = p.packet_header(ctx, IPv4Hdr, after=eth)
            with p.if_(ip):
                with p.if_(ip.protocol == IPPROTO_UDP):
                    udp = p.packet_header(ctx, UDPHdr, after=ip)
                    with p.if_(udp):
                        with p.if_(udp.dest == settings.port):
                            p.return_(XDP_DROP)
                        ports.lookup(udp.dest)
    xdp_program(body)
    assert settings.encode({"port": 53}) == b"\x00\x35"
    assert ports.spec().key.build(53) == b"\x00\x35"


def test_host_order_values_do_not_become_network_order_silently():
    def body(p, ctx):
        ports.lookup(u16(53))  # error: key
    with build_error("key", match=r"u16 is in host byte order: make a be16 of it with "
                                  r"p.htons\(x\)"):
        build(body)


# --- attaching ---------------------------------------------------------------------------------

def test_tcp_flags_and_ports_read_from_a_tcp_header():
    def body(p, ctx):
        eth = p.packet_header(ctx, EthHdr)
        with p.if_(eth):
            ip = p.packet_header(ctx, IPv4Hdr, after=eth)
            with p.if_(ip):
                with p.if_(ip.protocol == IPPROTO_TCP):
                    tcp = p.packet_header(ctx, TCPHdr, after=ip)
                    with p.if_(tcp):
                        with p.if_((tcp.dest == 443) & ((tcp.flags & 0x02) != 0)):
                            p.return_(XDP_DROP)
    code = xdp_program(body)
    assert has(code, JMP32 | isa.BPF_JNE | isa.BPF_K, imm=0xBB01)
