"""The BPF ring buffer reader against records a real tracepoint program emits."""

import pytest
from emitters import (RINGBUF, Emitter, check_chunked_reads, check_close_wakes_a_blocked_read,
                      check_records, collect, drain, pinned, straddles, trigger_on_cpus)
from kernel_objects import assert_no_new_fds, assert_no_new_objects, open_fds, snapshot

from pybpf.kernel import perf, ringbuf
from pybpf.kernel.maps import Map, MapSpec
from pybpf.consts import BPF_MAP_TYPE_PERCPU_ARRAY

PAGE = ringbuf.PAGE_SIZE


def ringbuf_record_bytes(size: int) -> int:
    """A record's bytes in the ring: 8-byte header, data, padded to 8."""
    return (ringbuf.BPF_RINGBUF_HDR_SZ + size + 7) // 8 * 8


@pytest.mark.parametrize("size", [16, 44, 128])
def test_every_record_arrives_in_order_per_cpu(size):
    count = 2000
    with Emitter(RINGBUF, size, ring_size=128 * PAGE) as emitter, emitter.reader() as reader:
        trigger_on_cpus(count, perf.online_cpus())
        records = collect(reader, count)
        check_records(records, size, count)
        assert {r.cpu for r in records} == set(perf.online_cpus())
        assert reader.stats() == (count, 0, 0, 0)


@pytest.mark.parametrize("size", [44, 61, 100])
def test_records_wrapping_the_ring_end(size):
    chunk, chunks = 20, 30
    assert straddles(ringbuf_record_bytes(size), chunk * chunks, PAGE)
    with Emitter(RINGBUF, size, ring_size=PAGE) as emitter, emitter.reader() as reader:
        check_chunked_reads(emitter, reader, chunk, chunks)


def test_overflow_received_plus_lost_is_what_was_tried():
    with Emitter(RINGBUF, 128, ring_size=PAGE) as emitter, emitter.reader() as reader, \
            pinned(1):
        emitter.trigger(1000)             # nobody reads: the one-page ring overflows
        received = drain(reader)
        assert emitter.tried() == 1000
        assert reader.lost() > 0 and len(received) + reader.lost() == 1000
        assert reader.lost_per_cpu() == {0: 0, 1: reader.lost()}
        check_records(received, 128, len(received))  # the first ones, all intact


def test_without_a_counter_loss_is_not_counted():
    with Emitter(RINGBUF, 16) as emitter:
        with ringbuf.RingBufReader(emitter.events) as reader:
            assert reader.lost() is None and reader.stats().lost is None


def test_wrong_maps_are_refused():
    with Emitter(RINGBUF, 16) as emitter:
        with pytest.raises(ValueError, match="'counter' is a BPF_MAP_TYPE_ARRAY map, not a ring"):
            ringbuf.RingBufReader(emitter.maps["counter"])
        with pytest.raises(ValueError, match="'config' must be a "
                                                           "BPF_MAP_TYPE_PERCPU_ARRAY"):
            ringbuf.RingBufReader(emitter.events, lost_counter_map=emitter.maps["config"])
        with Map.create(MapSpec(BPF_MAP_TYPE_PERCPU_ARRAY, key_size=4, value_size=4,
                                max_entries=1, name="narrow")) as narrow:
            with pytest.raises(ValueError, match="4-byte values"):
                ringbuf.RingBufReader(emitter.events, lost_counter_map=narrow)


def test_raw_views():
    with Emitter(RINGBUF, 24) as emitter, emitter.reader() as reader:
        emitter.trigger(3)
        seen = []
        assert reader.read_raw(lambda views: seen.extend(bytes(v) for v in views),
                               timeout=1) == 3
        assert [int.from_bytes(b[:8], "little") for b in seen] == [0, 1, 2]
        assert all(len(b) == 24 for b in seen)     # ring buffer payloads are not padded


def test_close_wakes_a_blocked_reader():
    with Emitter(RINGBUF, 16) as emitter:
        check_close_wakes_a_blocked_read(emitter.reader())


def test_nothing_is_left_behind():
    before, fds = snapshot(), open_fds()
    with Emitter(RINGBUF, 64) as emitter:
        with emitter.reader() as reader:
            emitter.trigger(10)
            assert len(collect(reader, 10)) == 10
        assert reader.closed and reader.stats().received == 10
    assert_no_new_objects(before)
    assert_no_new_fds(fds)
