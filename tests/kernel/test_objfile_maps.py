"""What an object's maps get before its programs run, as libbpf gives it:
initialised map-of-maps and prog-array slots, a bloom filter's
``map_extra``, and maps pinned by name (``LIBBPF_PIN_BY_NAME``) under
/sys/fs/bpf, reused by the next load when compatible, refused when not,
and unpinned again when the load that pinned them fails."""

import os

import pytest
from objfile_corpus import clang_objects  # noqa: F401 (fixture)

from pybpf.errors import BPFError
from pybpf.loader import Collection
from pybpf.objfile.to_spec import collection_spec

PIN = "/sys/fs/bpf/pybpf_test_shared"


@pytest.fixture
def slots(no_leaks, clang_objects):  # noqa: F811
    """The path of ``slots``; its pin removed (if a test left it) before
    ``no_leaks`` looks (specs are made in the tests: a spec holds the
    object's BTF while it lives)."""
    assert not os.path.exists(PIN)
    yield clang_objects["slots"]
    if os.path.exists(PIN):
        os.unlink(PIN)


def test_initialised_slots_hold_the_maps_and_programs_named(slots):
    slots_spec = collection_spec(slots)
    with Collection(slots_spec) as coll:
        maps = coll.maps
        assert maps.outer[0] == maps.inner_a.id and maps.outer[2] == maps.inner_b.id
        with pytest.raises(KeyError):
            maps.outer[1]
        assert maps.jumps[1] == coll.programs.tail_target.id
        assert maps.seen.info().type_name == "bloom_filter"
        assert slots_spec.maps["seen"].map_extra == 3


def test_map_pinned_by_name_is_reused_by_the_next_load(slots):
    slots_spec = collection_spec(slots)
    with Collection(slots_spec) as first:
        first.maps.pybpf_test_shared[0] = 41
        pinned_id = first.maps.pybpf_test_shared.id
    assert os.path.exists(PIN)
    with Collection(slots_spec) as second:
        assert second.maps.pybpf_test_shared.id == pinned_id
        assert second.maps.pybpf_test_shared[0] == 41
    os.unlink(PIN)


def test_incompatible_pin_is_refused(slots):
    slots_spec = collection_spec(slots)
    with Collection(slots_spec):
        pass
    changed = slots_spec.copy()
    changed.maps["pybpf_test_shared"].max_entries = 16
    with pytest.raises(BPFError, match="max_entries 8, not 16"):
        Collection(changed)
    os.unlink(PIN)


def test_failed_load_unpins_what_it_pinned(slots):
    slots_spec = collection_spec(slots)
    broken = slots_spec.copy()
    broken.maps["jumps"].contents[1] = "no_such_program"
    with pytest.raises(KeyError, match="no_such_program"):
        Collection(broken)
    assert not os.path.exists(PIN)


def test_program_with_autoload_off_is_not_loaded(slots):
    slots_spec = collection_spec(slots)
    slots_spec.programs["entry"].autoload = False
    with Collection(slots_spec) as coll:
        assert list(coll.programs) == ["tail_target"]
        assert coll.maps.jumps[1] == coll.programs.tail_target.id
        with pytest.raises(KeyError, match="entry is loaded"):
            coll.attach("entry")
    os.unlink(PIN)
