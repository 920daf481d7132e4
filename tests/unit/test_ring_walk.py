"""The perf and BPF ring walkers on rings built in memory: the same code the
readers run on the kernel's mmaps, fed bytearrays laid out like them,
including wrapped, lost, unknown, short and corrupt records."""

import os
import re
import struct
import threading
import time

import construct
import pytest

from pybpf.kernel import perf, ringbuf
from pybpf.kernel.reader import CorruptRingError, RingReader
from pybpf.kernel.records import ConstructDecoder, decoder_for, to_builtin

PAGE = 4096


# --- building rings --------------------------------------------------------------------

def perf_sample(payload: bytes) -> bytes:
    """A PERF_RECORD_SAMPLE as the kernel writes it: the raw size is padded
    so that the record is a multiple of 8 bytes."""
    raw = len(payload) + (-(len(payload) + 4) % 8)
    return struct.pack("<IHHI", perf.PERF_RECORD_SAMPLE, 0, 12 + raw, raw) + \
        payload + bytes(raw - len(payload))


def perf_lost(count: int) -> bytes:
    return struct.pack("<IHHQQ", perf.PERF_RECORD_LOST, 0, 24, 1234, count)


def perf_ring(records, pages=1, tail=0) -> bytearray:
    """A perf_event_mmap_page plus data pages holding ``records`` (bytes)
    from position ``tail`` on, wrapping around the end like the kernel."""
    size = pages * PAGE
    mem = bytearray(PAGE + size)
    struct.pack_into("<QQ", mem, perf.DATA_TAIL_OFFSET + 8, PAGE, size)
    head = tail
    for record in records:
        for i, byte in enumerate(record):
            mem[PAGE + (head + i) % size] = byte
        head += len(record)
    struct.pack_into("<QQ", mem, perf.DATA_HEAD_OFFSET, head, tail)
    return mem


def data_tail(mem) -> int:
    return struct.unpack_from("<Q", mem, perf.DATA_TAIL_OFFSET)[0]


def rb_record(payload: bytes, flags: int = 0, length=None) -> bytes:
    length = len(payload) if length is None else length
    return struct.pack("<II", length | flags, 0) + payload + bytes(-len(payload) % 8)


def ring_buffer(records, pages=1, start=0):
    """(consumer page, producer page + data mapped twice, size) holding
    ``records`` from position ``start`` on."""
    size = pages * PAGE
    data = bytearray(size)
    producer = start
    for record in records:
        for i, byte in enumerate(record):
            data[(producer + i) % size] = byte
        producer += len(record)
    consumer_page = bytearray(PAGE)
    struct.pack_into("<Q", consumer_page, 0, start)
    producer_page = bytearray(PAGE)
    struct.pack_into("<Q", producer_page, 0, producer)
    return consumer_page, producer_page + data + data, size


def consumer_pos(consumer_page) -> int:
    return struct.unpack_from("<Q", consumer_page)[0]


def fetch(ring, min_size):
    """What ``ring.fetch`` framed, as one bytes object per payload, and its error."""
    buffer, offsets, error = ring.fetch(min_size)
    return [bytes(view) for view in ring.payloads(buffer, offsets)], error


def fetched(ring, min_size):
    got, error = fetch(ring, min_size)
    assert error is None
    return got


def payloads(n, size=20):
    return [struct.pack("<I", i) + bytes([i % 251]) * (size - 4) for i in range(n)]


# --- perf ring ---------------------------------------------------------------------------

def test_perf_samples_and_lost_counts():
    data = payloads(3, 21)
    mem = perf_ring([perf_sample(data[0]), perf_lost(5), perf_sample(data[1]), perf_lost(2),
                     perf_sample(data[2])])
    ring = perf.PerfRing(mem, cpu=1)
    got = fetched(ring, 21)
    # payloads keep the kernel's padding (8 + 4 + 21 + 7 makes the record 40 bytes)
    assert [p[:21] for p in got] == data and len(got[0]) == 21 + 7
    assert ring.lost == 7
    assert data_tail(mem) == 0          # nothing given back before commit
    ring.commit()
    assert data_tail(mem) == struct.unpack_from("<Q", mem, perf.DATA_HEAD_OFFSET)[0]
    assert fetched(ring, 21) == []


