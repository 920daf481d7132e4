"""The file ``sniffwrites record`` writes and ``sniffwrites report`` reads.

A recording must be readable later, elsewhere, by a newer sniffwrites, so
it describes itself. It is the 8-byte magic ``SNIFFREC`` and then frames,
each ``tag (4 bytes), length (u32), crc32 of the payload (u32), payload``:

* ``HEAD`` (JSON, first): the format version, the record layouts as the
  one declaration (:mod:`sniffwrites.bpf.records`) lays them out, the
  options, the watched directories, the boot-to-wall clock offset, the
  syscall names of the recording host and facts about it.
* ``RING`` : the kernel's records exactly as they sat in the ring, with the
  ring's 8-byte record headers: one frame per stretch of a batch, copied in
  bulk (:func:`ring_stretches`), framed again by
  :func:`~pybpf.kernel.ringbuf.walk_ringbuf` when read.
* ``FILE``: FileRec records carried over into a new file at a SIGHUP
  (the files still open, whose FileRec the kernel sent before): ring-framed
  like ``RING``.
* ``LOST`` (JSON): a loss notice, in line, where ``monitor`` printed it.
* ``SNAP`` (JSON): ``--aggregate``'s look at the fd cache at an interval.
* ``END`` (JSON, last): the kernel's counters at the end, for the summary.

The CRC guards against corruption (a bad frame is an error naming its
offset); a file a crash cut short ends without ``END``, in a partial frame:
:class:`RecordingReader` gives what precedes it, and of a partial ``RING``
frame the records that are whole, and then says where it stopped.
"""

import json
import struct
import zlib
from typing import Any, BinaryIO, Dict, Iterator, List, NamedTuple, Optional, Tuple

from pybpf.kernel.ringbuf import (BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT,
                                  BPF_RINGBUF_HDR_SZ, walk_ringbuf)

from .bpf.records import KIND_NAMES, Agg, Counters, FileRec, Io, IoExtent, Text
from .config import Config, WatchedDir

MAGIC = b"SNIFFREC"
#: Bumped when a reader of the previous version would misread the file.
VERSION = 1
FRAME = struct.Struct("<4sII")
HEAD, RING, FILE, LOST, SNAP, END = b"HEAD", b"RING", b"FILE", b"LOST", b"SNAP", b"END "
TAGS = (HEAD, RING, FILE, LOST, SNAP, END)
_JSON_TAGS = (HEAD, LOST, SNAP, END)
_RING_HEADER = struct.Struct("<I")     # a ring record's length and flags
_LENGTH_MASK = ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) & 0xFFFFFFFF
#: The declarations whose layouts a header describes.
LAYOUTS = (Io, IoExtent, FileRec, Text, Agg, Counters)


class RecordingError(ValueError):
    """A recording that cannot be read: names the file and the offset."""

    def __init__(self, path: str, offset: int, problem: str):
        super().__init__("%s: %s at offset %d" % (path, problem, offset))
        self.path, self.offset, self.problem = path, offset, problem


def layouts() -> Dict[str, Any]:
    """The record layouts, from the declarations: name -> size and fields
    (name -> [offset, size, type])."""
    out = {}
    for struct_type in LAYOUTS:
        layout = struct_type.layout
        out[struct_type.__name__] = {
            "size": layout.size,
            "fields": {name: [f.offset, f.type.size, f.type.name]
                       for name, f in layout.fields.items()}}
    return out


def ring_stretches(buffer: Any, offsets: List[int]) -> List[Tuple[int, int]]:
    """``(start, end)`` of the stretches of ``buffer`` (the ring's data,
    mapped twice) that hold the records at ``offsets`` with their headers:
    one, or two when the batch wraps past the ring's end (then the offsets
    after the wrap are all below the first)."""
    first = offsets[0]

    def end(at: int) -> int:
        length = _RING_HEADER.unpack_from(buffer, at - BPF_RINGBUF_HDR_SZ)[0] & _LENGTH_MASK
        return at - BPF_RINGBUF_HDR_SZ + ((length + BPF_RINGBUF_HDR_SZ + 7) & ~7)

    if offsets[-1] >= first:
        return [(first - BPF_RINGBUF_HDR_SZ, end(offsets[-1]))]
    lo, hi = 0, len(offsets)
    while lo < hi:                      # the first offset after the wrap
        mid = (lo + hi) // 2
        if offsets[mid] >= first:
            lo = mid + 1
        else:
            hi = mid
    return [(first - BPF_RINGBUF_HDR_SZ, end(offsets[lo - 1])),
            (offsets[lo] - BPF_RINGBUF_HDR_SZ, end(offsets[-1]))]


def frame_records(data: memoryview, min_size: int) -> Tuple[List[int], int, str]:
    """The payload offsets of the ring-framed records in ``data``, the
    bytes framed, and ``""`` or what stopped the framing."""
    size = 1 << max(len(data) - 1, 1).bit_length()
    offsets, position, _short, problem = walk_ringbuf(data, size, 0, len(data), min_size)
    if not problem and position < len(data):
        problem = "a record still being written"
    return offsets, position, problem


