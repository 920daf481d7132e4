"""``.BTF.ext``: what clang records per instruction beside the code.

Three tables, each grouped by the section whose instructions they describe:
``func_info`` (the BTF ``FUNC`` of each function's first instruction),
``line_info`` (file, line and column of instructions) and ``core_relo``
(CO-RE relocations: which instruction reads which member of which type,
by an access string such as ``0:1:3``). Offsets in the file are bytes into
the section; :class:`BTFExt` keeps them so, and the linker turns them into
instruction positions of each program. Layouts are ``struct btf_ext_header``,
``bpf_func_info``, ``bpf_line_info`` and ``bpf_core_relo`` of libbpf's
``libbpf_internal.h`` and the kernel's ``<linux/bpf.h>``.
"""

import struct
from typing import Callable, Dict, List, NamedTuple

from construct import Int8ul, Int16ul, Int32ul, Struct

from .reader import ObjectFileError

BTF_EXT_MAGIC = 0xEB9F

btf_ext_header = Struct(
    "magic" / Int16ul, "version" / Int8ul, "flags" / Int8ul, "hdr_len" / Int32ul,
    "func_info_off" / Int32ul, "func_info_len" / Int32ul,
    "line_info_off" / Int32ul, "line_info_len" / Int32ul,
)
_CORE_FIELDS = struct.Struct("<II")            # core_relo_off, core_relo_len (hdr_len >= 32)
_U32 = struct.Struct("<I")
_FUNC_INFO = struct.Struct("<II")              # insn_off, type_id
_LINE_INFO = struct.Struct("<IIII")            # insn_off, file_name_off, line_off, line_col
_CORE_RELO = struct.Struct("<IIII")            # insn_off, type_id, access_str_off, kind


class FuncInfo(NamedTuple):
    """One ``struct bpf_func_info``: where a function starts and its BTF."""

    insn_off: int       # bytes into the section
    type_id: int        # BTF FUNC


class LineInfo(NamedTuple):
    """One ``struct bpf_line_info``: the source line of an instruction."""

    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int       # line << 10 | column

    @property
    def line(self) -> int:
        """The source line (``BPF_LINE_INFO_LINE_NUM``)."""
        return self.line_col >> 10

    @property
    def column(self) -> int:
        """The source column (``BPF_LINE_INFO_LINE_COL``)."""
        return self.line_col & 0x3FF


class CoreRelo(NamedTuple):
    """One ``struct bpf_core_relo``: what an instruction needs of a type."""

    insn_off: int
    type_id: int        # the local (object's) root type
    access: str         # "0:1:3": index into the root, then member/element indexes
    kind: int           # BPF_CORE_FIELD_BYTE_OFFSET, ...


class BTFExt:
    """The three tables, each ``{section name: [records by offset]}``.

    ``string`` reads the object BTF's strings (section names and access
    strings live there)."""

    def __init__(self, data: bytes, string: Callable[[int], str], obj: str):
        self._obj = obj
        self._data = data
        if len(data) < btf_ext_header.sizeof():
            raise self._error("truncated: %d bytes, shorter than its header" % len(data), 0)
        header = btf_ext_header.parse(data)
        if header.magic != BTF_EXT_MAGIC:
            raise self._error("bad magic %#x" % header.magic, 0)
        self.func_info: Dict[str, List[FuncInfo]] = self._table(
            header.hdr_len + header.func_info_off, header.func_info_len, _FUNC_INFO, FuncInfo,
            string)
        self.line_info: Dict[str, List[LineInfo]] = self._table(
            header.hdr_len + header.line_info_off, header.line_info_len, _LINE_INFO, LineInfo,
            string)
        self.core_relos: Dict[str, List[CoreRelo]] = {}
        if header.hdr_len >= btf_ext_header.sizeof() + _CORE_FIELDS.size:
            core_off, core_len = _CORE_FIELDS.unpack_from(data, btf_ext_header.sizeof())
            raw = self._table(header.hdr_len + core_off, core_len, _CORE_RELO, lambda *fields: fields, string)
            self.core_relos = {
                name: [CoreRelo(off, type_id, self._string(string, access_off, off), kind)
                       for off, type_id, access_off, kind in records]
                for name, records in raw.items()}

    def _error(self, problem: str, offset: int) -> ObjectFileError:
        return ObjectFileError(self._obj, problem, ".BTF.ext", offset)

    def _string(self, string: Callable[[int], str], offset: int, referrer: int) -> str:
        try:
            return string(offset)
        except ValueError as exc:
            raise self._error("string offset %d: %s" % (offset, exc), referrer) from None

    def _table(self, start: int, length: int, layout: struct.Struct, record: Callable,
               string: Callable[[int], str]) -> Dict[str, list]:
        """One table: a record size, then per section: its name, a count
        and that many records (each at least ``layout.size`` bytes: newer
        compilers may append fields, which are skipped)."""
        out: Dict[str, list] = {}
        if not length:
            return out
        end = start + length
        if end > len(self._data) or length < 4:
            raise self._error("table [%d, %d) lies outside the %d bytes"
                              % (start, end, len(self._data)), start)
        (rec_size,) = _U32.unpack_from(self._data, start)
        if rec_size < layout.size:
            raise self._error("record size %d is smaller than %d" % (rec_size, layout.size),
                              start)
        pos = start + 4
        while pos < end:
            if pos + 8 > end:
                raise self._error("truncated section entry", pos)
            name_off, count = struct.unpack_from("<II", self._data, pos)
            name = self._string(string, name_off, pos)
            pos += 8
            if pos + count * rec_size > end:
                raise self._error("%d records of %d bytes for %s run past the table's end"
                                  % (count, rec_size, name), pos)
            out.setdefault(name, []).extend(
                record(*layout.unpack_from(self._data, pos + i * rec_size))
                for i in range(count))
            pos += count * rec_size
        return out
