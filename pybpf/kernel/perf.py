"""The perf buffer reader: what ``bpf_perf_event_output`` writes, read back.

One ``PERF_COUNT_SW_BPF_OUTPUT`` perf event per online CPU, each with its
own mmap'd ring (a metadata page and 2^n data pages), its fd stored in the
program's ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` at the CPU's index. Records are
framed by ``struct perf_event_header``; ``PERF_RECORD_SAMPLE`` carries a
payload and ``PERF_RECORD_LOST`` the number of samples the kernel dropped
while the ring was full, which :class:`PerfReader` adds up per CPU.

The ring walking (:func:`walk_perf_records`, :class:`PerfRing`) works on any
buffer, so tests run it on rings built in memory. Waiting, lending
records to a handler (:meth:`~pybpf.kernel.reader.RingReader.consume`),
decoding and teardown are :class:`~pybpf.kernel.reader.RingReader`'s.

Prefer the BPF ring buffer (:mod:`pybpf.kernel.ringbuf`, Linux 5.8) where
the kernel has it: one ring for all CPUs keeps records in order across CPUs
and needs less memory. This reader is the fallback.
"""

import mmap
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import BPFError
from . import objects
from . import sys as _sys
from .map_codecs import parse_cpu_list
from .reader import Ring, RingReader, release_mapping
from .records import RecordDecoder
from .. import consts

# enum perf_event_type (include/uapi/linux/perf_event.h)
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9

# struct perf_event_header { __u32 type; __u16 misc; __u16 size; }
PERF_EVENT_HEADER = struct.Struct("<IxxH")
# PERF_RECORD_SAMPLE with only PERF_SAMPLE_RAW: header, then { __u32 size; char data[size]; }
SAMPLE_RAW_OFFSET = PERF_EVENT_HEADER.size + 4
_SAMPLE_HEADER = struct.Struct("<IxxHI")          # type, size, raw size
# PERF_RECORD_LOST: header, then { __u64 id; __u64 lost; }
_LOST_COUNT = struct.Struct("<Q")
_LOST_COUNT_OFFSET = 16
_LOST_RECORD_SIZE = 24

# struct perf_event_mmap_page (include/uapi/linux/perf_event.h): after 1024
# bytes of counters come __u64 data_head, data_tail, data_offset, data_size.
DATA_HEAD_OFFSET = 1024
DATA_TAIL_OFFSET = 1032
_DATA_AREA = struct.Struct("<QQ")                 # data_offset, data_size (Linux 4.1)
_U32 = struct.Struct("<I")

PAGE_SIZE = mmap.PAGESIZE


def walk_perf_records(buf: memoryview, min_size: int) -> Tuple[List[int], int, int, int, str]:
    """Frame the records in ``buf`` (exactly the bytes from data_tail to
    data_head, already made contiguous).

    Returns ``(offsets, lost, short, unknown, problem)``: where the raw data
    of each sample of at least ``min_size`` bytes starts, the sum of the
    lost counts, how many samples were too short and how many records had
    another type, and ``""`` or what made the rest unreadable (then the
    offsets are those before it).
    """
    offsets: List[int] = []
    append = offsets.append
    sample = _SAMPLE_HEADER.unpack_from
    lost = short = unknown = 0
    end = len(buf)
    pos = 0
    while pos < end:
        if end - pos < SAMPLE_RAW_OFFSET:
            # only a bare header fits: an unknown record, or a truncated one
            if end - pos < PERF_EVENT_HEADER.size:
                return offsets, lost, short, unknown, \
                    "%d stray bytes at offset %d" % (end - pos, pos)
            rtype, size = PERF_EVENT_HEADER.unpack_from(buf, pos)
            if rtype in (PERF_RECORD_SAMPLE, PERF_RECORD_LOST) or size != end - pos:
                return offsets, lost, short, unknown, \
                    "record of type %d at offset %d is cut off (%d bytes left)" % (
                        rtype, pos, end - pos)
            unknown += 1
            break
        rtype, size, raw_size = sample(buf, pos)
        if size < PERF_EVENT_HEADER.size or size > end - pos:
            return offsets, lost, short, unknown, \
                "record at offset %d has size %d, outside 8..%d" % (pos, size, end - pos)
        if rtype == PERF_RECORD_SAMPLE:
            if raw_size > size - SAMPLE_RAW_OFFSET:
                return offsets, lost, short, unknown, \
                    "sample at offset %d claims %d bytes of data in a %d-byte record" % (
                        pos, raw_size, size)
            if raw_size < min_size:
                short += 1
            else:
                append(pos + SAMPLE_RAW_OFFSET)
        elif rtype == PERF_RECORD_LOST:
            if size < _LOST_RECORD_SIZE:
                return offsets, lost, short, unknown, \
                    "PERF_RECORD_LOST at offset %d has size %d < %d" % (
                        pos, size, _LOST_RECORD_SIZE)
            lost += _LOST_COUNT.unpack_from(buf, pos + _LOST_COUNT_OFFSET)[0]
        else:
            unknown += 1
        pos += size
    return offsets, lost, short, unknown, ""