@pytest.mark.parametrize("record_size", [13, 20, 44, 61, 128])
@pytest.mark.parametrize("tail_from_end", [0, 4, 8, 12, 16, 24, 40])
def test_perf_records_wrapping_the_end(record_size, tail_from_end):
    data = payloads(10, record_size)
    tail = 3 * PAGE - tail_from_end     # positions grow forever; the ring is one page
    mem = perf_ring([perf_sample(p) for p in data], tail=tail)
    ring = perf.PerfRing(mem, cpu=0)
    assert [p[:record_size] for p in fetched(ring, record_size)] == data
    ring.commit()
    assert data_tail(mem) == tail + 10 * len(perf_sample(data[0]))


def test_perf_unknown_and_short_records_are_counted_and_skipped():
    data = payloads(2, 32)
    unknown = struct.pack("<IHH", 99, 0, 16) + bytes(8)
    mem = perf_ring([perf_sample(data[0]), unknown, perf_sample(b"tiny"), perf_sample(data[1]),
                     struct.pack("<IHH", 98, 0, 8)])
    ring = perf.PerfRing(mem, cpu=0)
    assert [p[:32] for p in fetched(ring, 32)] == data
    assert (ring.unknown, ring.short) == (2, 1)


@pytest.mark.parametrize("bad, problem", [
    (struct.pack("<IHH", perf.PERF_RECORD_SAMPLE, 0, 0) + bytes(8), "size 0, outside"),
    (struct.pack("<IHH", 7, 0, 4) + bytes(12), "size 4, outside"),
    (struct.pack("<IHHI", perf.PERF_RECORD_SAMPLE, 0, 4096, 4), "size 4096, outside"),
    (struct.pack("<IHHI", perf.PERF_RECORD_SAMPLE, 0, 16, 200) + bytes(4),
     "claims 200 bytes of data in a 16-byte record"),
    (struct.pack("<IHHQ", perf.PERF_RECORD_LOST, 0, 16, 0), "PERF_RECORD_LOST .* size 16"),
    (struct.pack("<IHH", perf.PERF_RECORD_SAMPLE, 0, 8), "cut off"),
    (b"\x09\x00\x00", "3 stray bytes"),
])
def test_perf_corrupt_ring_keeps_good_records_and_recovers(bad, problem):
    good = payloads(2)
    mem = perf_ring([perf_sample(good[0]), perf_sample(good[1]), bad])
    ring = perf.PerfRing(mem, cpu=3)
    got, error = fetch(ring, 20)
    assert [p[:20] for p in got] == good
    assert isinstance(error, CorruptRingError)
    assert re.search("perf ring of CPU 3: .*" + problem, str(error)), error
    ring.commit()
    # the bad bytes were skipped: the ring is empty, not stuck
    assert fetched(ring, 20) == []
    head = struct.unpack_from("<Q", mem, perf.DATA_HEAD_OFFSET)[0]
    assert data_tail(mem) == head


def test_perf_head_beyond_the_ring_is_corrupt():
    mem = perf_ring([])
    struct.pack_into("<Q", mem, perf.DATA_HEAD_OFFSET, 3 * PAGE)
    ring = perf.PerfRing(mem, cpu=0)
    got, error = fetch(ring, 0)
    assert got == [] and "12288 bytes apart in a 4096-byte ring" in str(error)
    ring.commit()
    assert fetched(ring, 0) == [] and data_tail(mem) == 3 * PAGE


