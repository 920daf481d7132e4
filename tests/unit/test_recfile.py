"""The recording format on bytes built in memory: the bulk copy of a batch
that wraps the ring's end, framing, and what a reader says of bad files."""

import io
import struct

import pytest

from pybpf.kernel.ringbuf import BPF_RINGBUF_DISCARD_BIT, walk_ringbuf
from sniffwrites.recfile import (END, FRAME, MAGIC, RING, VERSION, RecordingError,
                                 RecordingReader, Writer, frame_records, ring_stretches)

SIZE = 256


def ring_with(records, start):
    """The data area of a ring of SIZE bytes mapped twice, holding ``records``
    (payloads; a tuple ``(payload, True)`` is discarded) from ``start`` on."""
    data = bytearray(2 * SIZE)
    position = start
    for record in records:
        payload, discarded = record if isinstance(record, tuple) else (record, False)
        header = struct.pack("<II", len(payload) | (BPF_RINGBUF_DISCARD_BIT if discarded else 0),
                             0)
        framed = header + payload + bytes(-len(payload) % 8)
        for i, byte in enumerate(framed):
            data[(position + i) % SIZE] = byte
            data[(position + i) % SIZE + SIZE] = byte
        position += len(framed)
    return data, position


@pytest.mark.parametrize("start", [0, 200, 232, 248])
def test_a_batch_copied_in_stretches_frames_back_to_the_same_records(start):
    payloads = [bytes([n]) * (8 + 5 * n) for n in range(1, 7)]
    records = payloads[:3] + [(b"gone" * 3, True)] + payloads[3:]
    data, end = ring_with(records, start)
    buffer = memoryview(bytes(data))
    offsets, _position, _short, problem = walk_ringbuf(buffer, SIZE, start, end, 0)
    assert not problem and len(offsets) == len(payloads)
    stretches = ring_stretches(buffer, offsets)
    assert len(stretches) == (1 if offsets[-1] >= offsets[0] else 2)
    copied = b"".join(bytes(buffer[a:b]) for a, b in stretches)
    assert sum(b - a for a, b in stretches) == end - start
    got, framed, problem = frame_records(memoryview(copied), 0)
    assert not problem and framed == len(copied)
    lengths = [struct.unpack_from("<I", copied, at - 8)[0] for at in got]
    assert [copied[at:at + n] for at, n in zip(got, lengths)] == payloads


def recording(*frames):
    out = io.BytesIO()
    writer = Writer(out)
    writer.start({"note": "test"})
    for tag, payload in frames:
        writer.frame(tag, payload) if isinstance(payload, bytes) else writer.json(tag, payload)
    assert writer.size == len(out.getvalue())
    return out.getvalue()


def test_frames_round_trip_and_the_header_describes_the_records():
    data = recording((RING, b"\x01" * 16), (END, {"ring": 0}))
    reader = RecordingReader("f", data)
    assert reader.header["version"] == VERSION and reader.header["note"] == "test"
    assert reader.header["layouts"]["Io"]["size"] == 80
    assert reader.header["layouts"]["Io"]["fields"]["ts"][:2] == [24, 8]
    assert reader.header["kinds"] == {"io": 1, "file": 2, "text": 3, "aggregate": 4, "extent": 5}
    frames = list(reader.frames())
    assert [f.tag for f in frames] == [RING, END] and reader.cut_at is None
    assert bytes(frames[0].payload) == b"\x01" * 16 and frames[1].payload == {"ring": 0}


def test_bad_files_are_errors_naming_the_offset():
    data = recording((RING, b"\x01" * 16), (END, {}))
    with pytest.raises(RecordingError, match=r"no 'SNIFFREC' magic\) at offset 0"):
        RecordingReader("f", b"PK\x03\x04" + data[4:])
    with pytest.raises(RecordingError, match="no whole header frame at offset 8"):
        RecordingReader("f", data[:40])
    ring_at = len(recording())
    bad = bytearray(data)
    bad[ring_at + FRAME.size] ^= 1
    with pytest.raises(RecordingError) as exc:
        list(RecordingReader("f", bytes(bad)).frames())
    assert str(exc.value) == "f: corrupt RING frame of 16 bytes (CRC mismatch) at offset %d" \
        % ring_at
    bad = bytearray(data)
    bad[ring_at:ring_at + 4] = b"XXXX"
    with pytest.raises(RecordingError, match="unknown tag b'XXXX'.* at offset %d" % ring_at):
        list(RecordingReader("f", bytes(bad)).frames())


def test_a_file_cut_inside_a_frame_gives_the_whole_records_before_the_cut():
    first, second = b"A" * 16, b"B" * 24
    framed = struct.pack("<II", 16, 0) + first + struct.pack("<II", 24, 0) + second
    data = recording((RING, framed), (END, {}))
    ring_at = len(recording())
    reader = RecordingReader("f", data[:ring_at + 10])          # inside the frame header
    assert list(reader.frames()) == [] and reader.cut_at == ring_at
    reader = RecordingReader("f", data[:ring_at + FRAME.size + 24 + 20])    # inside "B"
    frames = list(reader.frames())
    assert reader.cut_at == ring_at and [f.tag for f in frames] == [RING]
    assert bytes(frames[0].payload) == framed[:24]
    assert data[:len(MAGIC)] == MAGIC
