"""The BTF writer, checked through our own parser: every kind it emits reads
back as written, identical types and strings are stored once, the bytes of a
small blob are exactly what the format says, and mistakes the builder can
see are refused with a message naming the type and member."""

import doctest
import sys

import pytest

from pybpf.kernel import btf_load, btf_writer
from pybpf.kernel.btf import BTF, BTFError
from pybpf.kernel.btf_format import (BTF_KIND_ARRAY, BTF_KIND_ENUM, BTF_KIND_ENUM64,
                                     BTF_KIND_FUNC, BTF_KIND_FUNC_PROTO, BTF_KIND_FWD,
                                     BTF_KIND_INT, BTF_KIND_PTR, BTF_KIND_STRUCT,
                                     BTF_KIND_TYPEDEF, BTF_KIND_UNION, btf_header)
from pybpf.kernel.btf_writer import (BTF_FUNC_STATIC, POINTER_SIZE, VOID, BTFBuilder, Member)

little_endian = pytest.mark.skipif(sys.byteorder != "little",
                                   reason="the expected bytes are little-endian")


def roundtrip(builder: BTFBuilder) -> BTF:
    """Encode, parse, and check that the parser sees every type the builder made."""
    btf = BTF(builder.encode())
    assert len(btf) == len(builder)
    return btf


def event_builder():
    """struct event { u32 pid; s32 fd; char comm[16]; u64 bytes; }, as the
    kernel test loads it."""
    b = BTFBuilder()
    u32, s32, u64 = b.int("u32", 4), b.int("s32", 4, signed=True), b.int("u64", 8)
    event = b.struct("event", 32, [("pid", u32, 0), ("fd", s32, 4),
                                   ("comm", b.char_array(16), 8), ("bytes", u64, 24)])
    return b, dict(u32=u32, s32=s32, u64=u64, event=event)


# --- bytes ---------------------------------------------------------------------------

@little_endian
def test_bytes_of_one_int():
    b = BTFBuilder()
    assert b.int("u32", 4) == 1
    assert b.encode() == bytes.fromhex(
        "9feb" "01" "00" "18000000"      # magic 0xeb9f, version 1, flags 0, hdr_len 24
        "00000000" "10000000"            # type_off 0, type_len 16
        "10000000" "05000000"            # str_off 16, str_len 5
        "01000000"                       # [1] name_off 1 ("u32")
        "00000001"                       #     info: BTF_KIND_INT << 24, vlen 0
        "04000000"                       #     size 4
        "20000000"                       #     int_info: no encoding, offset 0, 32 bits
        "00" "75333200")                 # strings: "", "u32"


def test_empty_builder_is_valid_btf():
    blob = BTFBuilder().encode()
    header = btf_header.parse(blob)
    assert (header.type_len, header.str_len, len(blob)) == (0, 1, btf_header.sizeof() + 1)
    assert len(BTF(blob)) == 1


def test_string_section_holds_each_name_once_after_the_empty_string():
    b, ids = event_builder()
    b.struct("other", 8, [("pid", ids["u32"], 0), ("fd", ids["s32"], 4)])   # reuses names
    blob = b.encode()
    header = btf_header.parse(blob)
    start = header.hdr_len + header.str_off
    strings = blob[start:start + header.str_len]
    assert strings == b"\0" + b"\0".join(
        name.encode() for name in ("u32", "s32", "u64", "char", "__ARRAY_SIZE_TYPE__",
                                   "pid", "fd", "comm", "bytes", "event", "other")) + b"\0"
    assert header.type_off == 0 and header.str_off == header.type_len


# --- every kind, read back -------------------------------------------------------------

def test_ints():
    b = BTFBuilder()
    ids = [b.int("u8", 1), b.int("s64", 8, True), b.int("char", 1, is_char=True),
           b.int("_Bool", 1, is_bool=True), b.int("u128", 16)]
    btf = roundtrip(b)
    assert ids == [1, 2, 3, 4, 5]
    got = [btf.int_info(i) for i in ids]
    assert [(i.name, i.size, i.bits, i.bit_offset) for i in got] == [
        ("u8", 1, 8, 0), ("s64", 8, 64, 0), ("char", 1, 8, 0), ("_Bool", 1, 8, 0),
        ("u128", 16, 128, 0)]
    assert [(i.signed, i.is_char, i.is_bool) for i in got] == [
        (False, False, False), (True, False, False), (False, True, False),
        (False, False, True), (False, False, False)]