def test_perf_ring_rejects_a_data_area_that_does_not_fit():
    mem = perf_ring([])
    struct.pack_into("<QQ", mem, perf.DATA_TAIL_OFFSET + 8, PAGE, 3 * PAGE)
    with pytest.raises(ValueError, match="does not fit"):
        perf.PerfRing(mem, cpu=0)


# --- BPF ring buffer ----------------------------------------------------------------------

def test_ringbuf_records_busy_and_discard():
    data = payloads(4, 13)
    consumer, producer, size = ring_buffer([
        rb_record(data[0]), rb_record(data[1], ringbuf.BPF_RINGBUF_DISCARD_BIT),
        rb_record(data[2]), rb_record(data[3], ringbuf.BPF_RINGBUF_BUSY_BIT)])
    ring = ringbuf.RingBuffer(consumer, producer, size)
    assert fetched(ring, 13) == [data[0], data[2]]
    ring.commit()
    # stopped at the busy record: the consumer position is its start
    assert consumer_pos(consumer) == 3 * 24
    assert fetched(ring, 13) == []
    # the producer commits it: it comes out
    struct.pack_into("<I", producer, PAGE + 3 * 24, 13)
    assert fetched(ring, 13) == [data[3]]


@pytest.mark.parametrize("record_size", [1, 13, 44, 61, 128])
@pytest.mark.parametrize("start_from_end", [8, 16, 24, 64])
def test_ringbuf_records_wrapping_the_end(record_size, start_from_end):
    data = payloads(12, max(record_size, 4))
    start = 5 * PAGE - start_from_end
    consumer, producer, size = ring_buffer([rb_record(p) for p in data], start=start)
    ring = ringbuf.RingBuffer(consumer, producer, size)
    assert fetched(ring, 0) == data
    ring.commit()
    assert consumer_pos(consumer) == start + 12 * len(rb_record(data[0]))


def test_ringbuf_short_records_are_counted():
    consumer, producer, size = ring_buffer([rb_record(b"ab"), rb_record(bytes(16))])
    ring = ringbuf.RingBuffer(consumer, producer, size)
    assert fetched(ring, 16) == [bytes(16)]
    assert ring.short == 1


@pytest.mark.parametrize("length", [PAGE, PAGE - 4, 1 << 29])
def test_ringbuf_length_past_the_data_is_reported_and_skipped(length):
    good = payloads(1)
    consumer, producer, size = ring_buffer([rb_record(good[0]),
                                            rb_record(bytes(8), length=length)])
    ring = ringbuf.RingBuffer(consumer, producer, size)
    got, error = fetch(ring, 0)
    assert got == good
    assert "ring buffer of 4096 bytes: record at position 32 has length %d, past the " \
        "producer" % length in str(error)
    ring.commit()
    assert fetched(ring, 0) == []
    assert consumer_pos(consumer) == 32 + 16


def test_ringbuf_producer_behind_consumer_is_reported_and_resynced():
    consumer, producer, size = ring_buffer([], start=512)
    struct.pack_into("<Q", producer, 0, 256)
    ring = ringbuf.RingBuffer(consumer, producer, size)
    got, error = fetch(ring, 0)
    assert got == [] and "producer position 256 is not within" in str(error)
    ring.commit()
    assert consumer_pos(consumer) == 256 and fetched(ring, 0) == []


def test_ringbuf_rejects_bad_sizes():
    with pytest.raises(ValueError, match="power-of-two"):
        ringbuf.RingBuffer(bytearray(PAGE), bytearray(PAGE + 6 * PAGE), 3 * PAGE)
    with pytest.raises(ValueError, match="smaller than"):
        ringbuf.RingBuffer(bytearray(PAGE), bytearray(2 * PAGE), PAGE)


# --- the shared reader loop, with an in-memory ring -----------------------------------------

