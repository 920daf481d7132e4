"""The BTF parser on small blobs built here from the construct declarations:
every kind, member paths, split BTF, the index cache, and corrupt input,
which must raise BTFParseError naming an offset, never hang or crash."""

import pathlib
import random
import signal
import struct
import sys

import pytest

from pybpf.kernel import btf_index
from pybpf.kernel.btf import (BTF, BTFError, BTFParseError, FieldNotFound, TypeNotFound,
                              load_module)
from pybpf.kernel.btf_format import (
    BTF_INT_SIGNED, BTF_KIND_ARRAY, BTF_KIND_CONST, BTF_KIND_DATASEC, BTF_KIND_DECL_TAG,
    BTF_KIND_ENUM, BTF_KIND_ENUM64, BTF_KIND_FLOAT, BTF_KIND_FUNC, BTF_KIND_FUNC_PROTO,
    BTF_KIND_FWD, BTF_KIND_INT, BTF_KIND_MAX, BTF_KIND_PTR, BTF_KIND_RESTRICT, BTF_KIND_STRUCT,
    BTF_KIND_TYPE_TAG, BTF_KIND_TYPEDEF, BTF_KIND_UNION, BTF_KIND_VAR, BTF_KIND_VOLATILE,
    BTF_MAGIC, ITEM_STRUCTS, RECORD_SIZES, TRAILERS, TYPE_STRUCT, btf_header, btf_info,
    btf_member, btf_record, packed)


class BlobBuilder:
    """Writes BTF the way pahole does, through the construct declarations."""

    def __init__(self, str_base: int = 0, with_empty_string: bool = True):
        self.str_base = str_base
        self.strings = bytearray(b"\0" if with_empty_string else b"")
        self.records = []

    def name(self, text: str) -> int:
        if not text:
            return 0
        offset = self.str_base + len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(self, kind, name="", size_or_type=0, vlen=None, kind_flag=False, trailer=None,
            items=None):
        items = list(items or [])
        record = dict(name_off=self.name(name), size_or_type=size_or_type, trailer=trailer,
                      entries=items or None,
                      info=btf_info(kind, len(items) if vlen is None else vlen, kind_flag))
        self.records.append(btf_record.build(record))
        return len(self.records)      # the type id, for a base BTF

    def build(self) -> bytes:
        types = b"".join(self.records)
        header = btf_header.build(dict(magic=BTF_MAGIC, version=1, flags=0, hdr_len=24,
                                       type_off=0, type_len=len(types), str_off=len(types),
                                       str_len=len(self.strings)))
        return header + types + bytes(self.strings)


