"""``pybpf prog loadall|load`` against ``bpftool prog loadall|load``, and
``pybpf disasm OBJ``: the same pins with the same translated code, nothing
left in the kernel but what the pins hold (the kernel's object lists
checked), ``--map``/``--set`` applied, and one-line errors that leave
nothing behind."""

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest
from kernel_objects import new_objects, snapshot
from objfile_corpus import BPFFS, bpftool_loadall, clang_objects, xlated  # noqa: F401

from pybpf.kernel import objects
from pybpf.kernel.maps import Map
from pybpf.objfile.bpf_object import BPFObject


def pybpf(*args, check=True):
    """``pybpf ARGS`` as a subprocess."""
    done = subprocess.run([sys.executable, "-m", "pybpf.cli"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=120)
    if check and done.returncode:
        raise AssertionError("pybpf %s: %s" % (" ".join(map(str, args)), done.stderr))
    return done


@pytest.fixture
def pin_dir(no_leaks):
    """A fresh path under bpffs, removed (with its pins) before ``no_leaks`` looks."""
    path = os.path.join(BPFFS, "pybpf_test_%s" % uuid.uuid4().hex[:12])
    yield path
    shutil.rmtree(path, ignore_errors=True)
    shared = os.path.join(BPFFS, "pybpf_test_shared")   # slots' map pinned by name
    if os.path.exists(shared):
        os.unlink(shared)


def _prog_id(path):
    """The id of the program pinned at ``path``, as bpftool reads it."""
    return json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "pinned", path],
                                     check=True, capture_output=True, text=True).stdout)["id"]


def _pinned_programs(directory):
    """{pin name: xlated} of the programs pinned in ``directory``."""
    return {name: xlated(_prog_id(os.path.join(directory, name)))
            for name in sorted(os.listdir(directory))}


@pytest.mark.parametrize("stem", ["minimal", "opensnoop", "net", "slots"])
def test_loadall_pins_what_bpftool_pins_and_nothing_more(stem, clang_objects,  # noqa: F811
                                                          pin_dir):
    path = clang_objects[stem]
    expected = bpftool_loadall(path)
    before = snapshot()
    pybpf("prog", "loadall", path, pin_dir)
    got = _pinned_programs(pin_dir)
    assert got == expected
    # what is new in the kernel is what the pins hold: the programs and their maps
    fresh = new_objects(before)
    assert fresh["progs"] == {_prog_id(os.path.join(pin_dir, n)) for n in got}
    held = set()
    for prog_id in fresh["progs"]:
        held.update(objects.PROGS.info_by_id(prog_id).map_ids)
    assert fresh.get("maps", set()) <= held | _inner_maps(held)


def _inner_maps(map_ids):
    """Maps held in map-of-maps slots (not in any program's map_ids)."""
    inner = set()
    for map_id in map_ids:
        info = objects.MAPS.info_by_id(map_id)
        if info.type_name in ("array_of_maps", "hash_of_maps"):
            with Map.from_id(map_id) as outer:
                inner.update(value for _, value in outer.items())
    return inner


def test_load_pins_the_first_program_only(clang_objects, pin_dir):  # noqa: F811
    path = clang_objects["slots"]
    before = snapshot()
    os.mkdir(pin_dir)
    pybpf("prog", "load", path, os.path.join(pin_dir, "first"))
    assert os.listdir(pin_dir) == ["first"]
    first = BPFObject(path).programs[0].name
    assert objects.PROGS.info_by_id(_prog_id(os.path.join(pin_dir, "first"))).name == first
    assert len(new_objects(before)["progs"]) == 1


def test_map_and_set_options(clang_objects, pin_dir):  # noqa: F811
    path = clang_objects["minimal"]
    bss_pin = pin_dir + "_bss"
    try:
        pybpf("prog", "loadall", path, pin_dir, "--set", "my_pid=0x7b", "--map",
              ".bss=" + bss_pin)
        variable = next(d for d in BPFObject(path).data if d.section == ".bss").variables
        with Map.from_pin(bss_pin) as bss:
            raw = bss[0]
        offset = variable["my_pid"].offset
        assert int.from_bytes(raw[offset:offset + 4], "little") == 123
    finally:
        if os.path.exists(bss_pin):
            os.unlink(bss_pin)


@pytest.mark.parametrize("args, message", [
    (["--set", "no_such=1"], "no config declares no_such"),
    (["--set", "my_pid=x" * 2], "my_pid"),
    (["--map", "nope=/sys/fs/bpf/x"], "has no map 'nope'"),
])
def test_bad_options_fail_in_one_line_leaving_nothing(args, message, clang_objects,  # noqa: F811
                                                      pin_dir):
    done = pybpf("prog", "loadall", clang_objects["minimal"], pin_dir, *args, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("pybpf: error: ") and done.stderr.count("\n") == 1
    assert message in done.stderr
    assert not os.path.exists(pin_dir)


def test_corrupt_object_fails_in_one_line(clang_objects, pin_dir, tmp_path):  # noqa: F811
    data = open(clang_objects["minimal"], "rb").read()
    for name, broken in (("truncated.o", data[:len(data) // 2]),
                         ("zeroed.o", data[:64] + bytes(len(data) - 64))):
        path = tmp_path / name
        path.write_bytes(broken)
        for args in (["prog", "loadall", path, pin_dir], ["disasm", path]):
            done = pybpf(*args, check=False)
            assert done.returncode == 1, done.stderr
            assert done.stderr.startswith("pybpf: error: %s" % path), done.stderr
            assert done.stderr.count("\n") == 1
    assert not os.path.exists(pin_dir)


def test_disasm_of_an_object_names_maps(clang_objects):  # noqa: F811
    path = clang_objects["slots"]
    out = pybpf("disasm", path, "-s", "tp/syscalls/sys_enter_getppid").stdout
    assert "# program entry, section tp/syscalls/sys_enter_getppid" in out
    assert "map[outer] ll" in out and "map[pybpf_test_shared] ll" in out
    assert "# map seen: bloom_filter" in out
    done = pybpf("disasm", path, "-s", "xdp", check=False)
    assert done.returncode == 1 and "has no program in section xdp" in done.stderr


def test_bench_elf_quick_run(tmp_path):
    """``tools/bench.py elf --quick`` runs and reports both loaders (no
    timing asserted)."""
    out = tmp_path / "bench.json"
    tools = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "tools", "bench.py")
    done = subprocess.run([sys.executable, tools, "elf", "--quick", "--json", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())["results"]["elf"]
    assert any(name.endswith(": pybpf") for name in figures)
    assert any(name.endswith(": bpftool") for name in figures)
    assert not any(name.endswith("fails") for name in figures)