def test_struct_with_arrays_pointers_and_typedefs():
    b, ids = event_builder()
    pid_t = b.typedef("pid_t", ids["s32"])
    ptr = b.ptr(ids["event"])
    voidp = b.ptr(VOID)
    matrix = b.array(b.array(ids["u32"], 3), 2)
    outer = b.struct("outer", 64, [("ev", ids["event"], 0), ("pid", pid_t, 32),
                                   ("next", ptr, 40), ("any", voidp, 48), ("m", matrix, 40)])
    btf = roundtrip(b)
    assert [(m.name, m.type, m.bit_offset, m.bit_size) for m in btf.members(ids["event"])] == [
        ("pid", ids["u32"], 0, 0), ("fd", ids["s32"], 32, 0), ("comm", 6, 64, 0),
        ("bytes", ids["u64"], 192, 0)]
    comm = btf.resolve("event.comm")
    assert (comm.offset, comm.size, comm.array.nelems, comm.array.elem.name) == (8, 16, 16, "char")
    assert btf.int_info(comm.array.elem.id).is_char
    assert btf.type(btf.record(6).trailer.index_type).name == "__ARRAY_SIZE_TYPE__"
    assert btf.resolve("outer.ev.bytes").offset == 24
    pid = btf.resolve("outer.pid")
    assert (pid.type_id, pid.type.name, pid.size) == (pid_t, "s32", 4)
    assert btf.type(pid_t).kind == BTF_KIND_TYPEDEF and btf.type(pid_t).name == "pid_t"
    assert btf.c_type(ptr) == "struct event *" and btf.c_type(voidp) == "void *"
    assert btf.c_type(matrix) == "u32[3][2]" and btf.sizeof(matrix) == 24
    assert btf.type(outer).size == 64 == b.sizeof(outer)
    assert b.sizeof(ptr) == POINTER_SIZE == btf.resolve("outer.next").size


def test_union_anonymous_members_and_bitfields():
    b = BTFBuilder()
    u32, u8 = b.int("u32", 4), b.int("u8", 1)
    anon = b.union("", 4, [("word", u32, 0), ("byte", u8, 0)])
    flags = b.struct("flags", 8, [Member("kind", u32, 0, bit_size=3),
                                  Member("level", u32, 0, bit_size=5, bit_offset=3),
                                  ("", anon, 4)])
    btf = roundtrip(b)
    assert btf.type(anon).kind == BTF_KIND_UNION and btf.type(anon).name == ""
    assert btf.type(flags).kind_flag and not btf.type(anon).kind_flag
    assert [(m.name, m.bit_offset, m.bit_size) for m in btf.members(flags)] == [
        ("kind", 0, 3), ("level", 3, 5), ("", 32, 0)]
    assert btf.resolve("flags.byte").offset == 4          # through the anonymous union
    level = btf.resolve("flags.level")
    assert (level.bit_offset, level.bit_size, level.offset, level.size) == (3, 5, 0, 4)


def test_enums():
    b = BTFBuilder()
    plain = b.enum("color", {"RED": 0, "BLUE": 0xFFFFFFFF})
    signed = b.enum("delta", [("DOWN", -1), ("UP", 1)], size=1)
    wide = b.enum("big", {"HUGE": 1 << 40, "TOP": (1 << 64) - 1}, size=8)
    wide_signed = b.enum("sbig", {"LOW": -(1 << 40)}, size=8)
    btf = roundtrip(b)
    assert [btf.type(i).kind for i in (plain, signed, wide, wide_signed)] == [
        BTF_KIND_ENUM, BTF_KIND_ENUM, BTF_KIND_ENUM64, BTF_KIND_ENUM64]
    assert btf.enum_values("color") == {"RED": 0, "BLUE": 0xFFFFFFFF}
    assert btf.enum_values("delta") == {"DOWN": -1, "UP": 1}
    assert btf.enum_values("big") == {"HUGE": 1 << 40, "TOP": (1 << 64) - 1}
    assert btf.enum_values("sbig") == {"LOW": -(1 << 40)}
    assert btf.int_info(signed).signed and not btf.int_info(plain).signed
    assert (btf.type(signed).size, btf.type(wide).size) == (1, 8)


