"""The BTF wire format: kind numbers, record layouts and the bit fields packed
into them, declared once.

Every layout mirrors a struct in ``<linux/btf.h>`` field by field and is
declared with ``construct`` (readable, and used to build test blobs and to
decode one whole record in :meth:`pybpf.kernel.btf.BTF.record`). The parser's
hot loops need ``struct.Struct`` speed instead, so :data:`TYPE_STRUCT` and
the per-kind trailer formats are *derived* from the same declarations by
:func:`packed`; nothing here states a layout twice.

BTF is written in the byte order of the kernel that produced it, so fields
are native-order (``Int32un``): this module reads the running kernel's BTF,
and :class:`pybpf.kernel.btf.BTF` rejects the other byte order by its
magic. This module parses nothing itself (see :mod:`pybpf.kernel.btf`);
it also holds the parse error, so every BTF module can raise it.
"""

import struct
from typing import Dict, Optional, Tuple

from construct import (Array, Computed, Int8un, Int16un, Int32sn, Int32un, Pass, Struct,
                       Switch, this)

from ..errors import PyBPFError


class BTFError(PyBPFError, ValueError):
    """BTF that cannot answer: corrupt data, or no such type or member."""


class BTFParseError(BTFError):
    """Bytes that do not follow the BTF format. ``offset`` is the byte offset,
    from the start of the BTF blob (the file), of the record or field at fault."""

    def __init__(self, source: str, offset: int, problem: str):
        self.source = source
        self.offset = offset
        self.problem = problem
        super().__init__("%s: corrupt BTF at byte offset %d: %s" % (source, offset, problem))


BTF_MAGIC = 0xEB9F
BTF_MAGIC_SWAPPED = 0x9FEB      # BTF_MAGIC as read from BTF of the other byte order
BTF_VERSION = 1

# --- kinds (enum in <linux/btf.h>) --------------------------------------------
BTF_KIND_UNKN = 0       # only type id 0, "void"
BTF_KIND_INT = 1
BTF_KIND_PTR = 2
BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_ENUM = 6       # kind_flag: values are signed
BTF_KIND_FWD = 7        # kind_flag: union (else struct)
BTF_KIND_TYPEDEF = 8
BTF_KIND_VOLATILE = 9
BTF_KIND_CONST = 10
BTF_KIND_RESTRICT = 11
BTF_KIND_FUNC = 12      # vlen: linkage
BTF_KIND_FUNC_PROTO = 13
BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15
BTF_KIND_FLOAT = 16
BTF_KIND_DECL_TAG = 17
BTF_KIND_TYPE_TAG = 18
BTF_KIND_ENUM64 = 19
BTF_KIND_MAX = BTF_KIND_ENUM64

# Spelled as bpftool's "format raw" output spells them, so messages and tests
# can be compared with it directly.
KIND_NAMES: Dict[int, str] = {
    BTF_KIND_UNKN: "UNKNOWN", BTF_KIND_INT: "INT", BTF_KIND_PTR: "PTR",
    BTF_KIND_ARRAY: "ARRAY", BTF_KIND_STRUCT: "STRUCT", BTF_KIND_UNION: "UNION",
    BTF_KIND_ENUM: "ENUM", BTF_KIND_FWD: "FWD", BTF_KIND_TYPEDEF: "TYPEDEF",
    BTF_KIND_VOLATILE: "VOLATILE", BTF_KIND_CONST: "CONST", BTF_KIND_RESTRICT: "RESTRICT",
    BTF_KIND_FUNC: "FUNC", BTF_KIND_FUNC_PROTO: "FUNC_PROTO", BTF_KIND_VAR: "VAR",
    BTF_KIND_DATASEC: "DATASEC", BTF_KIND_FLOAT: "FLOAT", BTF_KIND_DECL_TAG: "DECL_TAG",
    BTF_KIND_TYPE_TAG: "TYPE_TAG", BTF_KIND_ENUM64: "ENUM64",
}

