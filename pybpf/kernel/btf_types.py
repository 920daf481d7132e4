"""What the BTF parser answers with: types, members, member paths, and the
errors for names that are not there. Plain values (named tuples) that
hold no reference to the BTF they came from; :mod:`pybpf.kernel.btf` makes
them, and re-exports them.
"""

import sys
from typing import NamedTuple, Optional, Sequence, Union

from .btf_format import KIND_NAMES, BTFError


def _did_you_mean(near: Sequence[str]) -> str:
    return " (did you mean %s?)" % ", ".join(near) if near else ""


class TypeNotFound(BTFError, LookupError):
    """No type of that name (or id). ``near`` lists similar names."""

    def __init__(self, source: str, name: Union[str, int], problem: str,
                 near: Sequence[str] = ()):
        self.name = name
        self.near = list(near)
        super().__init__("%s: %s%s" % (source, problem, _did_you_mean(self.near)))


class FieldNotFound(BTFError, LookupError):
    """A member path that does not lead anywhere: ``type_name`` has no member
    ``field``, or the path continues past a member that is not a struct."""

    def __init__(self, path: str, type_name: str, field: str, problem: str,
                 near: Sequence[str] = ()):
        self.path = path
        self.type_name = type_name
        self.field = field
        self.near = list(near)
        super().__init__("%s: %s%s" % (path, problem, _did_you_mean(self.near)))


class BTFType(NamedTuple):
    """One type record's common part. ``size`` is set for sized kinds (int,
    struct, union, enum, float, datasec), ``type`` for kinds that refer to
    another type (pointer, typedef, qualifiers, func, func_proto's return,
    var, tags); the other is 0. ``offset`` is the record's byte offset in the
    BTF file, for messages."""

    id: int
    kind: int
    name: str
    size: int
    type: int
    vlen: int
    kind_flag: bool
    offset: int

    @property
    def kind_name(self) -> str:
        """The kind as the kernel spells it without prefix (``STRUCT``, ``FUNC``)."""
        return KIND_NAMES[self.kind]

    def __str__(self) -> str:
        return "%s %r (type id %d)" % (self.kind_name, self.name or "(anon)", self.id)


class BTFMember(NamedTuple):
    """A struct or union member; ``bit_size`` is 0 unless it is a bitfield."""

    name: str
    type: int
    bit_offset: int
    bit_size: int


class IntInfo(NamedTuple):
    """An integer type (or an enum, which BTF sizes and signs the same way)."""

    name: str
    size: int
    signed: bool
    bits: int
    bit_offset: int
    is_char: bool
    is_bool: bool


class ArrayInfo(NamedTuple):
    """An array type: element type (typedefs skipped), element count and size."""
    elem: BTFType       # with typedefs and qualifiers skipped
    elem_type_id: int   # as declared
    nelems: int
    elem_size: int


class Field(NamedTuple):
    """Where a member path lands, relative to the start of its first type.

    For a bitfield, ``offset`` and ``size`` describe the smallest aligned
    load that holds it (as libbpf's CO-RE does), ``bit_offset`` and
    ``bit_size`` the bits themselves; extract it with
    ``(value << lshift_u64) >> rshift_u64`` on the 64-bit loaded value.
    """

    path: str
    offset: int
    size: int
    type: BTFType       # with typedefs and qualifiers skipped
    type_id: int        # as declared, e.g. a pid_t typedef
    bit_offset: int
    bit_size: int
    array: Optional[ArrayInfo]

    @property
    def is_bitfield(self) -> bool:
        """Whether the member is a bitfield (a nonzero bitfield size)."""
        return self.bit_size != 0

    @property
    def lshift_u64(self) -> int:
        """libbpf's BPF_CORE_FIELD_LSHIFT_U64 for this field."""
        width = self.bit_size or self.size * 8
        if sys.byteorder == "little":
            return 64 - (self.bit_offset + width - self.offset * 8)
        return (8 - self.size) * 8 + (self.bit_offset - self.offset * 8)

    @property
    def rshift_u64(self) -> int:
        """libbpf's BPF_CORE_FIELD_RSHIFT_U64 for this field."""
        return 64 - (self.bit_size or self.size * 8)
