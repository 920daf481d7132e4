"""The spec -> Collection path: specs are data that loading never changes,
and a Collection owns (and closes) everything it made."""

import gc
import os

import pytest

import pybpf.programs.count_syscalls as count_syscalls
import pybpf.programs.feature_tour as tour
import pybpf.programs.opensnoop as opensnoop
from pybpf.dsl import collection_spec
from pybpf.loader import Collection


def test_a_copied_spec_changes_alone_and_loads_as_changed(no_leaks):
    spec = collection_spec(count_syscalls)
    small = spec.copy()
    small.maps["counts"].max_entries = 16
    with Collection(spec) as big, Collection(small) as little:
        assert big.maps.counts.max_entries == 10240
        assert little.maps.counts.max_entries == 16
        assert big.maps.counts.id != little.maps.counts.id     # nothing shared, nothing global
    assert spec.maps["counts"].max_entries == count_syscalls.counts.max_entries == 10240


def test_typed_access_by_attribute_and_by_name(no_leaks):
    with Collection(collection_spec(count_syscalls)) as coll:
        assert coll.maps.counts is coll.maps["counts"]
        assert coll.programs.count_syscalls is coll.programs["count_syscalls"]
        with pytest.raises(AttributeError, match="no map named 'count' is loaded .*counts"):
            coll.maps.count


def test_config_given_at_load_applies_to_a_copy(no_leaks):
    spec = collection_spec(tour)
    with Collection(spec, config={"target_pid": os.getpid()}) as coll:
        assert coll.maps.settings[0].target_pid == os.getpid()
    assert spec.configs["settings"].values == {}
    with pytest.raises(KeyError, match="no config declares no_such_setting"):
        Collection(spec, config={"no_such_setting": 1})


def test_close_takes_down_readers_links_programs_and_maps_together(no_leaks):
    coll = Collection(collection_spec(opensnoop)).attach()
    reader = coll.reader(opensnoop.events, opensnoop.Event)
    try:
        assert len(coll.links) == len(coll.programs) == 4 and not reader.closed
    finally:
        coll.close()
    assert reader.closed and coll.closed and not coll.maps and not coll.links
    coll.close()                                    # twice is harmless


def test_an_unclosed_collection_warns_and_closes_when_collected(no_leaks):
    coll = Collection(collection_spec(count_syscalls)).attach()
    with pytest.warns(ResourceWarning, match="unclosed <Collection count_syscalls>"):
        del coll
        gc.collect()


def test_a_failed_load_leaves_nothing(no_leaks):
    spec = collection_spec(count_syscalls)
    spec.maps["counts"].max_entries = 0             # the kernel refuses the map
    with pytest.raises(Exception, match="max_entries=0"):
        Collection(spec)