def test_fwd_func_proto_and_func():
    b = BTFBuilder()
    task = b.fwd("task_struct")
    sock = b.fwd("sock_addr", union=True)
    s32 = b.int("int", 4, True)
    proto = b.func_proto(s32, [("ctx", b.ptr(VOID)), ("task", b.ptr(task))])
    func = b.func("handle", proto)
    local = b.func("helper", proto, BTF_FUNC_STATIC)
    btf = roundtrip(b)
    assert (btf.type(task).kind, btf.type(task).kind_flag) == (BTF_KIND_FWD, False)
    assert btf.type(sock).kind_flag and btf.c_type(sock) == "union sock_addr"
    assert btf.type(proto).kind == BTF_KIND_FUNC_PROTO and btf.type(proto).type == s32
    params = btf.record(proto).entries
    assert [(btf.string(p.name_off), btf.c_type(p.type)) for p in params] == [
        ("ctx", "void *"), ("task", "struct task_struct *")]
    assert (btf.type(func).kind, btf.type(func).name, btf.type(func).type) == (
        BTF_KIND_FUNC, "handle", proto)
    assert btf.type(func).vlen == btf_writer.BTF_FUNC_GLOBAL
    assert btf.type(local).vlen == BTF_FUNC_STATIC
    assert btf.find("handle", (BTF_KIND_FUNC,)).id == func


# --- dedupe -----------------------------------------------------------------------------

def test_identical_types_are_one_type():
    b, ids = event_builder()
    before = len(b)
    again, same = event_builder()
    assert same == ids
    assert b.int("u32", 4) == ids["u32"]
    assert b.char_array(16) == 6
    assert b.struct("event", 32, [("pid", ids["u32"], 0), ("fd", ids["s32"], 4),
                                  ("comm", 6, 8), ("bytes", ids["u64"], 24)]) == ids["event"]
    assert len(b) == before and b.encode() == again.encode()
    # Anything different is a new type: name, signedness, size, member offset.
    assert len({b.int("u32", 4, True), b.int("u32x", 4), b.int("u32", 8), ids["u32"]}) == 4
    other = b.struct("event", 32, [("pid", ids["u32"], 4)])
    assert other != ids["event"]
    assert b.ptr(ids["event"]) == b.ptr(ids["event"]) != b.ptr(other)
    kinds = [t.kind for t in roundtrip(b).types()]
    assert kinds.count(BTF_KIND_STRUCT) == 2 and kinds.count(BTF_KIND_PTR) == 2
    assert kinds.count(BTF_KIND_ARRAY) == 1 and kinds.count(BTF_KIND_INT) == 8


def test_builder_keeps_going_after_encode():
    b = BTFBuilder()
    u8 = b.int("u8", 1)
    first = b.encode()
    b.typedef("byte", u8)
    assert len(BTF(first)) == 2 and len(roundtrip(b)) == 3


# --- mistakes ------------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda b: b.int("odd", 3), "int 'odd': size 3"),
    (lambda b: b.int("x", 1, True, is_char=True), "exclude each other"),
    (lambda b: b.ptr(7), "pointer target: no type id 7 (ids so far run 0..1)"),
    (lambda b: b.array(VOID, 4), "array element: type id 0 (void) has no size"),
    (lambda b: b.array(b.fwd("f"), 4), "type id 2 (FWD) has no size"),
    (lambda b: b.struct("s", 4, [("a", 1, 2)]), "struct 's' member 'a': bits 16..48 lie "
                                                "outside the 4-byte struct 's'"),
    (lambda b: b.struct("s", 8, [("a", 1, 0), ("a", 1, 4)]), "member 'a': duplicate"),
    (lambda b: b.struct("", 8, [Member("f", 1, 0, bit_size=33)]),
     "struct '(anon)' member 'f': a 33-bit bitfield of a 4-byte type"),
    (lambda b: b.union("u", 4, [("a", 9, 0)]), "union 'u' member 'a': no type id 9"),
    (lambda b: b.enum("e", {"A": 256}, size=1), "enum 'e': A = 256 does not fit a 1-byte"),
    (lambda b: b.enum("e", {"A": 1}, size=3), "size 3"),
    (lambda b: b.func("f", 1), "func 'f': type id 1 is a INT, not a FUNC_PROTO"),
    (lambda b: b.func("f", b.func_proto(VOID, []), linkage=5), "unknown linkage 5"),
    (lambda b: b.func_proto(VOID, [("x", 3)]), "parameter 'x': no type id 3"),
    (lambda b: b.typedef("bad\0name", 1), "NUL"),
])
def test_mistakes_are_refused_with_context(build, message):
    b = BTFBuilder()
    b.int("u32", 4)
    with pytest.raises(BTFError) as info:
        build(b)
    assert message in str(info.value)


def test_docstring_examples():
    for module in (btf_writer, btf_load):
        assert doctest.testmod(module).failed == 0