class MemoryReader(RingReader):
    """A RingReader over one in-memory ring buffer, woken through a pipe
    that stands in for the map fd."""

    def __init__(self, records, decoder=None):
        super().__init__(decoder)
        self.consumer, self.producer, size = ring_buffer(records)
        self._rings.append(ringbuf.RingBuffer(self.consumer, self.producer, size))
        self.wake_r, self.wake_w = os.pipe()
        self._resources.callback(os.close, self.wake_r)
        self._resources.callback(os.close, self.wake_w)
        self._poller.register(self.wake_r)

    def lost_per_cpu(self):
        return None


def test_reader_read_and_stats():
    data = payloads(3)
    with MemoryReader([rb_record(p) for p in data] + [rb_record(b"x")]) as reader:
        assert reader.read(timeout=0) == data + [b"x"]
        assert reader.read(timeout=0.01) == []
        assert reader.stats() == (4, None, 0, 0)


def test_corrupt_ring_error_comes_after_the_good_records():
    good = payloads(2)
    bad = rb_record(bytes(8), length=1 << 20)
    with MemoryReader([rb_record(p) for p in good] + [bad]) as reader:
        assert reader.read(timeout=0) == good
        with pytest.raises(CorruptRingError, match="length 1048576"):
            reader.read(timeout=0)
        assert reader.read(timeout=0) == []       # skipped: not stuck, not looping


def test_corrupt_ring_without_good_records_raises_at_once():
    with MemoryReader([rb_record(bytes(8), length=1 << 20)]) as reader:
        with pytest.raises(CorruptRingError, match="length 1048576"):
            reader.read(timeout=1)
        assert reader.read(timeout=0) == []


def test_decoders_agree_through_the_reader():
    event = construct.Struct("seq" / construct.Int32ul, "name" / construct.Bytes(12))
    records = [rb_record(p, length=16) for p in payloads(5, 16)] + [rb_record(b"short")]
    fast = MemoryReader(records, decoder=decoder_for(event, "Event"))
    slow = MemoryReader(records, decoder=ConstructDecoder(event))
    with fast, slow:
        assert [to_builtin(r) for r in fast.read(timeout=0)] == \
            [to_builtin(r) for r in slow.read(timeout=0)]
        assert fast.stats() == slow.stats() == (5, None, 1, 0)


def test_read_raw_releases_the_views():
    kept = []
    with MemoryReader([rb_record(p) for p in payloads(2)]) as reader:
        assert reader.read_raw(kept.extend, timeout=0) == 2
        with pytest.raises(ValueError, match="released"):
            bytes(kept[0])


def test_consume_lends_each_batch_in_place_and_counts_short_records():
    """The handler protocol: one lease per ring batch, payloads read at
    their offsets in the lent buffer; views it made are released after."""
    data = payloads(3, 16)
    seen, kept = [], []

    def handle(lease):
        seen.extend(bytes(lease.buffer[at:at + 16]) for at in lease.offsets)
        kept.extend(lease.views())

    with MemoryReader([rb_record(p, length=16) for p in data] + [rb_record(b"tiny")]) as reader:
        assert reader.consume(handle, min_size=16, timeout=0) == 3
        assert reader.stats() == (3, None, 1, 0)
    assert seen == data
    with pytest.raises(ValueError, match="released"):
        bytes(kept[0])


def test_close_wakes_a_blocked_reader():
    reader = MemoryReader([])
    result = []
    thread = threading.Thread(target=lambda: result.append(reader.read(timeout=None)))
    thread.start()
    time.sleep(0.05)
    assert thread.is_alive()
    reader.close()
    thread.join(timeout=2)
    assert not thread.is_alive() and result == [[]]
    assert reader.read(timeout=0) == []     # closed: nothing, no error


def test_wake_without_records_waits_to_the_deadline():
    with MemoryReader([]) as reader:
        os.write(reader.wake_w, b"x")       # readable, but the ring is empty
        start = time.monotonic()
        assert reader.read(timeout=0.1) == []
        assert time.monotonic() - start >= 0.09
