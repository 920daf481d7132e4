"""The perf buffer reader against records a real tracepoint program emits."""

import select

import pytest
from emitters import (PERF, Emitter, check_chunked_reads, check_close_wakes_a_blocked_read,
                      check_records, collect, drain, pinned, straddles, trigger_on_cpus)
from kernel_objects import assert_no_new_fds, assert_no_new_objects, open_fds, snapshot

from pybpf.errors import VerifierError
from pybpf.kernel import perf
from pybpf.kernel.maps import Map, MapSpec
from pybpf.consts import BPF_MAP_TYPE_PERF_EVENT_ARRAY

PAGE = perf.PAGE_SIZE


def perf_record_bytes(size: int) -> int:
    """A sample's bytes in the ring: header, u32 size, data, padded to 8."""
    return (8 + 4 + size + 7) // 8 * 8


@pytest.mark.parametrize("size", [16, 44, 128])
def test_every_record_arrives_in_order_per_cpu(size):
    count = 2000
    with Emitter(PERF, size) as emitter, emitter.reader(pages=64) as reader:
        trigger_on_cpus(count, perf.online_cpus())
        records = collect(reader, count)
        check_records(records, size, count)
        assert {r.cpu for r in records} == set(perf.online_cpus())
        assert emitter.tried() == count
        assert reader.stats() == (count, 0, 0, 0)


def test_the_emitter_numbers_records_whatever_the_atomics_probe_says(probe_says):
    """The emitter numbers records with a fetching atomic where the probe
    says the kernel has one (Linux 5.12), else with a plain load and store
    while the CPUs take turns: both give every number once."""
    probe_says("atomic_fetch")
    if probe_says.state == "present" and not probe_says.host("atomic_fetch").available:
        with pytest.raises(VerifierError, match="reserved fields"):
            Emitter(PERF, 44)
        return
    count = 1000
    with Emitter(PERF, 44) as emitter, emitter.reader(pages=64) as reader:
        trigger_on_cpus(count, perf.online_cpus())
        check_records(collect(reader, count), 44, count)
        assert emitter.tried() == count


@pytest.mark.parametrize("size", [44, 61, 100])
def test_records_wrapping_the_ring_end(size):
    chunk, chunks = 20, 30
    assert straddles(perf_record_bytes(size), chunk * chunks, PAGE)
    with Emitter(PERF, size) as emitter, emitter.reader(pages=1) as reader, pinned(0):
        check_chunked_reads(emitter, reader, chunk, chunks)


def test_overflow_received_plus_lost_is_what_was_tried():
    with Emitter(PERF, 128) as emitter, emitter.reader(pages=1) as reader, pinned(0):
        emitter.trigger(1000)             # nobody reads: the one-page ring overflows
        received = drain(reader)
        # the kernel reports a loss with the next record it can store
        emitter.trigger(1)
        received += drain(reader)
        lost = reader.lost()
        assert emitter.tried() == 1001
        assert 0 < lost and len(received) + lost == 1001
        assert reader.lost_per_cpu()[0] == lost
        assert len(received) == len({r.seq for r in received})
        assert reader.stats().received == len(received)


@pytest.mark.parametrize("options, quiet, wakes", [
    ({"wakeup_events": 8}, 7, 1),
    ({"watermark": 1024}, 1024 // perf_record_bytes(128), 2),
])
def test_wakeups_are_batched(options, quiet, wakes):
    with Emitter(PERF, 128) as emitter, emitter.reader(pages=4, **options) as reader, pinned(0):
        emitter.trigger(quiet)
        assert select.select([reader], [], [], 0.05)[0] == []   # not woken yet
        assert len(reader.read(timeout=0)) == quiet            # but the records are there
        emitter.trigger(quiet + wakes)
        assert select.select([reader], [], [], 1.0)[0] == [reader]
        assert len(reader.read(timeout=0)) == quiet + wakes


def test_raw_views():
    with Emitter(PERF, 24) as emitter, emitter.reader(pages=4) as reader, pinned(0):
        emitter.trigger(3)
        seen = []
        assert reader.read_raw(lambda views: seen.extend(bytes(v[:8]) for v in views),
                               timeout=1) == 3
        assert [int.from_bytes(b, "little") for b in seen] == [0, 1, 2]


def test_close_wakes_a_blocked_reader():
    with Emitter(PERF, 16) as emitter:
        check_close_wakes_a_blocked_read(emitter.reader(pages=1))


def test_bad_options():
    with Emitter(PERF, 16) as emitter:
        with pytest.raises(ValueError, match="power of two"):
            emitter.reader(pages=3)
        with pytest.raises(ValueError, match="watermark"):
            emitter.reader(pages=1, watermark=PAGE)


def test_nothing_is_left_behind():
    before, fds = snapshot(), open_fds()
    with Emitter(PERF, 64) as emitter:
        with emitter.reader(pages=2) as reader:
            emitter.trigger(10)
            assert len(collect(reader, 10)) == 10
        # with the reader gone its map slots are empty: the program's output fails, harmlessly
        emitter.trigger(5)
        assert emitter.tried() == 15
    assert_no_new_objects(before)
    assert_no_new_fds(fds)


def test_wrong_maps_are_refused():
    with Map.create(MapSpec(BPF_MAP_TYPE_PERF_EVENT_ARRAY, max_entries=1, name="tiny")) as m:
        with pytest.raises(ValueError, match="'tiny' has 1 entries, too few for CPU 1"):
            perf.PerfReader(m, cpus=[0, 1])
    with Map.create(MapSpec("array", key_size=4, value_size=4, max_entries=4, name="arr")) as m:
        with pytest.raises(ValueError, match="'arr' is a BPF_MAP_TYPE_ARRAY, not a perf event"):
            perf.PerfReader(m)


def test_failed_open_leaves_nothing():
    """A constructor that fails half-way (at a CPU that does not exist,
    after two that do) tears down what it opened."""
    before, fds = snapshot(), open_fds()
    with Map.create(MapSpec(BPF_MAP_TYPE_PERF_EVENT_ARRAY, max_entries=128,
                            name="events")) as m:
        with pytest.raises(OSError, match="CPU 99"):
            perf.PerfReader(m, cpus=[0, 1, 99])
    assert_no_new_objects(before)
    assert_no_new_fds(fds)

