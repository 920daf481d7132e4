"""DSL types: one struct declaration gives C offsets (checked against what
ctypes computes for the same layout) and a construct parser that round-trips."""

import ctypes

import construct
import pytest

from pybpf.dsl import Struct, alignof, char, offsetof, s8, s16, s32, s64, sizeof, u8, u16, u32, u64
from pybpf.dsl.types import ArrayType, PointerType, UserPtr, as_type, c_int_type

CTYPES = {u8: ctypes.c_uint8, u16: ctypes.c_uint16, u32: ctypes.c_uint32, u64: ctypes.c_uint64,
          s8: ctypes.c_int8, s16: ctypes.c_int16, s32: ctypes.c_int32, s64: ctypes.c_int64,
          char: ctypes.c_char}


def as_ctypes(declared):
    """The ctypes equivalent of a DSL type (what a C compiler lays out)."""
    t = as_type(declared)
    if t in CTYPES:
        return CTYPES[t]
    if isinstance(t, ArrayType):
        return as_ctypes(t.elem) * t.count
    if isinstance(t, PointerType):
        return ctypes.c_uint64
    return type(t.name, (ctypes.Structure,),
                {"_fields_": [(f.name, as_ctypes(f.type)) for f in t.fields.values()]})


class Inner(Struct):
    flag: u8
    values: s16[3]
    when: u64


class Outer(Struct):
    tag: char[3]
    inner: Inner
    inners: Inner[2]
    small: s8
    count: u32
    table: u16[2][3]
    where: UserPtr


class Event(Struct):
    pid: u32
    ts: u64
    comm: char[16]
    ret: s32


@pytest.mark.parametrize("declared", [Inner, Outer, Event])
def test_offsets_and_padding_match_ctypes(declared):
    c = as_ctypes(declared)
    assert sizeof(declared) == ctypes.sizeof(c)
    assert alignof(declared) == ctypes.alignment(c)
    for field in declared.layout.fields.values():
        assert field.offset == getattr(c, field.name).offset, field.name


def test_nested_offsets():
    assert offsetof(Outer, "inner.when") == offsetof(Outer, "inner") + 8
    assert offsetof(Outer, "inners") == 24
    with pytest.raises(KeyError, match="no field 'nope'"):
        offsetof(Outer, "inner.nope")


def common(format_, data, obj, size):
    """parse, build and size in one assertion (construct's test idiom)."""
    assert format_.parse(data) == obj
    assert format_.build(obj) == data
    assert format_.sizeof() == size


def test_construct_round_trip():
    data = bytes(range(40))
    con = Event.construct()
    parsed = con.parse(data)
    assert parsed.pid == 0x03020100
    assert parsed.ts == int.from_bytes(data[8:16], "little")
    assert parsed.comm == data[16:32]
    assert parsed.ret == int.from_bytes(data[32:36], "little", signed=True)
    # padding parses to nothing and builds as zeros
    zeroed = bytearray(data)
    zeroed[4:8] = bytes(4)
    zeroed[36:40] = bytes(4)
    common(con, bytes(zeroed), con.parse(bytes(zeroed)), 40)


def test_construct_of_nested_arrays():
    con = Outer.construct()
    value = con.parse(bytes(sizeof(Outer)))
    value.table[1][2] = 7
    value.inners[1]["values"][0] = -2
    again = con.parse(con.build(value))
    assert again.table == [[0, 0, 0], [0, 0, 7]]
    assert again.inners[1]["values"] == [-2, 0, 0]
    assert isinstance(con, construct.Struct) and con.sizeof() == sizeof(Outer)


def test_array_types_and_names():
    assert u32[4].size == 16 and u32[4].name == "u32[4]"
    assert Event[2].size == 2 * sizeof(Event)
    assert char[8].construct().parse(b"abc\0\0\0\0\0") == b"abc\0\0\0\0\0"


def test_int_conversions_of_constants():
    assert u8(300).value == 44
    assert s8(200).value == -56
    assert u32(-1).value == 0xFFFFFFFF


def test_c_type_names_from_headers_and_formats():
    assert c_int_type("unsigned int") is u32
    assert c_int_type("const int") is s32
    assert c_int_type("long") is s64
    assert c_int_type("size_t") is u64
    assert c_int_type("struct file *") is None


def test_bad_declarations():
    with pytest.raises(TypeError, match="reserved"):
        class Bad(Struct):
            is_null: u32
    with pytest.raises(TypeError, match="not a DSL type"):
        class Worse(Struct):
            x: int
    with pytest.raises(TypeError, match="positive"):
        u8[0]


class Named(Struct):
    pid: u32
    comm: char[8]
    names: char[2][4]                 # two strings of four bytes


def test_strings_read_as_text_with_their_bytes_kept():
    raw = (7).to_bytes(4, "little") + b"bash\0old" + b"ab\0\0" + b"\xffx\0\0"
    parsed = Named.text_construct().parse(raw)
    assert (parsed.pid, parsed.comm, parsed.names) == (7, "bash", ["ab", "\ufffdx"])
    assert parsed.comm.raw == b"bash\0old" and parsed.names[1].raw == b"\xffx\0\0"
    assert Named.text_construct().build(parsed) == raw          # raw bytes written back
    assert Named.text_construct().build(dict(pid=7, comm="bash", names=[b"ab", "é"])) == \
        raw[:8] + bytes(4) + b"ab\0\0" + "é".encode() + b"\0\0"
    assert Named.construct().parse(raw).comm == b"bash\0old"    # the stored form is unchanged
    with pytest.raises(construct.StringError, match=r"longer than char\[8\]"):
        Named.text_construct().build(dict(pid=1, comm="a" * 9, names=["", ""]))


def test_the_fast_decoder_reads_strings_as_construct_does():
    from pybpf.kernel.records import StructDecoder, decoder_for, to_builtin
    decoder = decoder_for(Named.text_construct(), "Named")
    raw = (7).to_bytes(4, "little") + b"bash\0old" + b"ab\0\0" + b"\xffx\0\0"
    assert isinstance(decoder, StructDecoder)                   # not construct's slow path
    record = decoder.decode(raw)
    assert to_builtin(record) == to_builtin(Named.text_construct().parse(raw))
    assert record.comm.raw == b"bash\0old"
