"""Feature probes against the running kernel: fast, quiet, cached, and right
(cross-checked by really creating and loading what they say works)."""

import errno
import json
import re

import pytest
from kernel_objects import assert_no_new_fds, assert_no_new_objects, open_fds, snapshot

from pybpf import consts, isa
from pybpf.errors import (BPFError, BPFPermissionError, FeatureRefused, UnsupportedFeature,
                          VerifierError)
from pybpf.kernel import features, prog
from pybpf.kernel.features import Answer, Features
from pybpf.kernel.maps import Map, MapSpec
from pybpf.kernel.prog import Program

# What pybpf and sniffwrites are built on; every kernel we support has them.
NEEDED = ["BPF_MAP_TYPE_HASH", "BPF_MAP_TYPE_ARRAY", "BPF_MAP_TYPE_PERCPU_ARRAY",
          "BPF_MAP_TYPE_PERF_EVENT_ARRAY", "BPF_PROG_TYPE_SOCKET_FILTER",
          "BPF_PROG_TYPE_TRACEPOINT", "BPF_PROG_TYPE_RAW_TRACEPOINT", "BPF_PROG_TYPE_XDP",
          "btf", "bounded_loops", "bpf_probe_read_kernel"]


@pytest.fixture(scope="module")
def fresh():
    """A probe of our own, with nothing cached from other tests."""
    before, fds = snapshot(), open_fds()
    return features.probe(refresh=True), before, fds


def test_probe_leaves_nothing_behind(fresh):
    found, before, fds = fresh
    assert found.probe_seconds > 0
    assert_no_new_fds(fds)
    assert_no_new_objects(before)


def test_probe_is_cached_per_process(fresh, monkeypatch):
    found = fresh[0]

    def no_loading(*args, **kwargs):
        raise AssertionError("a cached probe asked the kernel again")

    monkeypatch.setattr(features, "load_btf", no_loading)   # where a probe starts
    assert features.probe() is found


def test_needed_features_are_there(fresh):
    found = fresh[0]
    for name in NEEDED:
        found.require(name)
    assert found.btf and found.bounded_loops and found.bpf_probe_read_kernel


def test_answers_match_what_really_works(fresh):
    found = fresh[0]
    if found.ringbuf:
        with Map.create(MapSpec("ringbuf", max_entries=4096)):
            pass
    for name in ("BPF_PROG_TYPE_SOCKET_FILTER", "BPF_PROG_TYPE_KPROBE", "BPF_PROG_TYPE_SCHED_CLS",
                 "BPF_PROG_TYPE_TRACEPOINT", "BPF_PROG_TYPE_XDP", "BPF_PROG_TYPE_TRACING"):
        prog_type = consts.PROG_TYPES.value(name)
        code = [isa.mov(isa.R0, 0), isa.exit_()]
        if name in found.prog_types and found.answer(name).detail.startswith("known;"):
            # The type exists but needs an attach target (TRACING, LSM, EXT):
            # the verifier refuses the empty program and says what is missing.
            with pytest.raises(VerifierError, match="btf_id"):
                Program.load(code, prog_type=prog_type).close()
        elif name in found.prog_types:
            Program.load(code, prog_type=prog_type).close()
        else:   # a refusal comes with its reason (errno and the kernel's words)
            answer = found.answer(name)
            assert answer.detail
            attrs = prog.PROBE_ATTRS.get(prog_type, {})    # as the probe loaded it
            with pytest.raises(BPFError) as caught:
                Program.load(code, prog_type=prog_type, **attrs).close()
            if answer.state == features.REFUSED:    # policy, not age: say so, name the type
                assert isinstance(caught.value, BPFPermissionError), caught.value
                assert name in str(caught.value)
            else:
                assert not isinstance(caught.value, BPFPermissionError), caught.value


def test_unavailable_program_types_say_why(fresh):
    for name, answer in fresh[0].as_dict()["prog_types"].items():
        if not answer["available"]:
            assert answer["detail"].startswith("E"), (name, answer)
            assert answer["state"] == ("refused" if answer["detail"].startswith(("EPERM", "EACCES"))
                                       else "absent"), (name, answer)


