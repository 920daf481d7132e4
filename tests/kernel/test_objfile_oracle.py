"""The ELF loader against its oracle, libbpf (the distribution's bpftool):
every program ``bpftool prog loadall`` loads must load through pybpf with
the same translated instructions (``bpftool prog dump xlated``), map ids
aside; an object bpftool refuses, pybpf refuses with one line."""

import os

import pytest
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