class PerfRing(Ring):
    """One CPU's ring: a ``struct perf_event_mmap_page`` followed by the
    data pages, in any writable buffer (the mmap of a perf fd, or a
    bytearray in tests).

    Ordering (``tools/include/linux/ring_buffer.h``, ``ring_buffer_read_head``
    and ``ring_buffer_write_tail``): data_head must be loaded with acquire
    semantics before any record is read, and data_tail stored with release
    semantics after the last record is read. We move both as items of
    ``"Q"`` memoryviews: one 8-byte move each (``struct``'s ``"<Q"`` goes
    byte by byte, so the kernel could see a torn data_tail and believe the
    ring full). On x86-64 (TSO) plain loads are not
    reordered with later loads and plain stores are not reordered with
    earlier loads, which is exactly acquire/release, and CPython does not
    reorder our statements. On aarch64 this would need ``dmb ish`` barriers
    (``ldar``/``stlr``), which Python cannot emit: there a small C helper or
    a syscall (acting as a full barrier) between the steps would be needed.
    """

    def __init__(self, buffer: Any, cpu: int):
        self.cpu = cpu
        self.lost = 0
        self._mem = memoryview(buffer)
        offset, size = _DATA_AREA.unpack_from(self._mem, DATA_TAIL_OFFSET + 8)
        if not size:  # kernels before 4.1 leave these zero: data follows the first page
            offset, size = PAGE_SIZE, len(self._mem) - PAGE_SIZE
        if size & (size - 1) or offset + size > len(self._mem):
            raise ValueError("perf ring of CPU %d: data area %d+%d does not fit a %d-byte mapping "
                             "as a power of two" % (cpu, offset, size, len(self._mem)))
        self._data = self._mem[offset:offset + size]
        self._size = size
        self._head_word = self._mem[DATA_HEAD_OFFSET:DATA_HEAD_OFFSET + 8].cast("Q")
        self._tail_word = self._mem[DATA_TAIL_OFFSET:DATA_TAIL_OFFSET + 8].cast("Q")
        self._tail = self._tail_word[0]
        self._head = self._tail

    def __str__(self) -> str:
        return "perf ring of CPU %d" % self.cpu

    def _walk(self, min_size: int) -> Tuple[memoryview, List[int], str]:
        head = self._head_word[0]  # acquire: see class doc
        tail = self._tail
        self._head = head
        available = head - tail
        if available == 0:
            return self._data, [], ""
        if available < 0 or available > self._size:
            return self._data, [], \
                "data_head %d and data_tail %d are %d bytes apart in a %d-byte ring" % (
                    head, tail, available, self._size)
        start = tail & (self._size - 1)
        if start + available <= self._size:
            buf = self._data[start:start + available]
        else:
            # records wrap around the end: copy them into one piece
            buf = memoryview(b"".join((self._data[start:],
                                       self._data[:start + available - self._size])))
        offsets, lost, short, unknown, problem = walk_perf_records(buf, min_size)
        self.lost += lost
        self.short += short
        self.unknown += unknown
        return buf, offsets, problem and "records from position %d: %s" % (tail, problem)

    def payload_length(self, buffer: memoryview, offset: int) -> int:
        """The raw size, in the u32 before the data (padding included)."""
        return _U32.unpack_from(buffer, offset - 4)[0]

    def _skip(self) -> None:
        pass  # commit() moves data_tail to the data_head _walk read, past everything

    def commit(self) -> None:
        """Give the space of the records read back to the kernel (data_tail)."""
        if self._head != self._tail:
            self._tail_word[0] = self._head  # release: see class doc
            self._tail = self._head

    def release(self) -> None:
        """Let go of our views of the buffer (before it is unmapped)."""
        self._head_word.release()
        self._tail_word.release()
        self._data.release()
        self._mem.release()


def online_cpus() -> Tuple[int, ...]:
    """The CPUs that are online now: each gets a ring."""
    with open("/sys/devices/system/cpu/online") as f:
        return parse_cpu_list(f.read())