@pytest.mark.parametrize("state", features.STATES)
def test_require_raises_what_the_answer_says(state):
    answers = {"map_types": {}, "prog_types": {}, "link_types": {},
               "other": {"ringbuf": Answer(state, "EPERM" if state == "refused" else "")}}
    found = Features(answers, 0.001)
    if state == features.PRESENT:
        found.require("ringbuf")
    elif state == features.ABSENT:
        with pytest.raises(UnsupportedFeature):
            found.require("ringbuf")
    else:
        with pytest.raises(FeatureRefused) as caught:
            found.require("ringbuf")
        assert isinstance(caught.value, BPFPermissionError)
        assert "refuses ringbuf to this process (EPERM)" in str(caught.value)
        assert "LSM" in str(caught.value)


def test_a_probe_answer_is_one_of_three():
    assert [Answer(state).available for state in features.STATES] == [True, False, False]
    with pytest.raises(ValueError, match="present, absent, refused"):
        Answer(True)
    assert Answer.from_errno(errno.EPERM) == Answer(features.REFUSED, "EPERM")
    assert Answer.from_errno(errno.EACCES, "0: (85) call 200\ninvalid func 200\n").state == \
        features.ABSENT    # the verifier spoke: not policy
    assert Answer.from_errno(errno.EINVAL, context="x") == Answer(features.ABSENT, "x: EINVAL")


def test_helpers_per_program_type():
    tracepoint = consts.BPF_PROG_TYPE_TRACEPOINT
    socket_filter = consts.BPF_PROG_TYPE_SOCKET_FILTER
    assert Features.has_helper(tracepoint, "get_current_pid_tgid")
    assert Features.has_helper(tracepoint, "bpf_perf_event_output")
    assert Features.has_helper(socket_filter, "skb_load_bytes")
    assert not Features.has_helper(tracepoint, "skb_load_bytes")
    with pytest.raises(UnsupportedFeature) as caught:
        Features.require_helper(tracepoint, "bpf_skb_load_bytes")
    # "program of this type cannot use helper" (6.18) or "unknown func" (6.1, 5.10)
    assert re.search(r"(cannot use helper|unknown func) bpf_skb_load_bytes", str(caught.value))


def test_require_names_version_and_reason():
    answers = {"map_types": {}, "prog_types": {}, "link_types": {},
               "other": {"ringbuf": Answer(features.ABSENT, "EINVAL")}}
    with pytest.raises(UnsupportedFeature) as caught:
        Features(answers, 0.001).require("ringbuf")
    assert str(caught.value) == ("feature probe failed (EINVAL): this kernel does not support "
                                 "ringbuf (added in Linux 5.8): EINVAL")
    with pytest.raises(KeyError):
        Features(answers, 0.001).require("no_such_feature")


def test_unknown_program_type_answer():
    assert features.prog_type_answer(200) == Answer(features.ABSENT, "EINVAL")
    assert features.prog_type_answer(consts.BPF_PROG_TYPE_SOCKET_FILTER).available


def test_a_load_einval_is_unsupported_only_when_the_probe_says_absent(probe_says):
    """EINVAL before verifying means unknown program type or bad load
    attributes: the probe tells which, for each answer it can give."""
    probe_says("BPF_PROG_TYPE_SOCKET_FILTER")
    code = [isa.mov(isa.R0, 0), isa.exit_()]
    with pytest.raises(BPFError) as caught:   # socket filters take no expected_attach_type
        Program.load(code, prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER,
                     expected_attach_type=consts.BPF_XDP, prog_flags=1 << 30).close()
    assert caught.value.errno == errno.EINVAL
    assert isinstance(caught.value, UnsupportedFeature) == (probe_says.state == "absent")


def test_table_and_json(fresh):
    found = fresh[0]
    data = json.loads(json.dumps(found.as_dict()))
    assert set(data) == {"probe_ms", "map_types", "prog_types", "link_types", "other"}
    assert data["other"]["btf"] == {"available": True, "state": "present", "detail": ""}
    assert len(data["map_types"]) >= 30 and len(data["prog_types"]) >= 32
    table = found.as_table()
    assert table.splitlines()[0] == "map types:"
    assert "  BPF_LINK_TYPE_PERF_EVENT" in table and table.splitlines()[-1].startswith("probed in ")


def test_minimal_btf_is_what_the_kernel_loads(fresh):
    assert fresh[0].btf
    blob = features.minimal_btf()
    assert blob[:2] == b"\x9f\xeb" and len(blob) == 24 + 2 * 16 + len(b"\0int\0long\0")
