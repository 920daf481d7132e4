"""Issue 23's DSL fixes, run by the kernel: an ``elif_`` on a packet field
classifies as ``else if`` does."""

import sys
from pathlib import Path

from packets import arp, ipv6, udp, udp4

from pybpf.dsl import collection_spec
from pybpf.loader import Collection
from pybpf.net import IPPROTO_UDP, XDP_DROP, XDP_PASS, XDP_TX

sys.path.insert(0, str(Path(__file__).parent.parent / "unit"))
from test_dsl_issue23 import classify  # noqa: E402


def test_elif_on_a_packet_field_runs_as_else_if(no_leaks):
    with Collection(collection_spec([classify])) as loaded:
        program = loaded.programs["classify"]
        assert program.test_run(udp4(53)).retval == XDP_TX
        assert program.test_run(ipv6(IPPROTO_UDP, udp(53))).retval == XDP_PASS
        assert program.test_run(arp()).retval == XDP_DROP
