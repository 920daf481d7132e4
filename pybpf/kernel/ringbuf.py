"""The BPF ring buffer reader (``BPF_MAP_TYPE_RINGBUF``, Linux 5.8).

One ring shared by all CPUs, mapped in two parts: the consumer page
read-write (we publish how far we have read), and the producer page plus the
data area read-only. The kernel maps the data area twice in a row, so a
record that wraps around the end is still contiguous in our mapping and is
read in place. Each record has an 8-byte header (length with the busy and
discard bits, page offset) and is padded to 8 bytes.

The kernel keeps no count of records it could not reserve. The program side
must count them: bump a per-CPU u64 at key 0 of a ``BPF_MAP_TYPE_PERCPU_ARRAY``
whenever ``bpf_ringbuf_reserve`` returns NULL (or ``bpf_ringbuf_output``
fails); :class:`RingBufReader` sums that map for :meth:`RingBufReader.lost`.

The ring walking (:func:`walk_ringbuf`, :class:`RingBuffer`) works on any
buffer, so tests run it on rings built in memory; waiting, lending
records to a handler (:meth:`~pybpf.kernel.reader.RingReader.consume`),
decoding and teardown are :class:`~pybpf.kernel.reader.RingReader`'s.
"""

import mmap
import struct
from typing import Any, Dict, List, Optional, Tuple

from . import objects
from . import sys as _sys
from .map_codecs import possible_cpus
from .reader import Ring, RingReader, release_mapping
from .records import RecordDecoder
from .. import consts

# include/uapi/linux/bpf.h
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8

# struct bpf_ringbuf_hdr { u32 len; u32 pg_off; } (kernel/bpf/ringbuf.c);
# only len concerns the reader.
_HEADER_LEN = struct.Struct("<I")
# consumer_pos and producer_pos: an unsigned long at the start of their pages
# (moved as native "Q" memoryview items: see RingBuffer)
_LENGTH_MASK = ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) & 0xFFFFFFFF

PAGE_SIZE = mmap.PAGESIZE