def config_fields(cfg: Config) -> Dict[str, Any]:
    """The options of ``cfg`` as JSON values (``report`` rebuilds the Config)."""
    return {
        "dirs": [[w.path, w.dev, w.ino] for w in cfg.dirs],
        "comm": None if cfg.comm is None else cfg.comm.decode("latin-1"),
        "pid": cfg.pid, "follow": cfg.follow, "operations": sorted(cfg.operations),
        "fmt": cfg.fmt, "verbose": cfg.verbose, "debug": cfg.debug, "failed": cfg.failed,
        "aggregate": cfg.aggregate, "interval": cfg.interval, "capture": cfg.capture,
        "ring_size": cfg.ring_size, "fd_cache_size": cfg.fd_cache_size,
        "duration": cfg.duration,
    }


def config_from_fields(fields: Dict[str, Any], **overrides: Any) -> Config:
    """The Config a recording was made with (:func:`config_fields`), with ``overrides``."""
    values = dict(fields)
    values["dirs"] = tuple(WatchedDir(*d) for d in fields["dirs"])
    values["comm"] = None if fields["comm"] is None else fields["comm"].encode("latin-1")
    values["operations"] = frozenset(fields["operations"])
    values.update(overrides)
    return Config(**values)


class Writer:
    """Frames onto an open binary file."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.size = 0

    def frame(self, tag: bytes, payload: Any) -> None:
        self.stream.write(FRAME.pack(tag, len(payload), zlib.crc32(payload)))
        self.stream.write(payload)
        self.size += FRAME.size + len(payload)

    def json(self, tag: bytes, value: Any) -> None:
        self.frame(tag, json.dumps(value, sort_keys=True).encode())

    def start(self, header: Dict[str, Any]) -> None:
        self.stream.write(MAGIC)
        self.size += len(MAGIC)
        self.json(HEAD, dict(header, version=VERSION, layouts=layouts(),
                             kinds={name: kind for kind, name in KIND_NAMES.items()}))


class Frame(NamedTuple):
    tag: bytes
    offset: int          # of the frame header in the file
    payload: Any         # bytes (RING, FILE) or the decoded JSON value


class RecordingReader:
    """Reads a recording: :attr:`header`, then :meth:`frames` in order.
    ``cut_at`` is set, after :meth:`frames`, when the file ended inside a
    frame or without ``END``: the offset where reading stopped."""

    def __init__(self, path: str, data: bytes):
        self.path = path
        self._data = memoryview(data)
        self.cut_at: Optional[int] = None
        if bytes(self._data[:len(MAGIC)]) != MAGIC:
            raise RecordingError(path, 0, "not a sniffwrites recording (no %r magic)"
                                 % MAGIC.decode())
        first = self._next(len(MAGIC))
        if first is None or first[0].tag != HEAD:
            raise RecordingError(path, len(MAGIC), "no whole header frame")
        self.header: Dict[str, Any] = first[0].payload
        if self.header.get("version") != VERSION:
            raise RecordingError(path, len(MAGIC), "format version %s, this sniffwrites reads %d"
                                 % (self.header.get("version"), VERSION))
        self._start = first[1]

    def _next(self, at: int) -> Optional[Tuple[Frame, int]]:
        """The frame at ``at`` and the offset after it; None when the file
        ends inside it (or at it). Corrupt frames raise."""
        data = self._data
        if at + FRAME.size > len(data):
            return None
        tag, length, crc = FRAME.unpack_from(data, at)
        if tag not in TAGS:
            raise RecordingError(self.path, at, "corrupt frame (unknown tag %r)" % bytes(tag))
        end = at + FRAME.size + length
        if end > len(data):
            return None
        payload = data[at + FRAME.size:end]
        if zlib.crc32(payload) != crc:
            raise RecordingError(self.path, at, "corrupt %s frame of %d bytes (CRC mismatch)"
                                 % (tag.decode().strip(), length))
        if tag in _JSON_TAGS:
            try:
                payload = json.loads(bytes(payload))
            except ValueError as exc:
                raise RecordingError(self.path, at, "corrupt %s frame (%s)"
                                     % (tag.decode().strip(), exc)) from None
        return Frame(tag, at, payload), end

    def frames(self) -> Iterator[Frame]:
        """Every frame after the header; of a RING frame cut short, the
        whole records it has (a frame of the records' own bytes)."""
        at = self._start
        while at < len(self._data):
            found = self._next(at)
            if found is None:
                self.cut_at = at
                partial = self._partial_ring(at)
                if partial is not None:
                    yield partial
                return
            frame, at = found
            yield frame
            if frame.tag == END:
                return
        self.cut_at = at

    def _partial_ring(self, at: int) -> Optional[Frame]:
        data = self._data
        if at + FRAME.size > len(data) or bytes(data[at:at + 4]) != RING:
            return None
        payload = data[at + FRAME.size:]
        _offsets, whole, _problem = frame_records(payload, 0)
        return Frame(RING, at, payload[:whole]) if whole else None