# Kinds whose third btf_type word is a byte size; in all others it is a type id
# (or unused: ARRAY and FWD).
SIZED_KINDS = frozenset((BTF_KIND_INT, BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM,
                         BTF_KIND_ENUM64, BTF_KIND_FLOAT, BTF_KIND_DATASEC))
# Kinds that only rename or qualify another type; libbpf skips the same set in
# btf__resolve_type().
MODIFIER_KINDS = frozenset((BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST,
                            BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG))
COMPOSITE_KINDS = frozenset((BTF_KIND_STRUCT, BTF_KIND_UNION))

# --- btf_type.info ------------------------------------------------------------
#   bit 31      30..29   28..24   23..16   15..0
#  +----------+--------+--------+--------+--------+
#  |kind_flag |unused  |kind    |unused  |vlen    |
#  +----------+--------+--------+--------+--------+
# vlen counts the items after the record (members, enum values, params, ...).


def btf_info_kind(info: int) -> int:
    """``BTF_INFO_KIND(info)``."""
    return (info >> 24) & 0x1F


def btf_info_vlen(info: int) -> int:
    """``BTF_INFO_VLEN(info)``."""
    return info & 0xFFFF


def btf_info_kflag(info: int) -> bool:
    """``BTF_INFO_KFLAG(info)``."""
    return bool(info >> 31)


def btf_info(kind: int, vlen: int = 0, kind_flag: bool = False) -> int:
    """The info word for a record (BTF_INFO_ENC in the kernel's selftests)."""
    return (int(kind_flag) << 31) | (kind << 24) | vlen


# --- the u32 after an INT record ----------------------------------------------
#   31..28  27..24     23..16   15..8    7..0
#  +-------+---------+--------+--------+--------+
#  |unused |encoding |offset  |unused  |nr_bits |
#  +-------+---------+--------+--------+--------+
BTF_INT_SIGNED = 1 << 0
BTF_INT_CHAR = 1 << 1
BTF_INT_BOOL = 1 << 2


def btf_int_encoding(int_info: int) -> int:
    """``BTF_INT_ENCODING(int_info)``."""
    return (int_info >> 24) & 0x0F


def btf_int_offset(int_info: int) -> int:
    """``BTF_INT_OFFSET(int_info)``."""
    return (int_info >> 16) & 0xFF


def btf_int_bits(int_info: int) -> int:
    """``BTF_INT_BITS(int_info)``."""
    return int_info & 0xFF


# --- btf_member.offset when the struct's kind_flag is set ----------------------
#   31..24          23..0
#  +---------------+-------------------+
#  |bitfield size  |bit offset         |
#  +---------------+-------------------+
# Without kind_flag the whole word is the bit offset.


def btf_member_bit_offset(offset: int, kind_flag: bool) -> int:
    """``BTF_MEMBER_BIT_OFFSET``: the member's offset in bits."""
    return offset & 0xFFFFFF if kind_flag else offset


def btf_member_bitfield_size(offset: int, kind_flag: bool) -> int:
    """``BTF_MEMBER_BITFIELD_SIZE``: its width in bits, 0 for a whole field."""
    return offset >> 24 if kind_flag else 0


# --- layouts (structs of the same names in <linux/btf.h>) ----------------------
btf_header = Struct(
    "magic" / Int16un,
    "version" / Int8un,
    "flags" / Int8un,
    "hdr_len" / Int32un,
    # all offsets are relative to the end of the header (hdr_len)
    "type_off" / Int32un,
    "type_len" / Int32un,
    "str_off" / Int32un,
    "str_len" / Int32un,
)

btf_type = Struct(
    "name_off" / Int32un,
    "info" / Int32un,
    "size_or_type" / Int32un,   # a union of __u32 size and __u32 type in the kernel
)

btf_int = Struct("int_info" / Int32un)
btf_array = Struct("type" / Int32un, "index_type" / Int32un, "nelems" / Int32un)
btf_member = Struct("name_off" / Int32un, "type" / Int32un, "offset" / Int32un)
btf_enum = Struct("name_off" / Int32un, "val" / Int32sn)
btf_enum64 = Struct("name_off" / Int32un, "val_lo32" / Int32un, "val_hi32" / Int32un)
btf_param = Struct("name_off" / Int32un, "type" / Int32un)
btf_var = Struct("linkage" / Int32un)
btf_var_secinfo = Struct("type" / Int32un, "offset" / Int32un, "size" / Int32un)
btf_decl_tag = Struct("component_idx" / Int32sn)

