"""Read an eBPF ELF object: sections, symbols and relocations, checked.

This is the bottom of :mod:`pybpf.objfile`: it knows ELF, not BPF. Every
record is decoded by the ``construct`` declarations of :mod:`pybpf.elf` (the
module that writes objects), and every offset and index is checked against
the file before it is used, so a truncated or corrupted object fails here
with an :class:`ObjectFileError` naming the object, the section and the
byte offset, never with an ``IndexError`` deep inside the loader.

Only what clang emits for ``-target bpf`` is accepted: a 64-bit,
little-endian relocatable object for machine ``EM_BPF``. An object of the
other byte order (``-target bpfeb``) is refused in one line that says so.
"""

import struct
from typing import Dict, List, NamedTuple, Optional

import construct

from ..elf import (EI_NIDENT, ELFCLASS64, ELFDATA2LSB, ELFMAG, EM_BPF, ET_REL, SHT_REL,
                   SHT_STRTAB, SHT_SYMTAB, Elf64_Ehdr, Elf64_Shdr, Elf64_Sym)
from ..errors import PyBPFError

# <elf.h> values pybpf.elf does not need for writing.
ELFDATA2MSB = 2
SHT_NOBITS = 8
STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2
STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2

_EI_CLASS, _EI_DATA = 4, 5
_SHDR_SIZE = Elf64_Shdr.sizeof()
_SYM_SIZE = Elf64_Sym.sizeof()
# Elf64_Rel (r_offset, r_info) unpacked with struct: an object built with -g
# has 10^4 of them, and construct takes ~15 us a record
_REL = struct.Struct("<QQ")


class ObjectFileError(PyBPFError, ValueError):
    """An object that cannot be loaded as it is: what is wrong, and where
    (the object, the section and the byte offset in it, when known)."""

    def __init__(self, obj: str, problem: str, section: Optional[str] = None,
                 offset: Optional[int] = None):
        self.obj = obj
        self.section = section
        self.offset = offset
        self.problem = problem
        where = obj
        if section is not None:
            where += ": section %s" % section
        if offset is not None:
            where += ", offset %d" % offset
        super().__init__("%s: %s" % (where, problem))


class Section(NamedTuple):
    """One section header and the bytes it describes (zeros for NOBITS)."""

    index: int
    name: str
    type: int
    flags: int
    data: bytes
    size: int
    link: int
    info: int
    align: int


class Symbol(NamedTuple):
    """One ``.symtab`` entry, decoded."""

    index: int
    name: str
    bind: int
    type: int
    visibility: int
    shndx: int
    value: int
    size: int


class Relocation(NamedTuple):
    """One ``Elf64_Rel``: at byte ``offset`` of the section it patches,
    relocation ``type`` against symbol number ``symbol``."""

    offset: int
    type: int
    symbol: int