def every_kind() -> BlobBuilder:
    """struct s { int a; int b:3; union { int u; int *p; }; int arr[4]; }, and
    one type of every other kind, in kind order but for func and its proto."""
    b = BlobBuilder()
    m = b.name
    b.add(BTF_KIND_INT, "int", 4, trailer=dict(int_info=(BTF_INT_SIGNED << 24) | 32))     # 1
    b.add(BTF_KIND_PTR, size_or_type=1)                                                   # 2
    b.add(BTF_KIND_ARRAY, trailer=dict(type=1, index_type=1, nelems=4))                  # 3
    b.add(BTF_KIND_STRUCT, "s", 32, kind_flag=True, items=[                              # 4
        dict(name_off=m("a"), type=1, offset=0),
        dict(name_off=m("b"), type=1, offset=3 << 24 | 32),
        dict(name_off=0, type=5, offset=64),
        dict(name_off=m("arr"), type=3, offset=128)])
    b.add(BTF_KIND_UNION, "", 8, items=[                                                 # 5
        dict(name_off=m("u"), type=1, offset=0),
        dict(name_off=m("p"), type=2, offset=0)])
    b.add(BTF_KIND_ENUM, "E", 4, kind_flag=True, items=[                                 # 6
        dict(name_off=m("X"), val=1), dict(name_off=m("Y"), val=-1)])
    b.add(BTF_KIND_FWD, "later")                                                          # 7
    b.add(BTF_KIND_TYPEDEF, "td", 4)                                                     # 8
    b.add(BTF_KIND_VOLATILE, size_or_type=8)                                             # 9
    b.add(BTF_KIND_CONST, size_or_type=9)                                                # 10
    b.add(BTF_KIND_RESTRICT, size_or_type=2)                                             # 11
    b.add(BTF_KIND_FUNC_PROTO, size_or_type=1, items=[dict(name_off=m("x"), type=1)])   # 12
    b.add(BTF_KIND_FUNC, "f", 12, vlen=1)                                                # 13
    b.add(BTF_KIND_VAR, "v", 1, trailer=dict(linkage=1))                                 # 14
    b.add(BTF_KIND_DATASEC, ".data", 4, items=[dict(type=14, offset=0, size=4)])        # 15
    b.add(BTF_KIND_FLOAT, "float", 4)                                                    # 16
    b.add(BTF_KIND_DECL_TAG, "tag", 13, trailer=dict(component_idx=-1))                  # 17
    b.add(BTF_KIND_TYPE_TAG, "ttag", 1)                                                  # 18
    b.add(BTF_KIND_ENUM64, "E64", 8, items=[                                             # 19
        dict(name_off=m("BIG"), val_lo32=5, val_hi32=1 << 8)])
    return b


