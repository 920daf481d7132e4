"""The ELF loader against its oracle, libbpf (the distribution's bpftool):
every program ``bpftool prog loadall`` loads must load through pybpf with
the same translated instructions (``bpftool prog dump xlated``), map ids
aside; an object bpftool refuses, pybpf refuses with one line."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import uuid

import pytest
from objfile_corpus import clang_objects, shipped_objects  # noqa: F401 (fixture)

from pybpf.errors import PyBPFError
from pybpf.loader import Collection
from pybpf.objfile.bpf_object import BPFObject
from pybpf.objfile.maps import LEGACY_MAPS_SECTION, LIBBPF_PIN_BY_NAME
from pybpf.objfile.reader import read
from pybpf.objfile.to_spec import collection_spec

BPFFS = "/sys/fs/bpf"

_MAP_ID = re.compile(r"map\[id:\d+\]")


def _xlated(prog_id: int) -> str:
    """The kernel's instructions, map ids and C-line comments (which only
    line_info gives) left out."""
    text = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog_id)],
                          capture_output=True, text=True, check=True).stdout
    return "\n".join(_MAP_ID.sub("map[id:N]", line) for line in text.splitlines()
                     if not line.lstrip().startswith(";"))


def _by_name_pins(path: str):
    """The pins libbpf makes for maps declared with LIBBPF_PIN_BY_NAME."""
    try:
        maps = BPFObject(path).maps
    except PyBPFError:
        return []
    return [os.path.join(BPFFS, m.name) for m in maps if m.pinning == LIBBPF_PIN_BY_NAME]


@contextlib.contextmanager
def _by_name_pins_removed(path: str):
    """Remove the maps ``path`` pins by name (those not there before) on exit."""
    ours = [pin for pin in _by_name_pins(path) if not os.path.exists(pin)]
    try:
        yield
    finally:
        for pin in ours:
            if os.path.exists(pin):
                os.unlink(pin)


def bpftool_loadall(path: str):
    """{program name: xlated} as libbpf loads ``path``, or None if it refuses.
    The pins (and maps pinned by name) are removed before returning, which
    unloads everything."""
    pin_dir = BPFFS + "/pybpf_test_%s" % uuid.uuid4().hex[:12]
    with _by_name_pins_removed(path):
        return _bpftool_pinned(path, pin_dir)


def _bpftool_pinned(path: str, pin_dir: str):
    try:
        done = subprocess.run(["bpftool", "prog", "loadall", path, pin_dir],
                              capture_output=True, text=True)
        if done.returncode:
            return None
        out = {}
        for pin in sorted(os.listdir(pin_dir)) if os.path.isdir(pin_dir) else ():
            info = json.loads(subprocess.run(
                ["bpftool", "-j", "prog", "show", "pinned", os.path.join(pin_dir, pin)],
                capture_output=True, text=True, check=True).stdout)
            out[pin] = _xlated(info["id"])
        return out
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)


def pybpf_loadall(path: str):
    """{program name: xlated} as pybpf loads ``path`` (closed again, its
    maps pinned by name removed)."""
    spec = collection_spec(path)
    if not spec.programs:
        return {}
    with _by_name_pins_removed(path), Collection(spec) as coll:
        return {name: _xlated(program.id) for name, program in coll.programs.items()}


def _has_legacy_maps(path: str) -> bool:
    return LEGACY_MAPS_SECTION in read(path).by_name


def _check(path: str) -> None:
    expected = bpftool_loadall(path)
    if expected is None and _has_legacy_maps(path):
        # libbpf 1.x dropped legacy "maps" sections, which cilium/ebpf and pybpf
        # read: no oracle; pybpf loads the object or refuses it in one line
        try:
            pybpf_loadall(path)
        except PyBPFError as exc:
            assert "\n" not in str(exc)
        return
    if expected is None:
        with pytest.raises((PyBPFError, ValueError)) as refused:
            pybpf_loadall(path)
        assert "\n" not in str(refused.value)
        return
    got = pybpf_loadall(path)
    assert set(got) == set(expected)
    for name in expected:
        assert got[name] == expected[name], name


@pytest.mark.parametrize("path", shipped_objects(), ids=os.path.basename)
def test_shipped_object_matches_libbpf(path, no_leaks):
    _check(path)


@pytest.mark.parametrize("stem", ["minimal", "opensnoop", "net", "slots"])
def test_clang_object_matches_libbpf(stem, clang_objects, no_leaks):  # noqa: F811
    assert bpftool_loadall(clang_objects[stem]) is not None
    _check(clang_objects[stem])
