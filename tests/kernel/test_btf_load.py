"""BTF from our writer in the real kernel: loaded, attached to a map so that
bpftool prints the map's entries as structs, fetched back by id and parsed,
refused with the kernel's own complaint, and gone once we let go of it."""

import ctypes
import json
import os
import struct
import subprocess

import pytest

from kernel_objects import assert_no_new_fds, assert_no_new_objects, open_fds, snapshot, wait_gone
from pybpf.errors import BPFError, NotFoundError
from pybpf.kernel import objects, sys
from pybpf.kernel.btf import BTF, VMLINUX_PATH
from pybpf.kernel.btf_load import (BTFLoadError, LoadedBTF, btf_data, btf_from_id, btf_info,
                                   fetch_btf, load_btf)
from pybpf.kernel.btf_writer import BTF_FUNC_STATIC, VOID, BTFBuilder, Member
from pybpf import consts

BPFTOOL = "/usr/sbin/bpftool"
EVENT = struct.Struct("=Ii16sQ")     # struct event, as the BTF below describes it


def event_btf():
    """[1] u32, [2] s32, [3] u64, char[16], and struct event { u32 pid;
    s32 fd; char comm[16]; u64 bytes; }."""
    b = BTFBuilder()
    u32, s32, u64 = b.int("u32", 4), b.int("s32", 4, signed=True), b.int("u64", 8)
    event = b.struct("event", EVENT.size, [("pid", u32, 0), ("fd", s32, 4),
                                           ("comm", b.char_array(16), 8), ("bytes", u64, 24)])
    return b.encode(), u32, event


def bpftool(*args):
    if not os.path.exists(BPFTOOL):
        pytest.skip("bpftool is not installed")
    return subprocess.check_output((BPFTOOL,) + args, text=True)


def create_hash_map(btf: LoadedBTF, key_type: int, value_type: int) -> sys.FD:
    """A HASH map typed by ``btf`` (raw BPF_MAP_CREATE: MapSpec has no BTF yet)."""
    attr = sys.MapCreateAttr(map_type=consts.BPF_MAP_TYPE_HASH, key_size=4,
                             value_size=EVENT.size, max_entries=8,
                             map_name=sys.obj_name("btf_events"), btf_fd=btf.fileno(),
                             btf_key_type_id=key_type, btf_value_type_id=value_type)
    return sys.bpf_fd(sys.BPF_MAP_CREATE, attr)


def update(map_fd: sys.FD, key: bytes, value: bytes) -> None:
    key_buf = ctypes.create_string_buffer(key, len(key))
    value_buf = ctypes.create_string_buffer(value, len(value))
    sys.bpf(sys.BPF_MAP_UPDATE_ELEM, sys.MapElemAttr(map_fd=map_fd.fileno(),
                                                     key=sys.address(key_buf),
                                                     value=sys.address(value_buf)))


def test_map_with_btf_dumps_as_structs():
    before, fds = snapshot(), open_fds()
    blob, u32, event = event_btf()
    with load_btf(blob) as btf:
        with create_hash_map(btf, u32, event) as map_fd:
            update(map_fd, struct.pack("=I", 4242), EVENT.pack(1234, -7, b"sniffwrites", 1 << 40))
            info = objects.map_info(map_fd)
            assert (info.btf_id, info.btf_key_type_id, info.btf_value_type_id) == (
                btf.id, u32, event)
            dumped = json.loads(bpftool("map", "dump", "id", str(info.id), "-j"))
        btf_id = btf.id
    assert [entry["formatted"] for entry in dumped] == [{
        "key": 4242,
        "value": {"pid": 1234, "fd": -7, "comm": "sniffwrites", "bytes": 1 << 40}}]
    assert not wait_gone(objects.BTFS, [btf_id]), "BTF id %d outlived its fd and map" % btf_id
    assert_no_new_objects(before)
    assert_no_new_fds(fds)


def test_fetch_by_id_parses_back():
    blob, u32, event = event_btf()
    fds = open_fds()
    with load_btf(blob) as btf:
        info = btf_info(btf)
        assert (info.id, info.size, info.name) == (btf.id, len(blob), "")
        assert info.kernel_btf in (False, None)     # None: not said before Linux 5.11
        assert btf.info() == info and btf.size == len(blob)
        fetched = fetch_btf(btf.id)
        assert fetched == blob == btf.data()
        with btf_from_id(btf.id) as fd:
            assert btf_data(fd) == blob and btf_info(fd).id == btf.id
        parsed = BTF(fetched)
        assert [(m.name, m.bit_offset) for m in parsed.members(event)] == [
            ("pid", 0), ("fd", 32), ("comm", 64), ("bytes", 192)]
        assert parsed.resolve("event.comm").array.nelems == 16
        assert parsed.int_info(u32).name == "u32"
        assert "struct event {" in bpftool("btf", "dump", "id", str(btf.id), "format", "c")
    assert btf.closed and "closed" in repr(btf)
    assert_no_new_fds(fds)


