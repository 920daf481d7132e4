"""Issue 23's DSL fixes, run by the kernel: an ``elif_`` on a packet field
classifies as ``else if`` does; ``comm == b"..."`` is ``strcmp``."""

import sys
from pathlib import Path

from packets import arp, ipv6, udp, udp4

from pybpf.dsl import collection_spec, raw_tracepoint
from pybpf.loader import Collection
from pybpf.net import IPPROTO_UDP, XDP_DROP, XDP_PASS, XDP_TX

sys.path.insert(0, str(Path(__file__).parent.parent / "unit"))
from test_dsl_issue23 import Event, classify  # noqa: E402


def test_elif_on_a_packet_field_runs_as_else_if(no_leaks):
    with Collection(collection_spec([classify])) as loaded:
        program = loaded.programs["classify"]
        assert program.test_run(udp4(53)).retval == XDP_TX
        assert program.test_run(ipv6(IPPROTO_UDP, udp(53))).retval == XDP_PASS
        assert program.test_run(arp()).retval == XDP_DROP


def _comm_is(text):
    @raw_tracepoint("sys_enter")
    def comm_is(p, ctx):
        ev = p.stack(Event)
        p.helpers.get_current_comm(ev.comm)
        with p.if_(ev.comm == text):
            p.return_(1)
        p.return_(0)
    return comm_is


def test_comm_equality_with_a_constant_runs_as_strcmp(no_leaks):
    own = Path("/proc/self/comm").read_bytes().rstrip(b"\n")
    for text, expected in [(own, 1), (own[:-1], 0), (own + b"x", 0), (b"bash", 0)]:
        with Collection(collection_spec([_comm_is(text)])) as loaded:
            assert loaded.programs["comm_is"].test_run(ctx=bytes(16)).retval == expected, text