class ElfFile:
    """The sections, symbols and relocations of one object, by index and by
    name. ``name`` is how messages call the object (its path)."""

    def __init__(self, data: bytes, name: str = "<object>"):
        self.name = name
        self._data = bytes(data)
        header = self._header()
        self.sections: List[Section] = self._sections(header)
        self.by_name: Dict[str, Section] = {}
        for section in self.sections:
            self.by_name.setdefault(section.name, section)
        self.symbols: List[Symbol] = self._symbols()
        self._rel_sections = self._find_rel_sections()
        self._relocations: Dict[int, List[Relocation]] = {}

    def error(self, problem: str, section: Optional[Section] = None,
              offset: Optional[int] = None) -> ObjectFileError:
        """An error naming this object, and the section and offset when known."""
        return ObjectFileError(self.name, problem, section.name if section else None, offset)

    # --- header and sections ---------------------------------------------------------------

    def _header(self) -> construct.Container:
        data = self._data
        if len(data) < EI_NIDENT or data[:4] != ELFMAG:
            raise ObjectFileError(self.name, "not an ELF file (no \\x7fELF magic)")
        if data[_EI_DATA] == ELFDATA2MSB:
            raise ObjectFileError(self.name, "big-endian object (ELFDATA2MSB, clang -target "
                                  "bpfeb): only little-endian objects are supported")
        if data[_EI_DATA] != ELFDATA2LSB or data[_EI_CLASS] != ELFCLASS64:
            raise ObjectFileError(self.name, "not a 64-bit little-endian ELF object "
                                  "(class %d, data %d)" % (data[_EI_CLASS], data[_EI_DATA]))
        if len(data) < Elf64_Ehdr.sizeof():
            raise ObjectFileError(self.name, "truncated: %d bytes, shorter than the ELF header"
                                  % len(data), offset=len(data))
        header = Elf64_Ehdr.parse(data)
        if header.e_machine != EM_BPF:
            raise ObjectFileError(self.name, "not a BPF object (e_machine %d, expected EM_BPF "
                                  "%d)" % (header.e_machine, EM_BPF))
        if header.e_type != ET_REL:
            raise ObjectFileError(self.name, "not a relocatable object (e_type %d)"
                                  % header.e_type)
        if header.e_shentsize != _SHDR_SIZE:
            raise ObjectFileError(self.name, "section header size %d, expected %d"
                                  % (header.e_shentsize, _SHDR_SIZE))
        end = header.e_shoff + header.e_shnum * _SHDR_SIZE
        if end > len(data):
            raise ObjectFileError(self.name, "truncated: the section header table ends at byte "
                                  "%d, beyond the file's %d bytes" % (end, len(data)),
                                  offset=header.e_shoff)
        if not 0 < header.e_shstrndx < header.e_shnum:
            raise ObjectFileError(self.name, "section name table index %d is outside the %d "
                                  "sections" % (header.e_shstrndx, header.e_shnum))
        return header

    def _sections(self, header: construct.Container) -> List[Section]:
        raw = [Elf64_Shdr.parse(self._data[header.e_shoff + i * _SHDR_SIZE:])
               for i in range(header.e_shnum)]
        names = raw[header.e_shstrndx]
        if names.sh_type != SHT_STRTAB:
            raise ObjectFileError(self.name, "section %d, the section name table, is not a "
                                  "string table" % header.e_shstrndx)
        name_bytes = self._bytes_of(names, "section %d (names)" % header.e_shstrndx)
        out = []
        for index, shdr in enumerate(raw):
            name = self._string(name_bytes, shdr.sh_name, ".shstrtab")
            data = (bytes(shdr.sh_size) if shdr.sh_type == SHT_NOBITS
                    else self._bytes_of(shdr, name or "#%d" % index) if index else b"")
            out.append(Section(index, name, shdr.sh_type, shdr.sh_flags, data, shdr.sh_size,
                               shdr.sh_link, shdr.sh_info, shdr.sh_addralign))
        return out

    def _bytes_of(self, shdr: construct.Container, name: str) -> bytes:
        end = shdr.sh_offset + shdr.sh_size
        if shdr.sh_type != SHT_NOBITS and end > len(self._data):
            raise ObjectFileError(self.name, "truncated: its %d bytes at file offset %d run "
                                  "past the end of the file (%d bytes)"
                                  % (shdr.sh_size, shdr.sh_offset, len(self._data)), name,
                                  shdr.sh_offset)
        return self._data[shdr.sh_offset:end]

    def _string(self, table: bytes, offset: int, table_name: str) -> str:
        end = table.find(b"\0", offset)
        if offset >= len(table) or end < 0:
            raise ObjectFileError(self.name, "string offset %d is outside the table (%d bytes)"
                                  % (offset, len(table)), table_name, offset)
        return table[offset:end].decode("utf-8", "replace")

    def section(self, index: int, referrer: str = "") -> Section:
        """Section number ``index``; one that does not exist is an error
        naming ``referrer`` (what pointed there)."""
        if not 0 <= index < len(self.sections):
            raise ObjectFileError(self.name, "%srefers to section %d; there are %d"
                                  % (referrer + " " if referrer else "", index,
                                     len(self.sections)))
        return self.sections[index]

    # --- symbols -----------------------------------------------------------------------------

    def _symbols(self) -> List[Symbol]:
        tables = [s for s in self.sections if s.type == SHT_SYMTAB]
        if not tables:
            raise ObjectFileError(self.name, "no symbol table (.symtab): was it stripped?")
        symtab = tables[0]
        strtab = self.section(symtab.link, ".symtab's sh_link")
        if len(symtab.data) % _SYM_SIZE:
            raise self.error("size %d is not a whole number of %d-byte symbols"
                             % (len(symtab.data), _SYM_SIZE), symtab, len(symtab.data))
        out = []
        for index in range(len(symtab.data) // _SYM_SIZE):
            sym = Elf64_Sym.parse(symtab.data[index * _SYM_SIZE:(index + 1) * _SYM_SIZE])
            out.append(Symbol(index, self._string(strtab.data, sym.st_name, strtab.name),
                              sym.st_info >> 4, sym.st_info & 0xF, sym.st_other & 0x3,
                              sym.st_shndx, sym.st_value, sym.st_size))
        return out

    def symbol(self, index: int, section: Section, offset: int) -> Symbol:
        """Symbol ``index``, referred to from ``offset`` in ``section``."""
        if not 0 <= index < len(self.symbols):
            raise self.error("relocation refers to symbol %d; the symbol table has %d"
                             % (index, len(self.symbols)), section, offset)
        return self.symbols[index]

    def symbols_in(self, section: Section) -> List[Symbol]:
        """The named symbols defined in ``section``, by address."""
        return sorted((s for s in self.symbols if s.shndx == section.index and s.name
                       and s.type != STT_SECTION), key=lambda s: (s.value, s.index))

    # --- relocations -------------------------------------------------------------------------

    def _find_rel_sections(self) -> Dict[int, List[Section]]:
        """``SHT_REL`` sections by the index of the section they patch."""
        out: Dict[int, List[Section]] = {}
        for section in self.sections:
            if section.type == SHT_REL:
                target = self.section(section.info, "%s's sh_info" % section.name)
                out.setdefault(target.index, []).append(section)
        return out

    def relocations(self, section: Section) -> List[Relocation]:
        """The relocations that patch ``section``, by offset. Read when first
        asked for: with ``-g`` most of an object's relocations patch DWARF
        sections, which nothing here reads (nor does libbpf)."""
        found = self._relocations.get(section.index)
        if found is None:
            found = []
            for rel in self._rel_sections.get(section.index, ()):
                if len(rel.data) % _REL.size:
                    raise self.error("size %d is not a whole number of %d-byte relocations"
                                     % (len(rel.data), _REL.size), rel, len(rel.data))
                found.extend(Relocation(offset, info & 0xFFFFFFFF, info >> 32)
                             for offset, info in _REL.iter_unpack(rel.data))
            found.sort(key=lambda r: r.offset)
            self._relocations[section.index] = found
        return found


def read(path: str) -> ElfFile:
    """Read and check the object at ``path`` (an explicit path: the caller's
    choice of file, opened as given)."""
    with open(path, "rb") as f:
        return ElfFile(f.read(), path)
