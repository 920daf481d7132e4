"""Enumerating the kernel's programs, maps, links and BTF objects, and the
leak helpers in ``kernel_objects`` that every kernel test relies on."""

import ctypes
import json
import os
import signal
import subprocess
import sys as _sys
import textwrap

import pytest

from kernel_objects import (assert_no_new_fds, assert_no_new_objects, load_trivial_program,
                            new_objects, open_fds, snapshot, wait_gone)
from pybpf import asm_text
from pybpf.errors import NotFoundError
from pybpf.kernel import objects, sys
from pybpf.kernel.btf_load import load_btf
from pybpf.kernel.btf_writer import BTF_FUNC_STATIC, VOID, BTFBuilder
from pybpf.kernel.maps import Map, MapSpec
from pybpf.kernel.prog import Program
from pybpf import consts

BPFTOOL = "/usr/sbin/bpftool"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bpftool(*args):
    if not os.path.exists(BPFTOOL):
        pytest.skip("bpftool is not installed")
    return json.loads(subprocess.check_output((BPFTOOL, "-j") + args))


def test_map_enumeration_finds_ours():
    with Map.create(MapSpec("lru_hash", key_size=4, value_size=12, max_entries=7,
                            name="objects_test")) as m:
        assert m.id in objects.MAPS.ids()
        found = [info for info in objects.MAPS.infos() if info.id == m.id]
        assert len(found) == 1
        info = found[0]
        assert (info.name, info.type, info.type_name) == ("objects_test",
                                                          consts.BPF_MAP_TYPE_LRU_HASH,
                                                          "lru_hash")
        assert (info.key_size, info.value_size, info.max_entries) == (4, 12, 7)
        assert objects.MAPS.info_by_id(m.id) == info == objects.map_info(m)
        shown = bpftool("map", "show", "id", str(m.id))
        assert (shown["name"], shown["type"]) == ("objects_test", "lru_hash")


def test_prog_enumeration_and_info():
    with load_trivial_program(name="objects_prog") as prog:
        info = objects.prog_info(prog)
        assert info.id in objects.PROGS.ids()
        assert any(p.id == info.id for p in objects.PROGS.infos())
        assert (info.name, info.type_name) == ("objects_prog", "socket_filter")
        assert info.type == consts.BPF_PROG_TYPE_SOCKET_FILTER
        # verified_insns: 0 where the kernel's bpf_prog_info ends before it (< 5.16)
        assert info.map_ids == () and info.gpl_compatible and info.verified_insns in (0, 2)
        assert info.xlated_len == 16 and objects.prog_xlated(prog) == bytes.fromhex(
            "b700000000000000"    # r0 = 0
            "9500000000000000")   # exit
        assert len(objects.prog_jited(prog)) == info.jited_len > 0
        shown = bpftool("prog", "show", "id", str(info.id))
        assert shown["tag"].replace(":", "") == info.tag
        assert objects.PROGS.info_by_id(info.id).tag == info.tag
        assert abs(info.loaded_at - shown["loaded_at"]) <= 2


def test_prog_map_ids():
    """A program that references a map lists it (ld_imm64 with BPF_PSEUDO_MAP_FD)."""
    with Map.create(MapSpec("array", value_size=4, max_entries=1, name="used")) as m:
        insns = bytes([0x18, 0x11, 0, 0]) + m.fileno().to_bytes(4, "little") + bytes(8) \
            + bytes.fromhex("b700000000000000" "9500000000000000")
        code = ctypes.create_string_buffer(insns, len(insns))
        license = ctypes.create_string_buffer(b"GPL")
        attr = sys.ProgLoadAttr(prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER, insn_cnt=4,
                                insns=sys.address(code), license=sys.address(license))
        with sys.bpf_fd(sys.BPF_PROG_LOAD, attr) as prog:
            assert objects.prog_info(prog).map_ids == (m.id,)


def test_prog_functions_jited_and_func_info():
    """A program with a bpf-to-bpf function and BTF func_info: one JIT-compiled
    function each, whose lengths add up to the machine code."""
    b = BTFBuilder()
    u64 = b.int("u64", 8)
    main = b.func("main", b.func_proto(u64, [("ctx", b.ptr(VOID))]), BTF_FUNC_STATIC)
    twice = b.func("twice", b.func_proto(u64, [("x", u64)]), BTF_FUNC_STATIC)
    code = asm_text.parse("r1 = 3\n call twice\n exit\n"
                          "twice: r0 = r1\n r0 += r1\n exit\n")
    with load_btf(b.encode()) as btf, \
            Program.load(code, prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER, btf_fd=btf.fileno(),
                         func_info=[(0, main), (code.slot_of(code.labels["twice"]), twice)]) as prog:
        assert objects.prog_func_info(prog) == ((0, main), (3, twice))
        ksyms, lens = objects.prog_jited_ksyms(prog), objects.prog_jited_func_lens(prog)
        assert len(ksyms) == len(lens) == 2
        assert sum(lens) == len(objects.prog_jited(prog)) > 0
    with load_trivial_program(consts.BPF_PROG_TYPE_SOCKET_FILTER) as plain:
        assert objects.prog_func_info(plain) == ()
        assert len(objects.prog_jited_ksyms(plain)) == len(objects.prog_jited_func_lens(plain)) == 1


