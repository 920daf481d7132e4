"""The network programs attached to a real interface: a veth pair between two
network namespaces the test makes (``netns.py``), UDP and ping traffic
from one to the other, counted and dropped as sent; detaching restores the
traffic, the namespaces are removed afterwards, and nothing is left in the
kernel. Both ways of attaching are tested: BPF links (XDP, tcx) and netlink
(IFLA_XDP, clsact filters). Misuse gives one clear error each."""

import contextlib

import pytest
from netns import VethPair, inside, receive
from packets import totals

import pybpf.programs.tc_drop_port as tc_drop_port
import pybpf.programs.xdp_count as xdp_count
from pybpf.dsl import collection_spec
from pybpf.loader import Collection
from pybpf.errors import BPFError, NotFoundError, ProgramTypeError, UnsupportedFeature
from pybpf.kernel import netattach
from pybpf.kernel.link import VIA_BPF_LINK

PAYLOAD = b"pybpf" * 20
UDP_FRAME = 14 + 20 + 8 + len(PAYLOAD)
PING_FRAME = 14 + 20 + 8 + 56          # ping's default 56 bytes of data
SENT, PINGS = 25, 4
DROPPED_PORT, OTHER_PORT = 5353, 5354
LINK_OR_NETLINK = pytest.mark.parametrize("use_link", [True, False], ids=["link", "netlink"])


@pytest.fixture(scope="module")
def pair():
    veth = VethPair("net")
    try:
        yield veth.create()
    finally:
        veth.remove()



def method(use_link):
    return VIA_BPF_LINK if use_link else netattach.VIA_NETLINK


# --- xdp_count ---------------------------------------------------------------------------------

@LINK_OR_NETLINK
@pytest.mark.parametrize("mode", ["generic", "driver", None])
def test_xdp_count_counts_what_was_sent(pair, mode, use_link, no_leaks):
    with Collection(collection_spec(xdp_count)) as loaded, \
            contextlib.closing(pair.udp_socket(pair.b, DROPPED_PORT)) as receiver:
        with inside(pair.b):
            attached = netattach.attach_xdp(loaded.programs["xdp_count"], "vb", mode=mode,
                                            use_link=use_link)
        with attached:
            assert attached.method == method(use_link)
            pair.ping(PINGS)
            pair.send_udp(DROPPED_PORT, SENT, PAYLOAD)
            assert receive(receiver, SENT) == SENT      # XDP_PASS: all arrive
            counted = totals(loaded.maps.stats)
            assert counted[xdp_count.UDP] == (SENT, SENT * UDP_FRAME)
            assert counted[xdp_count.ICMP] == (PINGS, PINGS * PING_FRAME)
            assert counted[xdp_count.TCP] == counted[xdp_count.IPV6] == (0, 0)
        assert attached.closed
        pair.send_udp(DROPPED_PORT, SENT, PAYLOAD)       # detached: traffic flows, uncounted
        assert receive(receiver, SENT) == SENT
        assert totals(loaded.maps.stats)[xdp_count.UDP] == counted[xdp_count.UDP]


def test_collection_attaches_xdp_until_closed(pair, no_leaks):
    with contextlib.closing(pair.udp_socket(pair.b, DROPPED_PORT)) as receiver:
        with inside(pair.b):
            loaded = Collection(collection_spec(xdp_count)).attach_xdp("vb", mode="generic")
        with loaded:
            (attached,) = loaded.links
            assert attached.target == "xdp on vb (generic mode)"
            pair.send_udp(DROPPED_PORT, SENT, PAYLOAD)
            assert receive(receiver, SENT) == SENT
            assert totals(loaded.maps.stats)[xdp_count.UDP][0] == SENT
        assert attached.closed


# --- tc_drop_port ------------------------------------------------------------------------------

@LINK_OR_NETLINK
@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tc_drop_port_drops_exactly_that_port(pair, direction, use_link, no_leaks):
    # ingress of the receiving end, or egress of the sending end
    namespace, interface = (pair.b, "vb") if direction == "ingress" else (pair.a, "va")
    with Collection(collection_spec(tc_drop_port), config={"port": DROPPED_PORT}) as loaded, \
            contextlib.closing(pair.udp_socket(pair.b, DROPPED_PORT)) as dropped, \
            contextlib.closing(pair.udp_socket(pair.b, OTHER_PORT)) as passed:
        with inside(namespace):
            attached = netattach.attach_tc(loaded.programs["tc_drop_port"], interface,
                                           direction, use_link=use_link)
        with attached:
            assert (attached.method, attached.target) == \
                (method(use_link), "tc %s on %s" % (direction, interface))
            pair.send_udp(DROPPED_PORT, SENT, PAYLOAD)
            pair.send_udp(OTHER_PORT, SENT, PAYLOAD)
            assert receive(passed, SENT) == SENT
            assert receive(dropped, 0) == 0
            assert sum(loaded.maps.drops[0]) == SENT
            pair.ping(PINGS)                              # ICMP goes on
        pair.send_udp(DROPPED_PORT, SENT, PAYLOAD)        # detached: the port works again
        assert receive(dropped, SENT) == SENT
        assert sum(loaded.maps.drops[0]) == SENT
    # a clsact qdisc we added goes with our filter
    assert "clsact" not in pair.run_in(namespace, "tc", "qdisc", "show", "dev", interface)


