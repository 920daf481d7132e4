"""Write BTF: turn a small, explicit description of C types (ints, arrays,
structs, unions, pointers, typedefs, enums, functions) into a BTF blob the
kernel accepts with ``BPF_BTF_LOAD``, so maps and programs can carry type
information and ``bpftool map dump`` shows their keys and values as structs.

Every record is encoded through the declarations of
:mod:`pybpf.kernel.btf_format`, and :class:`pybpf.kernel.btf.BTF` parses
what is written here. The builder checks what it can know (type ids exist,
members lie inside their struct); the kernel checks the rest (identifier
rules, which kinds may refer to which) and says why in its log, which
:func:`pybpf.kernel.btf_load.load_btf` reports. This is not a dedup pass over
foreign BTF like libbpf's ``btf__dedup``: identical types are merged as
they are added, nothing more.

>>> from pybpf.kernel.btf import BTF
>>> b = BTFBuilder()
>>> u32 = b.int("u32", 4)
>>> event = b.struct("event", 20, [("pid", u32, 0), ("comm", b.char_array(16), 4)])
>>> b.int("u32", 4) == u32                     # identical types are one type
True
>>> BTF(b.encode()).resolve("event.comm").offset
4
"""

import struct
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from .btf_format import (BTF_INT_BOOL, BTF_INT_CHAR, BTF_INT_SIGNED, BTF_KIND_ARRAY,
                         BTF_KIND_ENUM, BTF_KIND_ENUM64, BTF_KIND_FUNC, BTF_KIND_FUNC_PROTO,
                         BTF_KIND_FWD, BTF_KIND_INT, BTF_KIND_PTR, BTF_KIND_STRUCT,
                         BTF_KIND_TYPEDEF, BTF_KIND_UNION, BTF_MAGIC, BTF_VERSION, KIND_NAMES,
                         BTFError, btf_header, btf_info, btf_record)

VOID = 0
"""Type id 0: ``void``, for pointers to it and functions returning nothing."""

# enum btf_func_linkage in <linux/btf.h>: the vlen of a BTF_KIND_FUNC record.
BTF_FUNC_STATIC = 0
BTF_FUNC_GLOBAL = 1
BTF_FUNC_EXTERN = 2

# The index type clang gives every array (an unsigned 4-byte int).
ARRAY_INDEX_TYPE_NAME = "__ARRAY_SIZE_TYPE__"

# BTF does not record pointer sizes; a reader takes the target's (see
# BTF.pointer_size), and ours is this machine's.
POINTER_SIZE = struct.calcsize("P")

# Limits of the encoding: btf_member.offset holds a 24-bit bit offset when
# the struct has kind_flag (bitfields), and 8 bits of bitfield size.
_MAX_BITFIELD_OFFSET = (1 << 24) - 1
_MAX_BITFIELD_SIZE = 0xFF


class Member(NamedTuple):
    """One member of a struct or union, as :meth:`BTFBuilder.struct` takes
    it (a plain ``(name, type, offset)`` tuple works too).

    ``offset`` counts bytes from the start of the struct. A bitfield sets
    ``bit_size``; its bits start ``bit_offset`` bits after ``offset``, counted
    as the compiler counts them (DWARF/BTF bit offsets)."""

    name: str
    type: int
    offset: int
    bit_size: int = 0
    bit_offset: int = 0


MemberLike = Union[Member, Tuple[str, int, int], Tuple[str, int, int, int, int]]


