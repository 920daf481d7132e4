"""Kernel type information (BTF) -> struct member offsets, enum values, int
types: what our programs need to read kernel structs (our own CO-RE).

:class:`BTF` reads ``/sys/kernel/btf/vmlinux``, and module BTF under
``/sys/kernel/btf/``, which is *split* BTF: its type ids and string offsets
continue after those of vmlinux, its ``base``. Loading builds only an index
of where records start (:mod:`pybpf.kernel.btf_index`, cached on disk);
a type is decoded when it is asked for, so resolving the few structs a
program needs costs milliseconds, not a parse of the whole 5 MB file.

>>> btf = vmlinux()                                  # doctest: +SKIP
>>> btf.resolve("file.f_path.dentry").offset         # doctest: +SKIP
72

Member paths go through typedefs, qualifiers and anonymous structs and
unions (``file.f_path`` sits in an anonymous union on recent kernels), and
through embedded structs (``mount.mnt.mnt_root``), never through pointers:
following ``file.f_path.dentry`` to its ``d_name`` is a second look-up,
``dentry.d_name``, made by the caller, who also indexes arrays.
:meth:`BTF.field` does the same from a type id (anonymous types, and the
DSL's kernel pointers, :mod:`pybpf.dsl.kernel_types`).

Corrupt BTF raises :class:`BTFParseError` with the byte offset at fault;
reference cycles are detected, never followed forever. Loading BTF into the
kernel (``BPF_BTF_LOAD``) and fetching it by id belong to the syscall layer,
not here.
"""

import difflib
import functools
import hashlib
import os
import struct
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

import construct

from ..errors import UnsupportedFeature
from . import btf_index
from .btf_format import (BTF_INT_BOOL, BTF_INT_CHAR, BTF_INT_SIGNED, BTF_KIND_ARRAY,
                         BTF_KIND_CONST, BTF_KIND_ENUM, BTF_KIND_ENUM64, BTF_KIND_FUNC_PROTO,
                         BTF_KIND_FWD, BTF_KIND_INT, BTF_KIND_PTR, BTF_KIND_RESTRICT,
                         BTF_KIND_STRUCT, BTF_KIND_TYPEDEF, BTF_KIND_UNION, BTF_KIND_UNKN,
                         BTF_KIND_VOLATILE, BTF_MAGIC, BTF_MAGIC_SWAPPED, BTF_VERSION,
                         COMPOSITE_KINDS, FIXED_STRUCTS, ITEM_STRUCTS, KIND_NAMES, MODIFIER_KINDS,
                         RECORD_SIZES, SIZED_KINDS, TYPE_STRUCT, BTFError, BTFParseError,
                         btf_header, btf_info_kflag, btf_info_kind, btf_info_vlen, btf_int_bits,
                         btf_int_encoding, btf_int_offset, btf_member_bit_offset,
                         btf_member_bitfield_size, btf_record, field_offset)
from .btf_types import (ArrayInfo, BTFMember, BTFType, Field, FieldNotFound, IntInfo,
                        TypeNotFound)

__all__ = ["BTF", "BTFError", "BTFParseError", "TypeNotFound", "FieldNotFound", "BTFType",
           "BTFMember", "IntInfo", "ArrayInfo", "Field", "vmlinux", "load_module",
           "VMLINUX_PATH"]

SYSFS_BTF_DIR = "/sys/kernel/btf"
VMLINUX_PATH = SYSFS_BTF_DIR + "/vmlinux"

# What a member path may start from.
_PATH_ROOT_KINDS = (BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_TYPEDEF)