def walk_ringbuf(data: memoryview, size: int, consumer: int, producer: int,
                 min_size: int) -> Tuple[List[int], int, int, str]:
    """Frame the records from position ``consumer`` up to ``producer`` in
    ``data``, the data area mapped twice (``2 * size`` bytes).

    Stops at the first record still being written (busy bit). Returns
    ``(offsets, position, short, problem)``: where in ``data`` the payloads
    of committed records of at least ``min_size`` bytes start (discarded
    ones are skipped), the position after the last record framed, how many
    were too short, and ``""`` or what made the rest unreadable.
    """
    offsets: List[int] = []
    append = offsets.append
    header = _HEADER_LEN.unpack_from
    mask = size - 1
    short = 0
    if not 0 <= producer - consumer <= size:
        return offsets, consumer, short, \
            "producer position %d is not within %d bytes after consumer position %d" % (
                producer, size, consumer)
    while consumer < producer:
        offset = consumer & mask
        length, = header(data, offset)
        if length & BPF_RINGBUF_BUSY_BIT:
            break
        payload = length & _LENGTH_MASK
        total = (payload + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if total > producer - consumer:
            return offsets, consumer, short, \
                "record at position %d has length %d, past the producer position %d" % (
                    consumer, payload, producer)
        if not length & BPF_RINGBUF_DISCARD_BIT:
            if payload < min_size:
                short += 1
            else:
                append(offset + BPF_RINGBUF_HDR_SZ)
        consumer += total
    return offsets, consumer, short, ""


class RingBuffer(Ring):
    """The ring of one ``BPF_MAP_TYPE_RINGBUF``: ``consumer`` is the
    consumer page (writable), ``producer`` the producer page followed by the
    data area mapped twice; any buffers will do (mmaps, or bytearrays in tests).

    Ordering (kernel/bpf/ringbuf.c and libbpf's ringbuf.c): producer_pos and
    each record's length are loaded with acquire semantics, consumer_pos is
    stored with release semantics. We move the positions as items of ``"Q"``
    memoryviews, each one 8-byte move (``struct``'s ``"<Q"`` would go byte
    by byte, and tear); on x86-64 (TSO) loads are not reordered with later
    loads and stores not with earlier loads, which is acquire/release, and
    CPython does not reorder our statements. On aarch64 this would need ``ldar`` /
    ``stlr`` (or ``dmb ish``), which Python cannot emit: a small C helper
    would be needed there.
    """

    def __init__(self, consumer: Any, producer: Any, size: int):
        if size < PAGE_SIZE or size & (size - 1):
            raise ValueError("ring buffer size %d is not a power-of-two number of pages" % size)
        if len(producer) < PAGE_SIZE + 2 * size:
            raise ValueError("ring buffer producer mapping of %d bytes is smaller than %d"
                             % (len(producer), PAGE_SIZE + 2 * size))
        self.size = size
        self._consumer_page = memoryview(consumer)
        self._producer = memoryview(producer)
        self._data = self._producer[PAGE_SIZE:PAGE_SIZE + 2 * size]
        # The positions as native 8-byte words: loading or storing an item of
        # a "Q" view is one 8-byte move. struct's "<Q" goes byte by byte, so
        # the kernel could read a torn consumer position (a store crossing a
        # 16 MiB boundary looked 16 MiB behind: "ring full", records lost
        # with the ring nearly empty), and we a torn producer position.
        self._consumer_word = self._consumer_page[:8].cast("Q")
        self._producer_word = self._producer[:8].cast("Q")
        self._position = self._consumer_word[0]
        self._published = self._position
        self._producer_position = self._position

    def __str__(self) -> str:
        return "ring buffer of %d bytes" % self.size

    def _walk(self, min_size: int) -> Tuple[memoryview, List[int], str]:
        producer = self._producer_word[0]  # acquire: see class doc
        self._producer_position = producer
        offsets, self._position, short, problem = walk_ringbuf(
            self._data, self.size, self._position, producer, min_size)
        self.short += short
        return self._data, offsets, problem

    def payload_length(self, buffer: memoryview, offset: int) -> int:
        """The length field of the record header before ``offset``."""
        return _HEADER_LEN.unpack_from(buffer, offset - BPF_RINGBUF_HDR_SZ)[0] & _LENGTH_MASK

    def _skip(self) -> None:
        self._position = self._producer_position  # resynchronise with the kernel

    def commit(self) -> None:
        """Store the consumer position: the kernel may reuse what was read."""
        if self._position != self._published:
            self._consumer_word[0] = self._position  # release: see class doc
            self._published = self._position

    def release(self) -> None:
        """Let go of our views of the buffers (before they are unmapped)."""
        for view in (self._consumer_word, self._producer_word, self._data, self._producer,
                     self._consumer_page):
            view.release()


class RingBufReader(RingReader):
    """Reads a ``BPF_MAP_TYPE_RINGBUF``.

    ``lost_counter_map`` is the ``BPF_MAP_TYPE_PERCPU_ARRAY`` (u32 key,
    u64 value) whose key 0 the program bumps when a reserve fails; without
    it :meth:`lost` is None (not counted), which summaries should say.

    >>> with RingBufReader(events, lost_counter_map=lost, decoder=d) as reader:  # doctest: +SKIP
    ...     events = reader.read(timeout=1.0); print(reader.lost())
    >>> def handle(lease):  # doctest: +SKIP
    ...     for offset in lease.offsets: print(lease.buffer[offset])   # the first byte
    >>> reader.consume(handle, min_size=1, timeout=1.0)  # doctest: +SKIP
    """

    def __init__(self, ringbuf_map: Any, *, lost_counter_map: Any = None,
                 decoder: Optional[RecordDecoder] = None):
        info = objects.map_info(ringbuf_map)
        if info.type != consts.BPF_MAP_TYPE_RINGBUF:
            raise ValueError("map %r is a %s map, not a ring buffer"
                             % (info.name, consts.MAP_TYPES.name(info.type)))
        if lost_counter_map is not None:
            check_lost_counter(lost_counter_map)
        super().__init__(decoder)
        self._lost_counter_map = lost_counter_map
        try:
            self._open(ringbuf_map.fileno(), info.max_entries)
        except BaseException:
            self.close()
            raise

    def _open(self, fd: int, size: int) -> None:
        stack = self._resources
        consumer = _map(fd, PAGE_SIZE, mmap.PROT_READ | mmap.PROT_WRITE, 0, "consumer page")
        stack.callback(release_mapping, consumer)
        producer = _map(fd, PAGE_SIZE + 2 * size, mmap.PROT_READ, PAGE_SIZE,
                        "producer page and data")
        stack.callback(release_mapping, producer)
        ring = RingBuffer(consumer, producer, size)
        stack.callback(ring.release)
        self._poller.register(fd)
        self._rings.append(ring)

    def lost_per_cpu(self) -> Optional[Dict[int, int]]:
        """The program's count of failed reserves, by CPU (None: not counted)."""
        if self._lost_counter_map is None:
            return None
        return dict(zip(possible_cpus(), self._lost_counter_map[0]))


def _map(fd: int, length: int, prot: int, offset: int, what: str) -> mmap.mmap:
    try:
        return mmap.mmap(fd, length, mmap.MAP_SHARED, prot, offset=offset)
    except OSError as exc:
        raise _sys.error_for(exc.errno, "mmap ring buffer",
                             "%s (%d bytes): %s" % (what, length, exc.strerror)) from None


def check_lost_counter(counter_map: Any) -> None:
    """Raise ``ValueError`` unless ``counter_map`` is a per-CPU array with
    u64 values."""
    info = objects.map_info(counter_map)
    if info.type != consts.BPF_MAP_TYPE_PERCPU_ARRAY or info.value_size != 8 \
            or info.max_entries < 1:
        raise ValueError("lost-record counter %r must be a BPF_MAP_TYPE_PERCPU_ARRAY "
                         "with 8-byte values, not a %s with %d-byte values"
                         % (info.name, consts.MAP_TYPES.name(info.type), info.value_size))
