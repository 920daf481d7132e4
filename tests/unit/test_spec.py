"""CollectionSpec is data: built by the DSL without the kernel, copied and
changed without touching the declarations or the original."""

import doctest

import pytest

import pybpf.programs.feature_tour as tour
from pybpf import consts, spec
from pybpf.dsl import collection_spec


def test_docstring_examples():
    for module in (spec, consts):
        assert doctest.testmod(module).failed == 0


def test_the_dsl_makes_a_spec_of_maps_programs_and_configs():
    made = collection_spec(tour)
    assert set(made.programs) == {"tour", "tour_getppid"}
    assert made.configs["settings"].map == "settings"
    assert made.maps["settings"].flags & consts.BPF_F_RDONLY_PROG
    assert made.maps["calls"].max_entries == tour.calls.max_entries


def test_a_copy_changes_alone():
    made = collection_spec(tour)
    changed = made.copy()
    changed.maps["calls"].max_entries = 8
    changed.set_config({"scale": 7})
    assert made.maps["calls"].max_entries == tour.calls.max_entries
    assert made.configs["settings"].values == {}
    assert changed.configs["settings"].values == {"scale": 7}


def test_an_unknown_setting_names_the_known_ones():
    with pytest.raises(KeyError, match="no config declares speed .settings: prefix, scale, "
                                       "target_pid"):
        collection_spec(tour).set_config({"speed": 1})