class BTFBuilder:
    """Collects types and encodes them as one BTF blob.

    Each method adds one type and returns its id (ids start at 1; 0 is
    :data:`VOID`). Adding a type identical to one already there (same kind,
    name, size and referenced ids) returns the existing id, so callers may
    ask for ``int("u32", 4)`` wherever they need it. Types may only refer
    to ids returned earlier, which makes self-referential structs a matter
    of a forward declaration (:meth:`fwd`), as in C.
    """

    def __init__(self) -> None:
        # The string section starts with the empty string: name offset 0.
        self._strings = bytearray(b"\0")
        self._string_offsets: Dict[str, int] = {"": 0}
        self._records: List[bytes] = []
        self._ids: Dict[bytes, int] = {}
        # Per type id: (kind, size in bytes or None for unsized kinds).
        self._types: List[Tuple[int, Optional[int]]] = [(0, None)]

    def __len__(self) -> int:
        """One past the highest type id (void counts), as ``len(BTF)``."""
        return len(self._types)

    # --- the kinds -----------------------------------------------------------------

    def ptr(self, target: int) -> int:
        """A ``BTF_KIND_PTR`` to ``target`` (:data:`VOID` for ``void *``)."""
        self._check_ref(target, "pointer target")
        return self._add(BTF_KIND_PTR, "", target, POINTER_SIZE)

    def array(self, elem: int, nelems: int) -> int:
        """A ``BTF_KIND_ARRAY`` of ``nelems`` elements of type ``elem``,
        indexed by an unsigned 4-byte int as clang emits it."""
        elem_size = self.sizeof(elem, "array element")
        if nelems < 0:
            raise BTFError("array of %d elements" % nelems)
        index_type = self.int(ARRAY_INDEX_TYPE_NAME, 4)
        return self._add(BTF_KIND_ARRAY, "", 0, elem_size * nelems,
                         trailer=dict(type=elem, index_type=index_type, nelems=nelems))

    def char_array(self, nelems: int) -> int:
        """``char[nelems]``, which bpftool prints as a string."""
        return self.array(self.int("char", 1, is_char=True), nelems)

    def struct(self, name: str, size: int, members: Sequence[MemberLike]) -> int:
        """A ``BTF_KIND_STRUCT`` of ``size`` bytes; ``name`` may be empty
        (anonymous). Members are :class:`Member` or ``(name, type, offset)``."""
        return self._composite(BTF_KIND_STRUCT, name, size, members)

    def union(self, name: str, size: int, members: Sequence[MemberLike]) -> int:
        """A ``BTF_KIND_UNION``; like :meth:`struct`, members usually at offset 0."""
        return self._composite(BTF_KIND_UNION, name, size, members)

    def fwd(self, name: str, union: bool = False) -> int:
        """A ``BTF_KIND_FWD``: ``struct name;`` (``union name;``), for
        pointers to types this BTF does not describe."""
        return self._add(BTF_KIND_FWD, name, 0, None, kind_flag=union)

    def typedef(self, name: str, target: int) -> int:
        """A ``BTF_KIND_TYPEDEF``: ``typedef <target> name;``."""
        self._check_ref(target, "typedef %r target" % name)
        return self._add(BTF_KIND_TYPEDEF, name, target, self._types[target][1])

    def enum(self, name: str, values: Union[Mapping[str, int], Sequence[Tuple[str, int]]],
             size: int = 4) -> int:
        """An enum of ``size`` bytes: ``BTF_KIND_ENUM`` when every value fits
        32 bits, else ``BTF_KIND_ENUM64`` (Linux 6.0). The enum is signed
        (kind_flag) when a value is negative."""
        items = list(values.items()) if isinstance(values, Mapping) else list(values)
        if size not in (1, 2, 4, 8):
            raise BTFError("enum %r: size %d is not 1, 2, 4 or 8 bytes" % (name, size))
        signed = any(value < 0 for _, value in items)
        bits = size * 8
        low, high = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
        for item, value in items:
            if not low <= value <= high:
                raise BTFError("enum %r: %s = %d does not fit a %d-byte %s enum"
                               % (name, item, value, size, "signed" if signed else "unsigned"))
        if all(-(1 << 31) <= value < 1 << 32 for _, value in items):
            # btf_enum.val is an s32 whatever kind_flag says: store the bits.
            entries = [dict(name_off=self._string(item),
                            val=value - (1 << 32) if value >= 1 << 31 else value)
                       for item, value in items]
            return self._add(BTF_KIND_ENUM, name, size, size, entries=entries, kind_flag=signed)
        entries = [dict(name_off=self._string(item), val_lo32=value & 0xFFFFFFFF,
                        val_hi32=value >> 32 & 0xFFFFFFFF) for item, value in items]
        return self._add(BTF_KIND_ENUM64, name, size, size, entries=entries, kind_flag=signed)

    def func_proto(self, return_type: int, params: Sequence[Tuple[str, int]]) -> int:
        """A ``BTF_KIND_FUNC_PROTO``: the signature, ``(name, type)`` per
        parameter. The kernel wants parameters named when a FUNC uses it."""
        self._check_ref(return_type, "function return type")
        for param, type_id in params:
            self._check_ref(type_id, "parameter %r" % param)
        entries = [dict(name_off=self._string(param), type=type_id) for param, type_id in params]
        return self._add(BTF_KIND_FUNC_PROTO, "", return_type, None, entries=entries)

    def func(self, name: str, proto: int, linkage: int = BTF_FUNC_GLOBAL) -> int:
        """A ``BTF_KIND_FUNC`` named ``name`` with signature ``proto`` (a
        FUNC_PROTO id), as a program's func info names its functions."""
        self._check_ref(proto, "func %r prototype" % name)
        if self._types[proto][0] != BTF_KIND_FUNC_PROTO:
            raise BTFError("func %r: type id %d is a %s, not a FUNC_PROTO"
                           % (name, proto, KIND_NAMES[self._types[proto][0]]))
        if linkage not in (BTF_FUNC_STATIC, BTF_FUNC_GLOBAL, BTF_FUNC_EXTERN):
            raise BTFError("func %r: unknown linkage %d" % (name, linkage))
        return self._add(BTF_KIND_FUNC, name, proto, None, vlen=linkage)

    # --- queries and output -------------------------------------------------------

    def sizeof(self, type_id: int, what: str = "type") -> int:
        """The size in bytes of a type added here; ``BTFError`` for void,
        functions and forward declarations, which have none."""
        self._check_ref(type_id, what)
        kind, size = self._types[type_id]
        if size is None:
            raise BTFError("%s: type id %d (%s) has no size"
                           % (what, type_id, KIND_NAMES[kind] if type_id else "void"))
        return size

    def encode(self) -> bytes:
        """The blob: btf_header, the type section, the string section. The
        builder stays usable; a later ``encode`` includes later types."""
        types = b"".join(self._records)
        header = btf_header.build(dict(
            magic=BTF_MAGIC, version=BTF_VERSION, flags=0, hdr_len=btf_header.sizeof(),
            type_off=0, type_len=len(types), str_off=len(types), str_len=len(self._strings)))
        return header + types + bytes(self._strings)

    # --- internals ----------------------------------------------------------------

    def _string(self, text: str) -> int:
        """The offset of ``text`` in the string section, added once."""
        offset = self._string_offsets.get(text)
        if offset is None:
            if "\0" in text:
                raise BTFError("BTF names cannot contain NUL bytes: %r" % text)
            offset = len(self._strings)
            self._strings += text.encode() + b"\0"
            self._string_offsets[text] = offset
        return offset

    def _check_ref(self, type_id: int, what: str) -> None:
        if not 0 <= type_id < len(self._types):
            raise BTFError("%s: no type id %d (ids so far run 0..%d)"
                           % (what, type_id, len(self._types) - 1))

    def _add(self, kind: int, name: str, size_or_type: int, size: Optional[int], *,
             trailer: Optional[dict] = None, entries: Sequence[dict] = (),
             kind_flag: bool = False, vlen: Optional[int] = None) -> int:
        """Encode one record; return its id, an existing one if the same
        bytes were added before (names are interned, so equal types encode
        to equal bytes)."""
        record = btf_record.build(dict(
            name_off=self._string(name), size_or_type=size_or_type, trailer=trailer,
            entries=list(entries),
            info=btf_info(kind, len(entries) if vlen is None else vlen, kind_flag)))
        type_id = self._ids.get(record)
        if type_id is None:
            type_id = len(self._types)
            self._records.append(record)
            self._types.append((kind, size))
            self._ids[record] = type_id
        return type_id

    def _composite(self, kind: int, name: str, size: int, members: Sequence[MemberLike]) -> int:
        what = "%s %r" % (KIND_NAMES[kind].lower(), name or "(anon)")
        if size < 0:
            raise BTFError("%s: negative size %d" % (what, size))
        members = [Member(*member) for member in members]
        has_bitfields = any(member.bit_size for member in members)
        seen = set()
        entries = []
        for member in members:
            where = "%s member %r" % (what, member.name)
            if member.name and member.name in seen:
                raise BTFError("%s: duplicate member name" % where)
            seen.add(member.name)
            member_size = self.sizeof(member.type, where)
            bit_offset = member.offset * 8 + member.bit_offset
            end = bit_offset + (member.bit_size or member_size * 8)
            if member.offset < 0 or member.bit_offset < 0 or end > size * 8:
                raise BTFError("%s: bits %d..%d lie outside the %d-byte %s"
                               % (where, bit_offset, end, size, what))
            if member.bit_size:
                if member.bit_size > min(member_size * 8, _MAX_BITFIELD_SIZE):
                    raise BTFError("%s: a %d-bit bitfield of a %d-byte type"
                                   % (where, member.bit_size, member_size))
                if bit_offset > _MAX_BITFIELD_OFFSET:
                    raise BTFError("%s: bit offset %d is beyond what BTF can encode for "
                                   "a struct with bitfields" % (where, bit_offset))
            # With kind_flag, btf_member.offset is bitfield size << 24 | bit offset.
            offset = member.bit_size << 24 | bit_offset if has_bitfields else bit_offset
            entries.append(dict(name_off=self._string(member.name), type=member.type,
                                offset=offset))
        return self._add(kind, name, size, size, entries=entries, kind_flag=has_bitfields)

    # --- BTF_KIND_INT ---------------------------------------------------------------
    # Last in the class on purpose: an annotation ``int`` written after it in
    # the class body would name this method, not the builtin.

    def int(self, name: str, size: int, signed: bool = False, *, is_char: bool = False,
            is_bool: bool = False) -> int:
        """A ``BTF_KIND_INT`` of ``size`` bytes (1, 2, 4, 8 or 16). The
        kernel allows one encoding, so ``signed``, ``is_char`` and ``is_bool``
        exclude each other."""
        if size not in (1, 2, 4, 8, 16):
            raise BTFError("int %r: size %d is not 1, 2, 4, 8 or 16 bytes" % (name, size))
        flags = [BTF_INT_SIGNED] * signed + [BTF_INT_CHAR] * is_char + [BTF_INT_BOOL] * is_bool
        if len(flags) > 1:
            raise BTFError("int %r: signed, is_char and is_bool exclude each other" % name)
        encoding = flags[0] if flags else 0
        # int_info: encoding in bits 27..24, bit offset 0, nr_bits in 7..0
        # (drawn in btf_format).
        return self._add(BTF_KIND_INT, name, size, size,
                         trailer=dict(int_info=encoding << 24 | size * 8))
