"""The struct-based decoder gives what construct gives, for the same declaration."""

import construct as c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.kernel.records import (ConstructDecoder, RecordDecodeError, StructDecoder, decoder_for,
                                  record_class, to_builtin)

INNER = c.Struct("k" / c.Int8sl, "w" / c.Int16ub)

# every kind of fixed-size field the flattener knows
EVERYTHING = c.Struct(
    "u8" / c.Int8ul, "s8" / c.Int8sb,
    "u16" / c.Int16ul, "s16be" / c.Int16sb,
    "u24" / c.Int24ul, "s24be" / c.Int24sb,
    c.Padding(3),
    "pad" / c.Padding(1),
    "u32" / c.Int32ul, "s32be" / c.Int32sb, "native" / c.Int32un,
    "u64" / c.Int64ul, "s64be" / c.Int64sb,
    "flag" / c.Flag, "f32" / c.Float32l, "f64" / c.Float64l,
    "bytes" / c.Bytes(5),
    "bytes_arr" / c.Array(3, c.Int8ul),
    "be_arr" / c.Array(2, c.Int32ub),
    "nested" / c.Struct("a" / c.Int32sl, "inner" / INNER),
    "structs" / c.Array(2, INNER),
    "padded" / c.Padded(8, c.Int16ul),
    "__syscall_nr" / c.Int32sl,
)

BIG_ENDIAN = c.Struct("a" / c.Int32ub, "b" / c.Int16sb, "c" / c.Bytes(3), "d" / c.Int8ul)

EVENT = c.Struct("seq" / c.Int64ul, "pid" / c.Int32ul, "tid" / c.Int32ul,
                 "comm" / c.Bytes(16), "name" / c.Bytes(96))


@pytest.mark.parametrize("con", [EVERYTHING, BIG_ENDIAN, EVENT])
def test_flattens(con):
    decoder = decoder_for(con, "Rec")
    assert isinstance(decoder, StructDecoder)
    assert decoder.size == con.sizeof()


@settings(max_examples=300)
@given(st.data())
def test_struct_decoder_equals_construct(data):
    for con in (EVERYTHING, BIG_ENDIAN, EVENT):
        raw = data.draw(st.binary(min_size=con.sizeof(), max_size=con.sizeof()))
        fast = decoder_for(con, "Rec").decode(raw)
        slow = ConstructDecoder(con).decode(raw)
        # compared as text: a NaN float is not equal to itself
        expected = repr(to_builtin(con.parse(raw)))
        assert repr(to_builtin(fast)) == expected == repr(to_builtin(slow))


def test_flat_record_needs_no_generated_code():
    decoder = decoder_for(EVENT, "Event")
    assert decoder.source == ""
    assert decoder.format.format == "<QLL16s96s"
    assert decoder.fields == ("seq", "pid", "tid", "comm", "name")


def test_all_big_endian_uses_one_big_endian_format():
    assert decoder_for(BIG_ENDIAN).format.format == ">Lh3sB"


def test_records_read_like_structs():
    decoder = decoder_for(EVERYTHING, "Everything")
    record = decoder.decode(bytes(range(EVERYTHING.sizeof())))
    assert record.nested.inner.w == record.nested[1][1]
    assert record.__syscall_nr == record[-1]
    assert record.pad is None
    assert type(record.structs[0]) is type(record.structs[1]) is type(record.nested.inner)
    assert repr(record).startswith("Everything(u8=0, s8=1, u16=")
    assert record._asdict()["u8"] == 0


def test_decode_batch_takes_memoryviews_and_longer_buffers():
    decoder = decoder_for(EVENT)
    raw = bytearray(EVENT.sizeof() * 3 + 4)
    for i in range(3):
        raw[i * 128] = i
    view = memoryview(raw)
    batch = [view[i * 128:(i + 1) * 128 + (4 if i == 2 else 0)] for i in range(3)]
    assert [r.seq for r in decoder.decode_batch(batch)] == [0, 1, 2]


@pytest.mark.parametrize("con", [EVENT, c.Struct("s" / c.PaddedString(8, "utf8"))])
def test_short_buffer_is_a_clear_error(con):
    decoder = decoder_for(con)
    with pytest.raises(RecordDecodeError, match="record of 3 bytes"):
        decoder.decode_batch([bytes(con.sizeof()), b"abc"])


@pytest.mark.parametrize("con, reason", [
    (c.Struct("name" / c.PaddedString(16, "utf8")), "StringEncoded"),
    (c.Struct("kind" / c.Enum(c.Int8ul, open=1, close=2)), "Enum"),
    (c.Struct("n" / c.Int8ul, "data" / c.Bytes(c.this.n)), "computed length"),
    (c.Struct("magic" / c.Const(b"BPF")), "Const"),
])
def test_falls_back_to_construct(con, reason):
    decoder = decoder_for(con, "Rec")
    assert isinstance(decoder, ConstructDecoder)
    assert reason in decoder.reason
    raw = b"\x02" + bytes(range(1, 16)) if reason != "Const" else b"BPF"
    assert to_builtin(decoder.decode(raw)) == to_builtin(con.parse(raw))
    assert decoder.fields == tuple(sub.name for sub in con.subcons)


def test_record_class_accepts_c_names():
    cls = record_class("Ctx", ["__syscall_nr", "_private", "common_pid"])
    record = tuple.__new__(cls, (1, 2, 3))
    assert (record.__syscall_nr, record._private, record.common_pid) == (1, 2, 3)
    assert record == (1, 2, 3)