class BTF:
    """One BTF blob (vmlinux's, or a module's on top of it as ``base``).

    Type ids run from ``start_id`` to ``len(self) - 1``; smaller ids belong to
    the base, and id 0 is ``void``. Methods take type ids and return
    :class:`BTFType` and friends; they decode records on demand and keep
    struct members once decoded.
    """

    def __init__(self, data: bytes, base: Optional["BTF"] = None, *, source: str = "<bytes>",
                 cache_dir: Optional[str] = None):
        """Parse the header and index the records of ``data``.

        With ``cache_dir`` the record index is read from, or written to, a
        cache file there keyed by the SHA-256 of the data.
        """
        self.source = source
        self.base = base
        self.start_id = len(base) if base is not None else 1
        self.start_str_off = base._str_end if base is not None else 0
        self._data = bytes(data)
        types_start, types_end, strs_start, strs_end = self._check_header()
        self._types = memoryview(self._data)[types_start:types_end]
        self._types_file_off = types_start
        self._strs = self._data[strs_start:strs_end]
        self._str_end = self.start_str_off + len(self._strs)
        index = btf_index.load_cached(cache_dir, self.digest) if cache_dir else None
        if index is None:
            index = btf_index.build_index(self._types, self._str_end, self._string_bytes,
                                          types_start, self.start_id, source)
            if cache_dir:
                btf_index.store_cached(cache_dir, self.digest, index)
        self._index = index
        self._members: Dict[int, Tuple[BTFMember, ...]] = {}

    @functools.cached_property
    def digest(self) -> bytes:
        """SHA-256 of the data, and of the base's digest for split BTF: the
        identity the index cache is keyed by."""
        digest = hashlib.sha256(self.base.digest if self.base is not None else b"")
        digest.update(self._data)
        return digest.digest()

    @classmethod
    def load(cls, path: str = VMLINUX_PATH, base: Optional["BTF"] = None, *,
             cache: Union[bool, str] = True) -> "BTF":
        """Read a BTF file. ``cache``: True for the default cache directory
        (:func:`~pybpf.kernel.btf_index.default_cache_dir`), a directory, or
        False for none."""
        with open(path, "rb") as f:
            data = f.read()
        cache_dir = btf_index.default_cache_dir() if cache is True else (cache or None)
        return cls(data, base, source=path, cache_dir=cache_dir)

    def _fail(self, offset: int, problem: str) -> BTFParseError:
        return BTFParseError(self.source, offset, problem)

    def _cycle(self, t: BTFType) -> BTFParseError:
        return self._fail(t.offset, "reference cycle through %s" % (t,))

    def _check_header(self) -> Tuple[int, int, int, int]:
        """Validate btf_header; return the type and string sections' bounds."""
        data = self._data
        if len(data) < btf_header.sizeof():
            raise self._fail(len(data), "data ends after %d bytes, inside the %d-byte btf_header"
                             % (len(data), btf_header.sizeof()))
        hdr = btf_header.parse(data)
        if hdr.magic != BTF_MAGIC:
            raise self._fail(0, "BTF of the other byte order is not supported"
                             if hdr.magic == BTF_MAGIC_SWAPPED else
                             "bad magic 0x%04x (expected 0x%04x)" % (hdr.magic, BTF_MAGIC))
        if hdr.version != BTF_VERSION:
            raise self._fail(field_offset(btf_header, "version"),
                             "unsupported BTF version %d" % hdr.version)
        if not btf_header.sizeof() <= hdr.hdr_len <= len(data):
            raise self._fail(field_offset(btf_header, "hdr_len"), "hdr_len %d is outside [%d, %d]"
                             % (hdr.hdr_len, btf_header.sizeof(), len(data)))
        bounds = []
        for section in ("type", "str"):
            start = hdr.hdr_len + hdr[section + "_off"]
            end = start + hdr[section + "_len"]
            if end > len(data):
                raise self._fail(field_offset(btf_header, section + "_off"),
                                 "%s section [%d, %d) ends beyond the data (%d bytes)"
                                 % (section, start, end, len(data)))
            bounds += [start, end]
        types_start, types_end, strs_start, strs_end = bounds
        type_off_field = field_offset(btf_header, "type_off")
        if hdr.type_off % 4:
            raise self._fail(type_off_field, "type section offset %d is not 4-byte aligned"
                             % hdr.type_off)
        if hdr.type_len and hdr.str_len and types_start < strs_end and strs_start < types_end:
            raise self._fail(type_off_field, "type section [%d, %d) overlaps string section "
                             "[%d, %d)" % (types_start, types_end, strs_start, strs_end))
        # The kernel's rules (btf_parse_str_sec): NUL-terminated; a base BTF
        # starts with the empty string, which name offset 0 means.
        if hdr.str_len and data[strs_end - 1] != 0:
            raise self._fail(strs_end - 1, "string section does not end with a NUL byte")
        if self.base is None and (not hdr.str_len or data[strs_start] != 0):
            raise self._fail(strs_start, "string section does not start with an empty string")
        return types_start, types_end, strs_start, strs_end

    # --- strings and records ---------------------------------------------------

    def __len__(self) -> int:
        """One past the highest type id (so base and void are counted)."""
        return self.start_id + len(self._index.offsets)

    def string(self, offset: int, referrer: int = 0) -> str:
        """The string at ``offset`` in the (split) string section; ``referrer``
        is the byte offset of whatever holds it, for the error."""
        if offset >= self._str_end:
            raise self._fail(referrer, "string offset %d is beyond the string section (%d bytes)"
                             % (offset, self._str_end))
        return self._string_bytes(offset).decode("utf-8", "replace")

    def _string_bytes(self, offset: int) -> bytes:
        """The string at ``offset`` < ``self._str_end``, which ends at a NUL:
        _check_header saw that the section ends with one."""
        if offset < self.start_str_off:
            return self.base._string_bytes(offset)  # type: ignore[union-attr]
        pos = offset - self.start_str_off
        return self._strs[pos:self._strs.index(b"\0", pos)]

    def _owner(self, type_id: int) -> "BTF":
        """The BTF in the split chain that holds ``type_id``'s record."""
        if type_id < self.start_id and self.base is not None:
            return self.base._owner(type_id)
        if not 0 <= type_id < len(self):
            raise TypeNotFound(self.source, type_id, "no type id %d (ids run 0..%d)"
                               % (type_id, len(self) - 1))
        return self

    def type(self, type_id: int) -> BTFType:
        """The record of ``type_id`` (id 0 is ``void``, kind BTF_KIND_UNKN)."""
        owner = self._owner(type_id)
        if type_id == 0:
            return BTFType(0, BTF_KIND_UNKN, "", 0, 0, 0, False, 0)
        rec = owner._index.offsets[type_id - owner.start_id]
        name_off, info, size_or_type = TYPE_STRUCT.unpack_from(owner._types, rec)
        kind = btf_info_kind(info)
        sized = kind in SIZED_KINDS
        offset = owner._types_file_off + rec
        return BTFType(type_id, kind, self.string(name_off, offset), size_or_type if sized else 0,
                       0 if sized else size_or_type, btf_info_vlen(info), btf_info_kflag(info),
                       offset)

    def types(self) -> Iterator[BTFType]:
        """Every type, base ones included, in id order (slow: for dumps and
        searches, not for look-ups)."""
        return (self.type(type_id) for type_id in range(1, len(self)))

    def _ref(self, referrer: BTFType, type_id: int) -> BTFType:
        """The type ``referrer`` names; a dangling id is corruption at the referrer."""
        if not 0 <= type_id < len(self):
            raise self._fail(referrer.offset, "%s refers to type id %d; the last is %d"
                             % (referrer, type_id, len(self) - 1))
        return self.type(type_id)

    def _record_view(self, t: BTFType) -> memoryview:
        """The bytes of ``t``'s whole record: btf_type, trailer, items (the
        index walk checked that they lie inside the type section)."""
        owner = self._owner(t.id)
        fixed_size, item_size = RECORD_SIZES[t.kind]  # type: ignore[misc]
        start = t.offset - owner._types_file_off
        return owner._types[start:start + fixed_size + t.vlen * item_size]

    def _fixed(self, t: BTFType) -> tuple:
        """The fields of the fixed trailer after ``t``'s btf_type."""
        return FIXED_STRUCTS[t.kind].unpack_from(self._record_view(t), TYPE_STRUCT.size)

    def _items(self, t: BTFType) -> Iterator[Tuple[int, tuple]]:
        """``(file offset, fields)`` of each of the ``vlen`` items after ``t``."""
        fixed_size, item_size = RECORD_SIZES[t.kind]  # type: ignore[misc]
        items = ITEM_STRUCTS[t.kind].iter_unpack(self._record_view(t)[fixed_size:])
        return ((t.offset + fixed_size + i * item_size, item) for i, item in enumerate(items))

    def record(self, type_id: int) -> construct.Container:
        """The whole record of ``type_id`` (trailer and items, any kind),
        decoded by the construct declarations: for inspection, not speed."""
        if type_id == 0:
            raise BTFError("%s: type id 0 is void, which has no record" % self.source)
        return btf_record.parse(bytes(self._record_view(self.type(type_id))))

    # --- finding types ---------------------------------------------------------

    def find_all(self, name: str, kinds: Optional[Iterable[int]] = None) -> List[BTFType]:
        """Every type called ``name`` (of one of ``kinds``), in id order; empty
        if there is none, so this is the way to probe."""
        wanted = None if kinds is None else frozenset(kinds)
        found = []
        raw = name.encode()
        for btf in self._chain():
            for position in btf._positions_named(raw):
                t = self.type(btf.start_id + position)
                if wanted is None or t.kind in wanted:
                    found.append(t)
        return found

    def _positions_named(self, raw: bytes) -> List[int]:
        """Positions of this blob's own types named ``raw``: a bisection over
        the index's name column, which is sorted by the names' bytes."""
        name_offs, name_ids = self._index.name_offs, self._index.name_ids
        lo, hi = 0, len(name_offs)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._string_bytes(name_offs[mid]) < raw:
                lo = mid + 1
            else:
                hi = mid
        found = []
        while lo < len(name_offs) and self._string_bytes(name_offs[lo]) == raw:
            found.append(name_ids[lo])
            lo += 1
        return sorted(found)

    def find(self, name: str, kinds: Optional[Iterable[int]] = None) -> BTFType:
        """The type called ``name``: of ``kinds`` if given, a complete one
        (not a forward declaration or an empty enum) if any, else the first
        by id. Raises :class:`TypeNotFound`, with similar names."""
        kinds = None if kinds is None else tuple(kinds)
        found = self.find_all(name, kinds)
        if not found:
            what = "/".join(KIND_NAMES[k].lower() for k in kinds) if kinds else "type"
            raise TypeNotFound(self.source, name, "no %s named %r" % (what, name),
                               self._near_type_names(name, kinds))
        complete = [t for t in found if t.vlen or t.kind not in (BTF_KIND_ENUM, BTF_KIND_ENUM64)]
        return next((t for t in complete if t.kind != BTF_KIND_FWD), found[0])

    def _chain(self) -> List["BTF"]:
        """This BTF and its bases, base first."""
        return (self.base._chain() if self.base is not None else []) + [self]

    def _near_type_names(self, name: str, kinds: Optional[Tuple[int, ...]]) -> List[str]:
        names = {t.name for t in self.types() if t.name and (kinds is None or t.kind in kinds)}
        return difflib.get_close_matches(name, names, n=3, cutoff=0.75)

    # --- following references --------------------------------------------------

    def resolve_type(self, type_id: int) -> BTFType:
        """``type_id`` with typedefs and qualifiers (const, volatile, restrict,
        type tags) skipped, as libbpf's btf__resolve_type does."""
        t = self.type(type_id)
        seen = set()
        while t.kind in MODIFIER_KINDS:
            seen.add(t.id)
            if t.type in seen:
                raise self._cycle(t)
            t = self._ref(t, t.type)
        return t

    def array_info(self, type_id: int) -> ArrayInfo:
        """Element type and count of the array type ``type_id``."""
        t = self.resolve_type(type_id)
        if t.kind != BTF_KIND_ARRAY:
            raise BTFError("%s: %s is not an array" % (self.source, t))
        elem_id, _index_type, nelems = self._fixed(t)
        elem = self._ref(t, elem_id)
        return ArrayInfo(self.resolve_type(elem.id), elem_id, nelems, self.sizeof(elem_id))

    def sizeof(self, type_id: int) -> int:
        """Size in bytes, through typedefs, qualifiers and (nested) arrays."""
        t = self.resolve_type(type_id)
        count = 1
        seen = set()
        while t.kind == BTF_KIND_ARRAY:
            if t.id in seen:
                raise self._cycle(t)
            seen.add(t.id)
            elem_id, _index_type, nelems = self._fixed(t)
            count *= nelems
            t = self.resolve_type(self._ref(t, elem_id).id)
        if t.kind in SIZED_KINDS:
            return count * t.size
        if t.kind == BTF_KIND_PTR:
            return count * self.pointer_size
        raise BTFError("%s: %s has no size" % (self.source, t))

    @functools.cached_property
    def pointer_size(self) -> int:
        """BTF does not record it: like libbpf, take the size of ``long``, or
        this machine's when there is none."""
        for name in ("long int", "long unsigned int", "long", "unsigned long"):
            ints = self.find_all(name, (BTF_KIND_INT,))
            if ints:
                return ints[0].size
        return struct.calcsize("P")

    def int_info(self, type_id: int) -> IntInfo:
        """Size and signedness of an integer (or enum) type, through typedefs."""
        t = self.resolve_type(type_id)
        if t.kind == BTF_KIND_INT:
            (info,) = self._fixed(t)
            encoding = btf_int_encoding(info)
            return IntInfo(t.name, t.size, bool(encoding & BTF_INT_SIGNED), btf_int_bits(info),
                           btf_int_offset(info), bool(encoding & BTF_INT_CHAR),
                           bool(encoding & BTF_INT_BOOL))
        if t.kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
            return IntInfo(t.name, t.size, t.kind_flag, t.size * 8, 0, False, False)
        raise BTFError("%s: %s is not an integer" % (self.source, t))

    def c_type(self, type_id: int) -> str:
        """``type_id`` spelled roughly as C would (``struct file *``,
        ``char[16]``), for messages."""
        return self._c_type(type_id, frozenset())

    def _c_type(self, type_id: int, seen: frozenset) -> str:
        t = self.type(type_id)
        if t.id in seen:
            raise self._cycle(t)
        seen = seen | {t.id}
        if t.kind == BTF_KIND_UNKN:
            return "void"
        if t.kind == BTF_KIND_PTR:
            return self._c_type(self._ref(t, t.type).id, seen) + " *"
        if t.kind in (BTF_KIND_CONST, BTF_KIND_VOLATILE, BTF_KIND_RESTRICT):
            return "%s %s" % (t.kind_name.lower(), self._c_type(self._ref(t, t.type).id, seen))
        if t.kind == BTF_KIND_ARRAY:
            elem_id, _index_type, nelems = self._fixed(t)
            return "%s[%d]" % (self._c_type(self._ref(t, elem_id).id, seen), nelems)
        if t.kind == BTF_KIND_FUNC_PROTO:
            return "%s(...)" % self._c_type(self._ref(t, t.type).id, seen)
        if t.kind in (BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM, BTF_KIND_ENUM64):
            return "%s %s" % (t.kind_name.lower().rstrip("64"), t.name or "(anon)")
        if t.kind == BTF_KIND_FWD:   # kind_flag says struct or union
            return "%s %s" % ("union" if t.kind_flag else "struct", t.name)
        return t.name or "(anon)"

    # --- members and enums -----------------------------------------------------

    def members(self, type_id: int) -> Tuple[BTFMember, ...]:
        """The members of a struct or union (through typedefs), in order."""
        t = self.resolve_type(type_id)
        if t.kind not in COMPOSITE_KINDS:
            raise BTFError("%s: %s is not a struct or union" % (self.source, t))
        cached = self._members.get(t.id)
        if cached is None:
            cached = tuple(
                BTFMember(self.string(name_off, where), member_type,
                          btf_member_bit_offset(offset, t.kind_flag),
                          btf_member_bitfield_size(offset, t.kind_flag))
                for where, (name_off, member_type, offset) in self._items(t))
            self._members[t.id] = cached
        return cached

    def enum_values(self, name: str) -> Dict[str, int]:
        """``{enumerator: value}`` of the enum (or enum64) called ``name``,
        signed or not as BTF says."""
        t = self.find(name, (BTF_KIND_ENUM, BTF_KIND_ENUM64))
        values = {}
        for where, item in self._items(t):
            if t.kind == BTF_KIND_ENUM:
                name_off, value = item
                if not t.kind_flag:
                    value &= 0xFFFFFFFF
            else:
                name_off, lo32, hi32 = item
                value = hi32 << 32 | lo32
                if t.kind_flag and value >= 1 << 63:
                    value -= 1 << 64
            values[self.string(name_off, where)] = value
        return values

    # --- member paths ----------------------------------------------------------

    def resolve(self, path: str) -> Field:
        """Byte offset, size and type of ``path``: a struct, union or typedef
        name, then member names separated by dots (``file.f_path.dentry``).

        Raises :class:`TypeNotFound` or :class:`FieldNotFound`.
        """
        root_name, _, members = path.partition(".")
        root = self.find(root_name, _PATH_ROOT_KINDS)
        return self._member_path(root.id, members.split(".") if members else [], path,
                                 root_name)

    def field(self, type_id: int, path: str) -> Field:
        """Like :meth:`resolve`, from a type id rather than a name: for
        anonymous types, and for callers that already hold the id (the
        DSL's kernel pointers). ``path`` is member names separated by dots;
        ``Field.path`` is ``path`` itself.
        """
        return self._member_path(type_id, path.split("."), path, self.c_type(type_id))

    def _member_path(self, type_id: int, fields: List[str], path: str, where: str) -> Field:
        t = self.resolve_type(type_id)
        bit_offset, bit_size = 0, 0
        for field in fields:
            type_name = self.c_type(type_id)
            if t.kind not in COMPOSITE_KINDS:
                problem = "%s is %s, not a struct or union" % (where, type_name)
                if t.kind == BTF_KIND_PTR:
                    problem += "; look up %r in the type it points to separately" % field
                raise FieldNotFound(path, type_name, field, problem)
            found = self._find_member(t, field, frozenset((t.id,)))
            if found is None:
                raise FieldNotFound(path, type_name, field, "%s has no member %r"
                                    % (self.c_type(t.id), field),
                                    difflib.get_close_matches(field, self._member_names(t), 3))
            member, relative = found
            bit_offset += relative
            type_id, bit_size = member.type, member.bit_size
            t = self.resolve_type(self._ref(t, type_id).id)
            where += "." + field
        return self._field(path, type_id, t, bit_offset, bit_size)

    def _find_member(self, t: BTFType, name: str,
                     outer: frozenset) -> Optional[Tuple[BTFMember, int]]:
        """``name`` among ``t``'s members or those of its anonymous struct
        and union members (recursively), with its bit offset within ``t``."""
        members = self.members(t.id)
        for member in members:
            if member.name == name:
                return member, member.bit_offset
        for member in members:
            if member.name:
                continue
            inner = self.resolve_type(self._ref(t, member.type).id)
            if inner.kind not in COMPOSITE_KINDS:
                continue
            if inner.id in outer:
                raise self._fail(inner.offset, "%s contains itself" % (inner,))
            found = self._find_member(inner, name, outer | {inner.id})
            if found is not None:
                return found[0], member.bit_offset + found[1]
        return None

    def _member_names(self, t: BTFType) -> List[str]:
        """Names reachable from ``t`` without a dot (for suggestions)."""
        names = []
        for member in self.members(t.id):
            if member.name:
                names.append(member.name)
            else:
                inner = self.resolve_type(member.type)
                if inner.kind in COMPOSITE_KINDS and inner.id != t.id:
                    names += self._member_names(inner)
        return names

    def _field(self, path: str, type_id: int, t: BTFType, bit_offset: int,
               bit_size: int) -> Field:
        array = self.array_info(t.id) if t.kind == BTF_KIND_ARRAY else None
        if not bit_size and t.kind == BTF_KIND_INT:
            # Old encoding (struct without kind_flag): the int type itself is
            # narrower than its size, or starts at a bit offset.
            int_info = self.int_info(t.id)
            if int_info.bits != t.size * 8 or int_info.bit_offset:
                bit_offset += int_info.bit_offset
                bit_size = int_info.bits
        if not bit_size:
            if bit_offset % 8:
                raise self._fail(t.offset, "%s: member of %s is at bit %d, not on a byte "
                                 "boundary" % (path, t, bit_offset))
            return Field(path, bit_offset // 8, self.sizeof(type_id), t, type_id, bit_offset, 0,
                         array)
        if (t.kind not in (BTF_KIND_INT, BTF_KIND_ENUM, BTF_KIND_ENUM64)
                or t.size not in (1, 2, 4, 8)):
            raise self._fail(t.offset, "%s: bitfield of %s, which is not a 1, 2, 4 or 8-byte "
                             "integer" % (path, t))
        # The smallest naturally aligned load (1, 2, 4, 8 bytes) that holds all
        # the bits, as libbpf's bpf_core_calc_field_relo() computes it.
        size = t.size
        offset = bit_offset // 8 // size * size
        while bit_offset + bit_size - offset * 8 > size * 8:
            if size >= 8:
                raise BTFError("%s: bitfield at bits %d..%d does not fit one 8-byte load"
                               % (path, bit_offset, bit_offset + bit_size))
            size *= 2
            offset = bit_offset // 8 // size * size
        return Field(path, offset, size, t, type_id, bit_offset, bit_size, array)


@functools.lru_cache(maxsize=None)
def vmlinux() -> BTF:
    """The running kernel's BTF, loaded once per process (index cached on disk)."""
    try:
        return BTF.load(VMLINUX_PATH)
    except FileNotFoundError as exc:
        raise UnsupportedFeature("kernel BTF (CONFIG_DEBUG_INFO_BTF, %s)" % VMLINUX_PATH,
                                 since="5.4", op="open", err=exc.errno) from exc


def load_module(name: str) -> BTF:
    """A kernel module's BTF (``/sys/kernel/btf/<name>``), split on vmlinux's."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError("bad module name %r" % name)
    return BTF.load(os.path.join(SYSFS_BTF_DIR, name), base=vmlinux())
