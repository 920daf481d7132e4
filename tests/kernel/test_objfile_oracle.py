"""The ELF loader against its oracle, libbpf (the distribution's bpftool):
every program ``bpftool prog loadall`` loads must load through pybpf with
the same translated instructions (``bpftool prog dump xlated``), map ids
aside; an object bpftool refuses, pybpf refuses with one line."""

import os

import pytest
from kernel_objects import assert_no_new_fds, assert_no_new_objects, open_fds, snapshot
from objfile_corpus import (bpftool_loadall, by_name_pins_removed, clang_objects,  # noqa: F401
                            shipped_objects, xlated)

from pybpf.errors import PyBPFError
from pybpf.loader import Collection
from pybpf.objfile.maps import LEGACY_MAPS_SECTION
from pybpf.objfile.reader import read
from pybpf.objfile.to_spec import collection_spec


def pybpf_loadall(path: str):
    """{program name: xlated} as pybpf loads ``path`` (closed again, its
    maps pinned by name removed)."""
    spec = collection_spec(path)
    if not spec.programs:
        return {}
    with by_name_pins_removed(path), Collection(spec) as coll:
        return {name: xlated(program.id) for name, program in coll.programs.items()}


def _has_legacy_maps(path: str) -> bool:
    return LEGACY_MAPS_SECTION in read(path).by_name


def _check(path: str, libbpf_loads: bool = False) -> None:
    """Compare with libbpf. The leak check covers pybpf's load only:
    libbpf itself sometimes leaves a prog array behind (an empty
    ``jumps`` of slots.bpf.o, seen with bpftool alone), which is not ours
    to answer for."""
    expected = bpftool_loadall(path)
    assert expected is not None or not libbpf_loads, "libbpf refused %s" % path
    before, fds = snapshot(), open_fds()
    _check_against(path, expected)
    assert_no_new_objects(before)
    assert_no_new_fds(fds)


def _check_against(path: str, expected) -> None:
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
def test_shipped_object_matches_libbpf(path):
    _check(path)


@pytest.mark.parametrize("stem", ["minimal", "opensnoop", "net", "slots"])
def test_clang_object_matches_libbpf(stem, clang_objects):  # noqa: F811
    _check(clang_objects[stem], libbpf_loads=True)