def test_kernel_accepts_every_kind_the_writer_emits(probe_says):
    """Signed enums and ENUM64 (Linux 6.0) go in when the probe says the
    kernel has them: for each answer it can give, the load does what the
    kernel really does with what went in."""
    b = BTFBuilder()
    u32, s64 = b.int("u32", 4), b.int("s64", 8, True)
    b.int("_Bool", 1, is_bool=True)
    task = b.fwd("task_struct")
    b.fwd("sock_addr", union=True)
    anon = b.union("", 8, [("word", s64, 0), Member("low", u32, 0, bit_size=3)])
    node = b.struct("node", 32, [Member("kind", u32, 0, bit_size=4),
                                 Member("level", u32, 0, bit_size=4, bit_offset=4),
                                 ("", anon, 8), ("task", b.ptr(task), 16),
                                 ("grid", b.array(b.array(u32, 1), 2), 24)])
    b.typedef("node_t", node)
    b.enum("color", {"RED": 0, "BLUE": 0xFFFFFFFF})
    enum64 = probe_says("btf_enum64").btf_enum64
    if enum64:
        b.enum("delta", {"DOWN": -1}, size=1)
        b.enum("big", {"HUGE": 1 << 40}, size=8)
    proto = b.func_proto(u32, [("ctx", b.ptr(VOID)), ("n", b.ptr(node))])
    b.func("handle", proto)
    b.func("helper", proto, BTF_FUNC_STATIC)
    blob = b.encode()
    if enum64 and not probe_says.host("btf_enum64").available:   # told yes, wrongly
        with pytest.raises(BTFLoadError, match="Invalid btf_info|Invalid kind|kind_flag"):
            load_btf(blob)
        return
    with load_btf(blob) as btf:
        assert BTF(btf.data()).resolve("node_t.level").bit_size == 4
        raw = bpftool("btf", "dump", "id", str(btf.id))
    assert "FUNC 'helper' type_id=%d linkage=static" % proto in raw
    assert ("ENUM64 'big' encoding=UNSIGNED size=8 vlen=1" in raw) == enum64
    if not probe_says.host("btf_enum64").available:     # refused, with the kernel's reason
        b = BTFBuilder()
        b.enum("big", {"HUGE": 1 << 40}, size=8)
        with pytest.raises(BTFLoadError, match="Invalid btf_info|Invalid kind|kind_flag"):
            load_btf(b.encode())


def test_refusal_carries_the_kernel_log():
    b = BTFBuilder()
    u32 = b.int("u32", 4)
    b.struct("event", 8, [("pid", u32, 0), ("not valid", u32, 4)])
    fds = open_fds()
    with pytest.raises(BTFLoadError) as info:
        load_btf(b.encode())
    err = info.value
    assert isinstance(err, BPFError) and err.errno == 22 and err.op == "BPF_BTF_LOAD"
    assert err.log.startswith("magic: 0xeb9f\n") and "Invalid name" in err.log
    assert str(err) == ("BPF_BTF_LOAD failed (EINVAL): kernel rejected BTF (%d bytes): "
                        "[2] STRUCT event size=8 vlen=2: member not valid type_id=1 "
                        "bits_offset=32 Invalid name" % err.blob_size)
    assert_no_new_fds(fds)


def test_refusal_of_a_corrupt_header():
    blob = bytearray(event_btf()[0])
    blob[0:2] = b"\0\0"
    with pytest.raises(BTFLoadError) as info:
        load_btf(bytes(blob))
    assert "Invalid magic" in str(info.value)


def test_log_grows_until_the_complaint_fits():
    # The kernel logs a line per type; 4000 of them overflow the first 64 KiB.
    b = BTFBuilder()
    for n in range(4000):
        b.int("int_number_%04d" % n, 4)
    b.typedef("bad name", 1)
    with pytest.raises(BTFLoadError) as info:
        load_btf(b.encode())
    assert len(info.value.log) > 64 * 1024
    assert str(info.value).endswith("[4001] TYPEDEF bad name type_id=1 Invalid name")


def test_vmlinux_fetched_by_id_is_the_sysfs_file():
    if not os.path.exists(VMLINUX_PATH):
        pytest.skip("this kernel has no %s" % VMLINUX_PATH)
    infos = list(objects.BTFS.infos())
    if all(info.kernel_btf is None for info in infos):
        # Linux < 5.11: kernel BTF has no id; it is only the sysfs file
        assert not any(info.name == "vmlinux" for info in infos)
        return
    vmlinux = next(info for info in infos if info.name == "vmlinux")
    assert vmlinux.kernel_btf
    with open(VMLINUX_PATH, "rb") as f:
        assert fetch_btf(vmlinux.id) == f.read()


def test_wrong_fd_and_missing_id():
    blob, u32, event = event_btf()
    fds = open_fds()
    with load_btf(blob) as btf, create_hash_map(btf, u32, event) as map_fd:
        with pytest.raises(ValueError, match="not a BPF BTF object"):
            btf_data(map_fd)
        with pytest.raises(ValueError):
            LoadedBTF(map_fd.dup())
        btf_id = btf.id
    assert not wait_gone(objects.BTFS, [btf_id])
    with pytest.raises(NotFoundError):
        fetch_btf(btf_id)
    assert_no_new_fds(fds)
