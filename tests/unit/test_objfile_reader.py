"""The ELF reader and section-name rules, on objects shipped with the
distribution (cilium/ebpf's testdata), without the kernel."""

import glob
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.consts import BPF_PROG_TYPE_TRACEPOINT, BPF_PROG_TYPE_XDP, BPF_TCX_INGRESS
from pybpf.errors import PyBPFError
from pybpf.objfile.bpf_object import BPFObject
from pybpf.objfile.core import essential_name
from pybpf.objfile.reader import ElfFile, ObjectFileError
from pybpf.objfile.sections import find_section_def

TESTDATA = "/usr/share/gocode/src/github.com/cilium/ebpf/testdata"
SUBPROG = TESTDATA + "/subprog_reloc-el.elf"

needs_corpus = pytest.mark.skipif(not os.path.isdir(TESTDATA) and not os.environ.get("CI"),
                                  reason="tools/setup_test_host.sh installs cilium/ebpf's testdata")


@pytest.mark.parametrize("name, prog_type, attach", [
    ("tp/syscalls/sys_enter_openat", BPF_PROG_TYPE_TRACEPOINT, 0),
    ("tracepoint", BPF_PROG_TYPE_TRACEPOINT, 0),
    ("xdp", BPF_PROG_TYPE_XDP, 37),
    ("tcx/ingress", 3, BPF_TCX_INGRESS),
])
def test_section_names_match_as_libbpf_matches_them(name, prog_type, attach):
    found = find_section_def(name)
    assert (found.prog_type, found.expected_attach_type) == (prog_type, attach)


@pytest.mark.parametrize("name", ["tpx", "xdp_foo", "socket/2", "classifier/x", ".text"])
def test_sloppy_section_names_are_not_programs(name):
    assert find_section_def(name) is None


def test_flavor_suffix_is_dropped():
    assert essential_name("task_struct___v2") == "task_struct"
    assert essential_name("a____b") == "a____b"
    assert essential_name("plain") == "plain"


@needs_corpus
def test_big_endian_object_is_refused_in_one_line():
    with pytest.raises(ObjectFileError, match="big-endian") as refused:
        BPFObject(TESTDATA + "/subprog_reloc-eb.elf")
    assert "\n" not in str(refused.value)


@needs_corpus
def test_object_programs_are_read_and_linked():
    obj = BPFObject(SUBPROG, target_btf=None)
    assert [p.name for p in obj.programs] == ["fp_relocation"]
    assert obj.license == "MIT"
    assert obj.programs[0].linked.func_info[0] == (0, obj.programs[0].linked.func_info[0][1])


@needs_corpus
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_truncated_or_corrupted_objects_fail_in_one_line(data):
    with open(SUBPROG, "rb") as f:
        blob = bytearray(f.read())
    if data.draw(st.booleans()):
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        BPFObject("fuzzed.o", bytes(blob), target_btf=None)
    except PyBPFError as exc:
        message = str(exc)
        assert "\n" not in message and "fuzzed.o" in message


def test_not_an_elf_file():
    with pytest.raises(ObjectFileError, match="not an ELF file"):
        ElfFile(b"hello", "x.o")


def test_every_shipped_object_reads():
    for path in glob.glob(TESTDATA + "/*-el.elf"):
        ElfFile(open(path, "rb").read(), path)