def test_links_raw_tracepoint_and_xdp():
    with load_trivial_program(consts.BPF_PROG_TYPE_RAW_TRACEPOINT) as prog:
        name = ctypes.create_string_buffer(b"sys_enter")
        attr = sys.RawTracepointAttr(name=sys.address(name), prog_fd=prog.fileno())
        with sys.bpf_fd(sys.BPF_RAW_TRACEPOINT_OPEN, attr) as link:
            info = objects.link_info(link)
            assert info.type_name == "raw_tracepoint"
            assert info.prog_id == objects.prog_info(prog).id
            assert info.tp_name == "sys_enter"
            assert info.id in objects.LINKS.ids()
            assert objects.LINKS.info_by_id(info.id) == info
            assert any(found.id == info.id for found in objects.LINKS.infos())
    xdp_pass = 2
    with load_trivial_program(consts.BPF_PROG_TYPE_XDP, r0=xdp_pass) as prog:
        lo = 1
        attr = sys.LinkCreateAttr(prog_fd=prog.fileno(), target_fd=lo,
                                  attach_type=consts.BPF_XDP)
        with sys.bpf_fd(sys.BPF_LINK_CREATE, attr) as link:
            info = objects.link_info(link)
            assert (info.type_name, info.ifindex) == ("xdp", lo)
            shown = bpftool("link", "show", "id", str(info.id))
            assert (shown["type"], shown["prog_id"]) == ("xdp", info.prog_id)


def test_info_refuses_an_fd_of_another_kind():
    with load_trivial_program() as prog:
        with pytest.raises(ValueError, match="is anon_inode:bpf-prog, not a BPF map"):
            objects.map_info(prog)
        with pytest.raises(ValueError, match="not a BPF map"):
            Map.from_fd(prog.fileno())
    with open("/dev/null") as f, pytest.raises(ValueError, match="not a BPF program"):
        objects.prog_info(f)


def test_btf_objects():
    from pybpf.kernel.btf_load import load_btf
    from pybpf.kernel.features import minimal_btf
    with load_btf(minimal_btf()) as own:
        mine = objects.btf_info(own)
        infos = list(objects.BTFS.infos())
    assert mine.id in [info.id for info in infos] and mine.name == "" and not mine.kernel_btf
    assert mine.size == len(minimal_btf())
    if mine.kernel_btf is None:
        # bpf_btf_info without name/kernel_btf (Linux < 5.11): kernel BTF has no id
        assert all(info.kernel_btf is None for info in infos)
    else:
        vmlinux = [info for info in infos if info.name == "vmlinux"]
        assert len(vmlinux) == 1 and vmlinux[0].kernel_btf and vmlinux[0].size > 0


def test_vanished_objects_are_skipped(monkeypatch):
    with Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=1, name="still")) as m:
        gone = max(objects.MAPS.ids()) + 1000000
        monkeypatch.setattr(objects.MAPS, "ids", lambda: [gone, m.id])
        assert [info.id for info in objects.MAPS.infos()] == [m.id]
    with pytest.raises(NotFoundError, match="no map with id"):
        objects.MAPS.open(gone)


def test_enum_tables():
    assert consts.MAP_TYPES.name(consts.BPF_MAP_TYPE_RINGBUF) == "BPF_MAP_TYPE_RINGBUF"
    assert consts.MAP_TYPES.value("ringbuf") == consts.MAP_TYPES.value("BPF_MAP_TYPE_RINGBUF")
    assert consts.PROG_TYPES.short(consts.BPF_PROG_TYPE_RAW_TRACEPOINT) == "raw_tracepoint"
    assert consts.LINK_TYPES.name(consts.BPF_LINK_TYPE_PERF_EVENT) == "BPF_LINK_TYPE_PERF_EVENT"
    assert consts.ATTACH_TYPES.name(consts.BPF_TRACE_RAW_TP) == "BPF_TRACE_RAW_TP"
    assert consts.MAP_TYPES.name(1000) == "BPF_MAP_TYPE_UNKNOWN_1000"
    with pytest.raises(KeyError):
        consts.MAP_TYPES.value("no_such_type")


# --- leaks -----------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import signal, sys, time
    from pybpf.kernel.maps import Map, MapSpec
    maps = [Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=4,
                               name="child_%d" % i)) for i in range(3)]
    print(" ".join(str(m.id) for m in maps), flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_maps_of_a_killed_process_vanish(signum):
    before = snapshot()
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen([_sys.executable, "-c", CHILD], stdout=subprocess.PIPE, env=env)
    try:
        ids = [int(word) for word in child.stdout.readline().split()]
        assert len(ids) == 3 and set(ids) <= set(objects.MAPS.ids())
        assert not new_objects(before), "another process's maps must not count as ours"
    finally:
        child.send_signal(signum)
        child.wait(10)
        child.stdout.close()
    assert child.returncode == -signum
    assert wait_gone(objects.MAPS, ids) == set()
    assert_no_new_objects(before)


def test_closing_a_map_removes_it_and_its_fd():
    before, fds = snapshot(), open_fds()
    m = Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=4, name="closing"))
    assert m.id in objects.MAPS.ids() and m.fileno() in open_fds()
    with pytest.raises(AssertionError, match=r"maps \[%d\]" % m.id):
        assert_no_new_objects(before, timeout=0.1)
    with pytest.raises(AssertionError, match="fds leaked|leaked"):
        assert_no_new_fds(fds)
    m.close()
    assert wait_gone(objects.MAPS, [m.id]) == set()
    assert_no_new_objects(before)
    assert_no_new_fds(fds)


def test_enumeration_leaks_no_fds():
    fds = open_fds()
    with load_trivial_program():
        list(objects.PROGS.infos())
        list(objects.MAPS.infos())
        list(objects.LINKS.infos())
        list(objects.BTFS.infos())
    assert_no_new_fds(fds)
