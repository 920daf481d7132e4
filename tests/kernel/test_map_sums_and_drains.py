"""Maps read from Python the way bcc users read them: per-CPU values added
up over the CPUs (``.sum(key)``), and a drain (``lookup_and_delete_batch``)
that loses no entry a program adds while it runs."""

import threading

import construct
import pytest

from pybpf.consts import BPF_NOEXIST
from pybpf.dsl import HashMap, collection_spec, raw_tracepoint, u64
from pybpf.kernel import maps, sys
from pybpf.kernel.maps import Map, MapSpec
from pybpf.loader import Collection

NCPUS = len(maps.possible_cpus())

seen = HashMap(key=u64, value=u64, max_entries=1 << 14)


@raw_tracepoint("sys_enter")
def note(p, ctx):
    """Each run adds a new entry: key ``args[0]``, value ``args[0] + 1``."""
    seen.update(ctx.args[0], ctx.args[0] + 1, BPF_NOEXIST)


def test_sum_adds_up_ints_and_structs_over_cpus():
    value = construct.Struct("calls" / construct.Int64ul, "ns" / construct.Int32ul)
    with Map.create(MapSpec("percpu_hash", key_size=4, value=value, max_entries=4,
                            name="spent")) as m:
        m[1] = [dict(calls=cpu + 1, ns=10 * cpu) for cpu in range(NCPUS)]
        total = m.sum(1)
        assert (total.calls, total.ns) == (NCPUS * (NCPUS + 1) // 2, 5 * NCPUS * (NCPUS - 1))
        with pytest.raises(KeyError):
            m.sum(2)
    with Map.create(MapSpec("percpu_array", value_size=8, max_entries=1, name="n")) as m:
        m[0] = list(range(1, NCPUS + 1))
        assert m.sum(0) == NCPUS * (NCPUS + 1) // 2
    with Map.create(MapSpec("hash", key_size=4, value_size=8, max_entries=1, name="flat")) as m:
        with pytest.raises(TypeError, match="flat.*not a per-CPU map"):
            m.sum(0)


def drain_while_running(loaded, runs):
    """Run ``note`` ``runs`` times on another thread while this one drains
    the map; then drain once more. Every drained (key, value), in order."""
    program, live = loaded.programs["note"], loaded.maps["seen"]

    def run():
        for key in range(runs):
            assert program.test_run(ctx=key.to_bytes(8, "little") + bytes(8)).retval == 0

    runner = threading.Thread(target=run)
    drained = []
    runner.start()
    try:
        while runner.is_alive():
            drained += live.lookup_and_delete_batch(batch_size=64)
    finally:
        runner.join()
    drained += live.lookup_and_delete_batch(batch_size=64)
    return drained


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "per-key"])
def test_a_drain_loses_nothing_added_while_it_runs(no_leaks, batch):
    runs = 4000
    with Collection(collection_spec([note])) as loaded:
        if not batch:
            loaded.maps["seen"]._batch_unsupported.add(sys.BPF_MAP_LOOKUP_AND_DELETE_BATCH)
        drained = drain_while_running(loaded, runs)
        assert loaded.maps["seen"].count() == 0
        # the per-key way takes each entry in one step too, not read then delete
        assert sys.BPF_MAP_LOOKUP_AND_DELETE_ELEM not in loaded.maps["seen"]._batch_unsupported
    assert sorted(drained) == [(key, key + 1) for key in range(runs)]