def open_bpf_output(cpu: int, *, wakeup_events: int = 1, watermark: int = 0) -> _sys.FD:
    """A ``PERF_COUNT_SW_BPF_OUTPUT`` event on ``cpu`` that wakes its reader
    every ``wakeup_events`` samples, or, when ``watermark`` is set, once that
    many bytes are waiting."""
    attr = _sys.PerfEventAttr()
    attr.type = _sys.PERF_TYPE_SOFTWARE
    attr.config = _sys.PERF_COUNT_SW_BPF_OUTPUT
    attr.sample_type = _sys.PERF_SAMPLE_RAW
    attr.sample_period = 1
    if watermark:
        attr.flags = _sys.PERF_ATTR_FLAG_WATERMARK
        attr.wakeup_events = watermark  # the union's wakeup_watermark
    else:
        attr.wakeup_events = wakeup_events
    try:
        return _sys.perf_event_open(attr, pid=-1, cpu=cpu)
    except BPFError as exc:
        raise _sys.error_for(exc.errno, "perf_event_open",
                             "PERF_COUNT_SW_BPF_OUTPUT event on CPU %d: %s"
                             % (cpu, exc.message)) from None


class PerfReader(RingReader):
    """Reads a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY``: one ring per online CPU.

    ``pages`` is the number of data pages per CPU (a power of two).
    ``wakeup_events`` / ``watermark`` trade latency for fewer wake-ups: a
    busy stream should not wake the reader per record; records below the
    threshold are still picked up by a read with a timeout.

    The reader owns the perf fds, the mmaps and the epoll set, and on close
    also removes its fds from the map (the map would otherwise keep the
    perf events alive).

    >>> with PerfReader(events_map, decoder=decoder_for(Event)) as reader:  # doctest: +SKIP
    ...     for event in reader.read(timeout=1.0): print(event.pid)
    """

    def __init__(self, perf_map: Any, *, decoder: Optional[RecordDecoder] = None,
                 pages: int = 64, wakeup_events: int = 1, watermark: int = 0,
                 cpus: Optional[Sequence[int]] = None):
        if pages < 1 or pages & (pages - 1):
            raise ValueError("pages must be a power of two, not %d" % pages)
        if watermark >= pages * PAGE_SIZE:
            raise ValueError("watermark %d must be below the ring size (%d bytes)"
                             % (watermark, pages * PAGE_SIZE))
        cpus = online_cpus() if cpus is None else tuple(cpus)
        info = objects.map_info(perf_map)
        if info.type != consts.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
            raise ValueError("map %r is a %s, not a perf event array"
                             % (info.name, consts.MAP_TYPES.name(info.type)))
        if cpus and max(cpus) >= info.max_entries:
            raise ValueError("perf event array %r has %d entries, too few for CPU %d"
                             % (info.name, info.max_entries, max(cpus)))
        super().__init__(decoder)
        try:
            for cpu in cpus:
                self._open_cpu(perf_map, cpu, pages, wakeup_events, watermark)
        except BaseException:
            self.close()
            raise

    def _open_cpu(self, perf_map: Any, cpu: int, pages: int, wakeup_events: int,
                  watermark: int) -> None:
        stack = self._resources
        event = stack.enter_context(open_bpf_output(cpu, wakeup_events=wakeup_events,
                                                    watermark=watermark))
        try:
            mapping = mmap.mmap(event.fileno(), (1 + pages) * PAGE_SIZE, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise _sys.error_for(exc.errno, "mmap perf ring",
                                 "CPU %d, %d pages: %s (see /proc/sys/kernel/perf_event_mlock_kb)"
                                 % (cpu, pages, exc.strerror)) from None
        stack.callback(release_mapping, mapping)
        ring = PerfRing(mapping, cpu)
        stack.callback(ring.release)
        _sys.ioctl(event.fileno(), _sys.PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")
        self._poller.register(event.fileno())
        perf_map[cpu] = event.fileno()
        stack.callback(_forget, perf_map, cpu)
        self._rings.append(ring)

    def lost_per_cpu(self) -> Dict[int, int]:
        """PERF_RECORD_LOST counts seen so far, by CPU. The kernel reports a
        loss in the first record it manages to write after it, so a count
        is current once the ring has had room again."""
        return {ring.cpu: ring.lost for ring in self._rings}


def _forget(perf_map: Any, cpu: int) -> None:
    try:
        del perf_map[cpu]
    except (KeyError, OSError, ValueError):
        pass  # the slot was already cleared, or the map is closed