@pytest.fixture
def no_hang():
    """Fail instead of hanging: corrupt input must never loop."""
    def expire(signum, frame):
        raise AssertionError("BTF parsing did not finish within 20 s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# --- the declarations ----------------------------------------------------------

def test_struct_formats_agree_with_construct_declarations():
    for kind, (fixed, item) in TRAILERS.items():
        fixed_size, item_size = RECORD_SIZES[kind]
        assert fixed_size == TYPE_STRUCT.size + (fixed.sizeof() if fixed else 0)
        assert item_size == (item.sizeof() if item else 0)
        if item is not None:
            assert ITEM_STRUCTS[kind].size == item.sizeof()
    assert [RECORD_SIZES[kind] is None for kind in range(32)] == \
        [not 1 <= kind <= BTF_KIND_MAX for kind in range(32)]
    member = dict(name_off=7, type=3, offset=1 << 24 | 9)
    assert packed(btf_member).unpack(btf_member.build(member)) == (7, 3, 1 << 24 | 9)


# --- a blob with every kind ------------------------------------------------------

def test_every_kind_parses():
    btf = BTF(every_kind().build())
    assert len(btf) == 20
    kinds = list(range(1, 20))
    kinds[11:13] = [BTF_KIND_FUNC_PROTO, BTF_KIND_FUNC]   # a func needs its proto first
    assert [t.kind for t in btf.types()] == kinds
    assert btf.type(0).kind == 0 and btf.c_type(0) == "void"
    assert btf.type(4).name == "s" and btf.type(4).size == 32 and btf.type(4).vlen == 4
    assert btf.type(8).type == 4
    assert btf.record(3).trailer == dict(type=1, index_type=1, nelems=4)
    assert btf.record(14).trailer.linkage == 1
    assert btf.record(15).entries[0] == dict(type=14, offset=0, size=4)
    assert btf.record(17).trailer.component_idx == -1
    assert btf.record(12).entries[0].type == 1


def test_find_and_names():
    btf = BTF(every_kind().build())
    assert btf.find("s").id == 4
    assert btf.find("td", (BTF_KIND_TYPEDEF,)).id == 8
    assert btf.find_all("nothing") == []
    assert [t.id for t in btf.find_all("int")] == [1]
    with pytest.raises(TypeNotFound) as info:
        btf.find("td", (BTF_KIND_STRUCT,))
    assert "no struct named 'td'" in str(info.value)
    with pytest.raises(TypeNotFound) as info:
        btf.find("ttg")
    assert info.value.near == ["ttag"]
    with pytest.raises(TypeNotFound):
        btf.type(20)


def test_members_enums_ints_sizes():
    btf = BTF(every_kind().build())
    assert [(m.name, m.bit_offset, m.bit_size) for m in btf.members(4)] == [
        ("a", 0, 0), ("b", 32, 3), ("", 64, 0), ("arr", 128, 0)]
    assert btf.members(10) == btf.members(4)      # through const, volatile, typedef
    assert btf.enum_values("E") == {"X": 1, "Y": -1}
    assert btf.enum_values("E64") == {"BIG": 1 << 40 | 5}
    info = btf.int_info(1)
    assert (info.name, info.size, info.signed, info.bits) == ("int", 4, True, 32)
    assert btf.int_info(6).signed and btf.int_info(6).size == 4
    assert btf.sizeof(10) == 32 and btf.sizeof(3) == 16 and btf.sizeof(2) == 8
    assert btf.pointer_size == 8
    assert btf.c_type(11) == "restrict int *" and btf.c_type(3) == "int[4]"
    assert btf.c_type(10) == "const volatile td"
    with pytest.raises(BTFError):
        btf.sizeof(13)
    with pytest.raises(BTFError):
        btf.members(1)


def test_member_paths():
    btf = BTF(every_kind().build())
    a = btf.resolve("s.a")
    assert (a.offset, a.size, a.bit_offset, a.is_bitfield, a.type.name) == (0, 4, 0, False, "int")
    u = btf.resolve("s.u")          # inside the anonymous union
    assert (u.offset, u.size) == (8, 4)
    p = btf.resolve("td.p")         # through the typedef, into the union
    assert (p.offset, p.size, p.type.kind) == (8, 8, BTF_KIND_PTR)
    arr = btf.resolve("s.arr")
    assert (arr.offset, arr.size) == (16, 16)
    assert (arr.array.elem.name, arr.array.nelems, arr.array.elem_size) == ("int", 4, 4)
    whole = btf.resolve("s")
    assert (whole.offset, whole.size) == (0, 32)
    # from a type id: the struct's, and the anonymous union's inside it
    s_id = btf.find("s").id
    assert btf.field(s_id, "u") == u._replace(path="u")
    union_id = next(m.type for m in btf.members(s_id) if not m.name)
    assert (btf.field(union_id, "p").offset, btf.field(union_id, "p").size) == (0, 8)
    with pytest.raises(FieldNotFound, match="has no member 'x'"):
        btf.field(union_id, "x")


@pytest.mark.skipif(sys.byteorder != "little", reason="bit numbering of little-endian BTF")
def test_bitfield():
    b = BTF(every_kind().build()).resolve("s.b")
    assert (b.offset, b.size, b.bit_offset, b.bit_size) == (4, 4, 32, 3)
    # libbpf's shifts: (u64 loaded value << lshift) >> rshift leaves the 3 bits
    loaded = 0b1111_1000 | 0b101        # the 4 bytes at offset 4, zero-extended
    assert ((loaded << b.lshift_u64) & (1 << 64) - 1) >> b.rshift_u64 == 0b101


def test_missing_member_and_pointer_in_path():
    btf = BTF(every_kind().build())
    with pytest.raises(FieldNotFound) as info:
        btf.resolve("s.ar")
    assert info.value.field == "ar" and "arr" in info.value.near
    assert "struct s has no member 'ar'" in str(info.value)
    with pytest.raises(FieldNotFound) as info:
        btf.resolve("s.p.x")
    assert "int *" in str(info.value) and "points to" in str(info.value)
    with pytest.raises(FieldNotFound):
        btf.resolve("s.a.x")


# --- split BTF -----------------------------------------------------------------

def test_split_btf_continues_ids_and_strings():
    base_builder = every_kind()
    base = BTF(base_builder.build())
    split = BlobBuilder(str_base=len(base_builder.strings), with_empty_string=False)
    m = split.name
    # struct wrapper { struct s inner; E e; }, named by a new string and a base one
    split.add(BTF_KIND_STRUCT, "wrapper", 40, items=[
        dict(name_off=m("inner"), type=4, offset=0),
        dict(name_off=base_builder.strings.index(b"u\0"), type=6, offset=256)])
    split.add(BTF_KIND_PTR, size_or_type=20)
    btf = BTF(split.build(), base)
    assert btf.start_id == 20 and len(btf) == 22
    assert btf.find("wrapper").id == 20
    assert btf.find("s").id == 4                     # a base type, through the split BTF
    assert btf.c_type(21) == "struct wrapper *"
    assert btf.resolve("wrapper.inner.b").bit_offset == 32
    assert btf.resolve("wrapper.u").offset == 32
    dangling = BlobBuilder(str_base=len(base_builder.strings), with_empty_string=False)
    dangling.add(BTF_KIND_PTR, size_or_type=21)
    with pytest.raises(BTFParseError, match="refers to type id 21"):
        BTF(dangling.build(), base).c_type(20)


# --- the index cache -------------------------------------------------------------

def test_cache_is_used_and_invalid_cache_ignored(private_dir, monkeypatch):
    cache = pathlib.Path(private_dir)
    data = every_kind().build()
    first = BTF(data, cache_dir=private_dir)
    (cache_file,) = cache.iterdir()
    assert first.digest.hex() in cache_file.name

    def no_walk(*args):
        raise AssertionError("the index should have come from the cache")
    monkeypatch.setattr(btf_index, "build_index", no_walk)
    assert BTF(data, cache_dir=private_dir).resolve("s.b").bit_offset == 32
    monkeypatch.undo()

    blob = cache_file.read_bytes()
    for broken in (blob[:-4], blob[:10], blob[:-1] + bytes([blob[-1] ^ 1]), b""):
        cache_file.write_bytes(broken)
        assert BTF(data, cache_dir=private_dir).resolve("s.b").bit_offset == 32
        assert cache_file.read_bytes() == blob           # rewritten whole


def test_unwritable_cache_dir_is_not_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert BTF(every_kind().build(), cache_dir=str(blocker / "sub")).find("s").id == 4


# --- corrupt input ---------------------------------------------------------------

def exercise(btf: BTF) -> None:
    """Touch everything a corrupt blob could break."""
    for path in ("s.a", "s.b", "s.u", "td.p", "s.arr"):
        btf.resolve(path)
    btf.enum_values("E")
    btf.enum_values("E64")
    for type_id in range(len(btf)):
        for query in (btf.type, btf.c_type, btf.sizeof, btf.members, btf.int_info,
                      btf.array_info, btf.record):
            try:
                query(type_id)
            except BTFError:
                pass


def test_bad_magic_version_and_header():
    data = bytearray(every_kind().build())
    bad = bytearray(data)
    bad[0:2] = b"\x00\x00"
    with pytest.raises(BTFParseError, match="bad magic") as info:
        BTF(bytes(bad))
    assert info.value.offset == 0
    bad[0:2] = struct.pack(">H", BTF_MAGIC)
    with pytest.raises(BTFParseError, match="other byte order"):
        BTF(bytes(bad))
    bad = bytearray(data)
    bad[2] = 2
    with pytest.raises(BTFParseError, match="version") as info:
        BTF(bytes(bad))
    assert info.value.offset == 2


def test_every_truncation_raises_with_an_offset(no_hang):
    data = every_kind().build()
    for cut in range(len(data)):
        with pytest.raises(BTFParseError) as info:
            BTF(data[:cut])
        assert 0 <= info.value.offset <= cut
        assert "byte offset %d" % info.value.offset in str(info.value)


def test_type_section_cut_inside_a_record():
    b = every_kind()
    data = bytearray(b.build())
    type_len = sum(len(r) for r in b.records)
    last = type_len - len(b.records[-1])
    # claim the type section ends 4 bytes early: the last record overruns it
    struct.pack_into("=I", data, 12, type_len - 4)
    with pytest.raises(BTFParseError, match="runs 4 bytes past") as info:
        BTF(bytes(data))
    assert info.value.offset == 24 + last
    # ... or ends 4 bytes into the last record's btf_type
    struct.pack_into("=I", data, 12, last + 4)
    with pytest.raises(BTFParseError, match="cut short") as info:
        BTF(bytes(data))
    assert info.value.offset == 24 + last


def test_string_offset_beyond_string_section():
    b = every_kind()
    data = bytearray(b.build())
    struct.pack_into("=I", data, 24, 10_000)           # type 1's name_off
    with pytest.raises(BTFParseError, match="name offset 10000") as info:
        BTF(bytes(data))
    assert info.value.offset == 24
    # a member's name is only read when the struct's members are
    data = bytearray(b.build())
    struct_rec = 24 + sum(len(r) for r in b.records[:3])
    struct.pack_into("=I", data, struct_rec + 12 + 12, 10_000)   # member "b"
    btf = BTF(bytes(data))
    with pytest.raises(BTFParseError, match="string offset 10000") as info:
        btf.resolve("s.a")
    assert info.value.offset == struct_rec + 24


def test_unknown_kind():
    data = bytearray(every_kind().build())
    struct.pack_into("=I", data, 24 + 4, btf_info(25))
    with pytest.raises(BTFParseError, match="unknown kind 25") as info:
        BTF(bytes(data))
    assert info.value.offset == 24


def test_reference_cycles_are_detected(no_hang):
    b = BlobBuilder()
    b.add(BTF_KIND_TYPEDEF, "loop", 1)                           # 1: typedef loop loop
    b.add(BTF_KIND_CONST, size_or_type=3)                        # 2 -> 3 -> 2
    b.add(BTF_KIND_TYPEDEF, "pair", 2)                           # 3
    b.add(BTF_KIND_ARRAY, trailer=dict(type=4, index_type=0, nelems=2))   # 4: array of itself
    b.add(BTF_KIND_PTR, size_or_type=5)                          # 5: pointer to itself
    b.add(BTF_KIND_STRUCT, "nest", 4, items=[dict(name_off=0, type=6, offset=0)])  # 6
    btf = BTF(b.build())
    for type_id, query in ((1, btf.resolve_type), (1, btf.sizeof), (2, btf.members),
                           (3, btf.sizeof), (4, btf.sizeof), (4, btf.c_type), (5, btf.c_type)):
        with pytest.raises(BTFParseError, match="cycle") as info:
            query(type_id)
        assert info.value.offset >= 24
    with pytest.raises(BTFParseError, match="contains itself"):
        btf.resolve("nest.x")
    with pytest.raises(BTFParseError, match="cycle"):
        btf.resolve("loop.x")


def test_dangling_type_reference_names_the_referrer():
    b = BlobBuilder()
    b.add(BTF_KIND_PTR, size_or_type=77)
    with pytest.raises(BTFParseError, match="type id 77") as info:
        BTF(b.build()).c_type(1)
    assert info.value.offset == 24


def test_every_flipped_byte_gives_a_btf_or_a_btf_error(no_hang):
    data = every_kind().build()
    for pos in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[pos] ^= mask
            try:
                exercise(BTF(bytes(bad)))
            except BTFError:
                pass


def test_random_corruption_gives_a_btf_or_a_btf_error(no_hang):
    data = every_kind().build()
    rng = random.Random(1)
    for _ in range(2000):
        bad = bytearray(data)
        for _ in range(rng.randint(2, 6)):
            bad[rng.randrange(24, len(bad))] = rng.randrange(256)
        try:
            exercise(BTF(bytes(bad)))
        except BTFError:
            pass


def test_module_names_are_checked_before_any_file_is_opened():
    for bad in ("", "../vmlinux", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            load_module(bad)