def test_clsact_made_by_someone_else_stays(pair, no_leaks):
    pair.run_in(pair.b, "tc", "qdisc", "add", "dev", "vb", "clsact")
    try:
        with Collection(collection_spec(tc_drop_port), config={"port": DROPPED_PORT}) as loaded:
            with inside(pair.b):
                with netattach.attach_tc(loaded.programs["tc_drop_port"], "vb", use_link=False):
                    assert "tc_drop_port" in pair.run_in(pair.b, "tc", "filter", "show", "dev",
                                                         "vb", "ingress")
        assert pair.run_in(pair.b, "tc", "filter", "show", "dev", "vb", "ingress") == ""
        assert "clsact" in pair.run_in(pair.b, "tc", "qdisc", "show", "dev", "vb")
    finally:
        pair.run_in(pair.b, "tc", "qdisc", "del", "dev", "vb", "clsact")


# --- errors --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def programs():
    with Collection(collection_spec(xdp_count)) as xdp, \
            Collection(collection_spec(tc_drop_port)) as tc:
        yield xdp.programs["xdp_count"], tc.programs["tc_drop_port"]


def test_a_missing_interface_is_named(pair, programs):
    xdp, tc = programs
    with inside(pair.b):
        with pytest.raises(NotFoundError, match="no network interface named 'nope0' in this "
                                                "network namespace"):
            netattach.attach_xdp(xdp, "nope0")
        with pytest.raises(NotFoundError, match="no network interface index 999"):
            netattach.attach_tc(tc, 999)


def test_a_program_of_the_wrong_type_is_refused_before_the_kernel(pair, programs):
    xdp, tc = programs
    with inside(pair.b):
        with pytest.raises(ProgramTypeError, match="attach_xdp needs a BPF_PROG_TYPE_XDP "
                                                   "program; 'tc_drop_port' is "
                                                   "BPF_PROG_TYPE_SCHED_CLS"):
            netattach.attach_xdp(tc, "vb")
        with pytest.raises(ProgramTypeError, match="attach_tc needs a BPF_PROG_TYPE_SCHED_CLS"):
            netattach.attach_tc(xdp.fileno(), "vb")   # a bare fd: its type comes from the kernel


@LINK_OR_NETLINK
@pytest.mark.parametrize("mode, interface", [("offload", "vb"), ("driver", "lo")])
def test_a_mode_the_driver_lacks_is_named(pair, programs, mode, interface, use_link):
    with inside(pair.b):
        with pytest.raises(UnsupportedFeature, match="XDP %s mode on %s" % (mode, interface)):
            netattach.attach_xdp(programs[0], interface, mode=mode, use_link=use_link)


@LINK_OR_NETLINK
def test_an_occupied_xdp_hook_is_not_taken_over(pair, programs, use_link):
    with inside(pair.b):
        with netattach.attach_xdp(programs[0], "vb", mode="generic"):
            with pytest.raises(BPFError, match="vb already has an XDP program"):
                netattach.attach_xdp(programs[0], "vb", mode="generic", use_link=use_link)


def test_an_occupied_filter_priority_is_named(pair, programs):
    with inside(pair.b):
        with netattach.attach_tc(programs[1], "vb", use_link=False):
            with pytest.raises(BPFError, match="the ingress hook of vb already has a filter at "
                                               "priority 1; pass another priority"):
                netattach.attach_tc(programs[1], "vb", use_link=False)
            with netattach.attach_tc(programs[1], "vb", use_link=False, priority=2):
                pass


def test_bad_options_are_value_errors(programs):
    with pytest.raises(ValueError, match="XDP mode 'native'"):
        netattach.attach_xdp(programs[0], "lo", mode="native")
    with pytest.raises(ValueError, match="tc direction 'in'"):
        netattach.attach_tc(programs[1], "lo", "in")