# What follows a btf_type, per kind: (one fixed trailer, an item repeated vlen times).
TRAILERS: Dict[int, Tuple[Optional[Struct], Optional[Struct]]] = {
    BTF_KIND_INT: (btf_int, None),
    BTF_KIND_PTR: (None, None),
    BTF_KIND_ARRAY: (btf_array, None),
    BTF_KIND_STRUCT: (None, btf_member),
    BTF_KIND_UNION: (None, btf_member),
    BTF_KIND_ENUM: (None, btf_enum),
    BTF_KIND_FWD: (None, None),
    BTF_KIND_TYPEDEF: (None, None),
    BTF_KIND_VOLATILE: (None, None),
    BTF_KIND_CONST: (None, None),
    BTF_KIND_RESTRICT: (None, None),
    BTF_KIND_FUNC: (None, None),
    BTF_KIND_FUNC_PROTO: (None, btf_param),
    BTF_KIND_VAR: (btf_var, None),
    BTF_KIND_DATASEC: (None, btf_var_secinfo),
    BTF_KIND_FLOAT: (None, None),
    BTF_KIND_DECL_TAG: (btf_decl_tag, None),
    BTF_KIND_TYPE_TAG: (None, None),
    BTF_KIND_ENUM64: (None, btf_enum64),
}

# One whole record: btf_type, then its trailer and items. Slow but complete;
# for inspection and for building test data, not for the parser's hot paths.
btf_record = Struct(
    *btf_type.subcons,
    "kind" / Computed(lambda ctx: btf_info_kind(ctx.info)),
    "vlen" / Computed(lambda ctx: btf_info_vlen(ctx.info)),
    "kind_flag" / Computed(lambda ctx: btf_info_kflag(ctx.info)),
    "trailer" / Switch(this.kind, {kind: fixed for kind, (fixed, _) in TRAILERS.items()
                                   if fixed is not None}, default=Pass),
    "entries" / Switch(this.kind, {kind: Array(this.vlen, item)
                                 for kind, (_, item) in TRAILERS.items() if item is not None},
                     default=Pass),
)


def packed(layout: Struct) -> struct.Struct:
    """The ``struct.Struct`` equivalent of a construct ``Struct`` made only of
    native-order integer fields: same fields, same order, same size."""
    # Each field is a Renamed(FormatField); fmtstr is e.g. "=L" for Int32un.
    return struct.Struct("=" + "".join(field.subcon.fmtstr[1:] for field in layout.subcons))


def field_offset(layout: Struct, name: str) -> int:
    """Byte offset of field ``name`` in a fixed-size construct ``Struct``."""
    offset = 0
    for field in layout.subcons:
        if field.name == name:
            return offset
        offset += field.sizeof()
    raise KeyError(name)


TYPE_STRUCT = packed(btf_type)


def _record_sizes(kind: int) -> Optional[Tuple[int, int]]:
    if kind not in TRAILERS:
        return None
    fixed, item = TRAILERS[kind]
    return (TYPE_STRUCT.size + (fixed.sizeof() if fixed is not None else 0),
            item.sizeof() if item is not None else 0)


# Indexed by kind; None marks a kind number the format does not define.
# RECORD_SIZES[kind] = (bytes of btf_type plus fixed trailer, bytes per item).
RECORD_SIZES: Tuple[Optional[Tuple[int, int]], ...] = tuple(_record_sizes(kind)
                                                            for kind in range(32))
FIXED_STRUCTS: Dict[int, struct.Struct] = {
    kind: packed(fixed) for kind, (fixed, _) in TRAILERS.items() if fixed is not None}
ITEM_STRUCTS: Dict[int, struct.Struct] = {
    kind: packed(item) for kind, (_, item) in TRAILERS.items() if item is not None}
