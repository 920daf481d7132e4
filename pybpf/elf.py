"""Write assembled programs as ELF relocatable objects, the file format clang
emits for ``-target bpf`` and that llvm-objdump, llvm-readelf and ELF loaders read.

An object holds one executable section per program (named like clang's
``SEC()``: ``tracepoint/syscalls/sys_enter_openat``, or ``.text``), a
``.rel<section>`` of ``R_BPF_64_64`` relocations for its map references, a
``.maps`` section with one object symbol per map, a ``license`` section, and
``.symtab``/``.strtab``/``.shstrtab``. Symbols name what our annotated
disassembly names: each program's entry (a global function), its
bpf-to-bpf functions (local functions), its labels (local, untyped) and
the maps, so ``llvm-objdump -d -r`` shows the same sections, symbols and
instructions that ``pybpf disasm`` prints.

How map references are encoded, following clang where clang has a form:

* a map (``r1 = map[counts] ll``) is ``r1 = 0 ll`` with a relocation against
  the map's symbol, as clang writes ``&counts`` and libbpf reads it;
* an address in a map's value (``r1 = map[config][0]+8 ll``) has no clang
  form: it keeps ``src = BPF_PSEUDO_MAP_VALUE`` with the offset in ``imm``
  (``ld_pseudo r1, 2, 8``) and the same relocation.

Each map symbol's bytes are the legacy ``struct bpf_map_def`` (type, key and
value sizes, max_entries, flags), zero when only the map's name is known
(assembly text). libbpf 1.x reads map definitions from BTF, which we do not
write yet, so these objects are for reading, diffing and archiving; loading
goes through :mod:`pybpf.kernel.prog`. Reading ELF files is not done here.

>>> from pybpf import asm_text
>>> obj = ObjectFile([ProgramSection("ret0", ".text", asm_text.parse("r0 = 0\\nexit"))])
>>> obj.encode()[:4], len(obj.encode()) > 64
(b'\\x7fELF', True)
"""

from typing import Dict, List, NamedTuple, Sequence

from construct import Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from . import isa
from .asm import RELOC_MAP_VALUE, AssembledProgram

# --- constants from <elf.h> -----------------------------------------------------------
EI_NIDENT = 16
ELFMAG = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
EV_CURRENT = 1
ELFOSABI_NONE = 0
ET_REL = 1
EM_BPF = 247

SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_REL = 9

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_INFO_LINK = 0x40

STB_LOCAL = 0
STB_GLOBAL = 1
STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STV_DEFAULT = 0
SHN_UNDEF = 0

R_BPF_64_64 = 1   # ld_imm64 of a symbol's address (llvm/BinaryFormat/ELFRelocs/BPF.def)

# --- records, field for field as in <elf.h> ------------------------------------------------
Elf64_Ehdr = Struct(
    "e_ident" / Bytes(EI_NIDENT), "e_type" / Int16ul, "e_machine" / Int16ul,
    "e_version" / Int32ul, "e_entry" / Int64ul, "e_phoff" / Int64ul, "e_shoff" / Int64ul,
    "e_flags" / Int32ul, "e_ehsize" / Int16ul, "e_phentsize" / Int16ul, "e_phnum" / Int16ul,
    "e_shentsize" / Int16ul, "e_shnum" / Int16ul, "e_shstrndx" / Int16ul,
)
Elf64_Shdr = Struct(
    "sh_name" / Int32ul, "sh_type" / Int32ul, "sh_flags" / Int64ul, "sh_addr" / Int64ul,
    "sh_offset" / Int64ul, "sh_size" / Int64ul, "sh_link" / Int32ul, "sh_info" / Int32ul,
    "sh_addralign" / Int64ul, "sh_entsize" / Int64ul,
)
Elf64_Sym = Struct(
    "st_name" / Int32ul, "st_info" / Int8ul, "st_other" / Int8ul, "st_shndx" / Int16ul,
    "st_value" / Int64ul, "st_size" / Int64ul,
)
Elf64_Rel = Struct("r_offset" / Int64ul, "r_info" / Int64ul)

# struct bpf_map_def in libbpf's legacy <bpf/bpf_helpers.h>
bpf_map_def = Struct(
    "type" / Int32ul, "key_size" / Int32ul, "value_size" / Int32ul, "max_entries" / Int32ul,
    "map_flags" / Int32ul,
)

TEXT_SECTION = ".text"
MAPS_SECTION = ".maps"
LICENSE_SECTION = "license"
LICENSE_SYMBOL = "_license"


class ProgramSection(NamedTuple):
    """One program: its code goes in ``section`` under the global function ``name``."""

    name: str
    section: str
    program: AssembledProgram


class MapDefinition(NamedTuple):
    """A map the programs reference; zero sizes when only its name is known."""

    name: str
    map_type: int = 0
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    map_flags: int = 0

    def encode(self) -> bytes:
        """The legacy ``struct bpf_map_def`` bytes of the ``maps`` section."""
        return bpf_map_def.build(dict(type=self.map_type, key_size=self.key_size,
                                      value_size=self.value_size,
                                      max_entries=self.max_entries, map_flags=self.map_flags))


class Symbol(NamedTuple):
    """One ``.symtab`` entry; ``section`` is a section name."""

    name: str
    section: str
    value: int
    size: int
    type: int
    bind: int


class Relocation(NamedTuple):
    """One ``.rel<section>`` entry: patch the ld_imm64 at byte ``offset`` with ``symbol``."""

    section: str
    offset: int
    symbol: str


class _Section(NamedTuple):
    name: str
    type: int
    flags: int
    data: bytes
    align: int
    entsize: int = 0
    link: str = ""          # sh_link, by name: the symbol table of a REL, the strings of a SYMTAB
    info_section: str = ""  # sh_info of a REL, by name: the section it patches
    info: int = 0           # sh_info of a SYMTAB: the index of the first global symbol


def object_instructions(program: AssembledProgram) -> List[isa.Instruction]:
    """The instructions as the object stores them: map references in clang's
    relocatable form (see the module docstring), everything else unchanged."""
    out = list(program.instructions)
    for reloc in program.relocations:
        insn = out[reloc.index]
        if reloc.kind == RELOC_MAP_VALUE:
            out[reloc.index] = insn._replace(src=isa.BPF_PSEUDO_MAP_VALUE, imm=reloc.offset)
        else:
            out[reloc.index] = insn._replace(src=0, imm=0)
    return out


def _function_symbols(entry: ProgramSection) -> List[Symbol]:
    """The entry function (global) and bpf-to-bpf functions (local), each
    sized up to the next function or the end of the section."""
    program = entry.program
    size = program.slot_count * isa.SLOT_SIZE
    starts = [(0, entry.name, STB_GLOBAL)]
    for name in program.functions:
        index = program.labels[name]
        if index < len(program) and name != entry.name:
            starts.append((program.slot_of(index) * isa.SLOT_SIZE, name, STB_LOCAL))
    starts.sort()
    ends = [start for start, _, _ in starts[1:]] + [size]
    return [Symbol(name, entry.section, start, end - start, STT_FUNC, bind)
            for (start, name, bind), end in zip(starts, ends)]


def _label_symbols(entry: ProgramSection, functions: Sequence[Symbol]) -> List[Symbol]:
    """Labels inside the code. Left out: one at the very end (it names no
    instruction) and one where a function starts, so that llvm-objdump, which
    shows one name per address, shows the function's."""
    program = entry.program
    taken = {symbol.value for symbol in functions}
    out = []
    for name, index in sorted(program.labels.items(), key=lambda item: item[1]):
        if index < len(program):
            address = program.slot_of(index) * isa.SLOT_SIZE
            if address not in taken:
                out.append(Symbol(name, entry.section, address, 0, STT_NOTYPE, STB_LOCAL))
    return out


class _StringTable:
    """A string table: a leading NUL, then each distinct string once."""

    def __init__(self) -> None:
        self._data = bytearray(b"\0")
        self._offsets: Dict[str, int] = {"": 0}

    def add(self, text: str) -> int:
        if text not in self._offsets:
            self._offsets[text] = len(self._data)
            self._data += text.encode("utf-8") + b"\0"
        return self._offsets[text]

    def encode(self) -> bytes:
        return bytes(self._data)


class ObjectFile:
    """The sections, symbols and relocations of one object; :meth:`encode`
    gives the file's bytes.

    Map references name maps in ``maps``; a referenced map missing there is
    added with only its name. Raises ``ValueError`` for two programs with
    one section or one name, which an object cannot tell apart.
    """

    def __init__(self, programs: Sequence[ProgramSection], maps: Sequence[MapDefinition] = (),
                 license: str = "GPL"):
        self.programs = tuple(programs)
        self.license = license
        self._check_unique()
        defined = {m.name: m for m in maps}
        for entry in self.programs:
            for reloc in entry.program.relocations:
                defined.setdefault(reloc.symbol, MapDefinition(reloc.symbol))
        self.maps = tuple(defined.values())

    def _check_unique(self) -> None:
        for field in ("section", "name"):
            seen: Dict[str, int] = {}
            for number, entry in enumerate(self.programs):
                key = getattr(entry, field)
                if key in seen:
                    raise ValueError("programs %d and %d have the same %s %r; an object needs "
                                     "distinct ones" % (seen[key], number, field, key))
                seen[key] = number

    # -- what the object holds ---------------------------------------------------------

    def symbols(self) -> List[Symbol]:
        """Every symbol in ``.symtab`` order: locals first, as ELF requires."""
        local: List[Symbol] = []
        global_: List[Symbol] = []
        for entry in self.programs:
            functions = _function_symbols(entry)
            for symbol in functions + _label_symbols(entry, functions):
                (global_ if symbol.bind == STB_GLOBAL else local).append(symbol)
        local.sort(key=lambda s: (s.section, s.value))
        size = bpf_map_def.sizeof()
        global_ += [Symbol(m.name, MAPS_SECTION, number * size, size, STT_OBJECT, STB_GLOBAL)
                    for number, m in enumerate(self.maps)]
        if self.license:
            global_.append(Symbol(LICENSE_SYMBOL, LICENSE_SECTION, 0,
                                  len(self.license) + 1, STT_OBJECT, STB_GLOBAL))
        return local + global_

    def relocations(self, entry: ProgramSection) -> List[Relocation]:
        """The relocations the program of ``entry`` needs: one per map reference."""
        program = entry.program
        return [Relocation(entry.section, program.slot_of(r.index) * isa.SLOT_SIZE, r.symbol)
                for r in sorted(program.relocations, key=lambda r: r.index)]

    def _sections(self, symbols: Sequence[Symbol]) -> List[_Section]:
        symbol_index = {(s.name, s.section): number + 1 for number, s in enumerate(symbols)}
        map_symbols = {m.name: symbol_index[(m.name, MAPS_SECTION)] for m in self.maps}
        sections: List[_Section] = []
        for entry in self.programs:
            code = isa.encode(object_instructions(entry.program))
            sections.append(_Section(entry.section, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR,
                                     code, 8))
            relocs = self.relocations(entry)
            if relocs:
                data = b"".join(Elf64_Rel.build(dict(
                    r_offset=r.offset, r_info=(map_symbols[r.symbol] << 32) | R_BPF_64_64))
                    for r in relocs)
                sections.append(_Section(".rel" + entry.section, SHT_REL, SHF_INFO_LINK, data,
                                         8, Elf64_Rel.sizeof(), ".symtab",
                                         info_section=entry.section))
        if self.maps:
            sections.append(_Section(MAPS_SECTION, SHT_PROGBITS, SHF_WRITE | SHF_ALLOC,
                                     b"".join(m.encode() for m in self.maps), 8))
        if self.license:
            sections.append(_Section(LICENSE_SECTION, SHT_PROGBITS, SHF_WRITE | SHF_ALLOC,
                                     self.license.encode("ascii") + b"\0", 1))
        return sections

    # -- bytes -----------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The whole file: header, section contents, section header table.

        Layout::

            +--------+------------------------------+-------------------------+
            | Ehdr   | section data, each aligned   | Shdr[0..n) (64 bytes)   |
            +--------+------------------------------+-------------------------+
        """
        symbols = self.symbols()
        sections = self._sections(symbols)
        strtab = _StringTable()
        section_names = [s.name for s in sections] + [".symtab", ".strtab", ".shstrtab"]
        number_of = {name: number + 1 for number, name in enumerate(section_names)}
        first_global = next((n + 1 for n, s in enumerate(symbols) if s.bind == STB_GLOBAL),
                            len(symbols) + 1)
        symtab = Elf64_Sym.build(dict(st_name=0, st_info=0, st_other=0, st_shndx=SHN_UNDEF,
                                      st_value=0, st_size=0))
        for s in symbols:
            symtab += Elf64_Sym.build(dict(
                st_name=strtab.add(s.name), st_info=(s.bind << 4) | s.type,
                st_other=STV_DEFAULT, st_shndx=number_of[s.section], st_value=s.value,
                st_size=s.size))
        sections.append(_Section(".symtab", SHT_SYMTAB, 0, symtab, 8, Elf64_Sym.sizeof(),
                                 ".strtab", info=first_global))
        sections.append(_Section(".strtab", SHT_STRTAB, 0, strtab.encode(), 1))
        shstrtab = _StringTable()
        for name in section_names:
            shstrtab.add(name)
        sections.append(_Section(".shstrtab", SHT_STRTAB, 0, shstrtab.encode(), 1))
        return _layout(sections, shstrtab, number_of)


def _layout(sections: Sequence[_Section], names: _StringTable,
            number_of: Dict[str, int]) -> bytes:
    body = bytearray(Elf64_Ehdr.sizeof())
    headers = [Elf64_Shdr.build(dict(sh_name=0, sh_type=SHT_NULL, sh_flags=0, sh_addr=0,
                                     sh_offset=0, sh_size=0, sh_link=0, sh_info=0,
                                     sh_addralign=0, sh_entsize=0))]
    for section in sections:
        body += bytes(-len(body) % section.align)
        headers.append(Elf64_Shdr.build(dict(
            sh_name=names.add(section.name), sh_type=section.type, sh_flags=section.flags,
            sh_addr=0, sh_offset=len(body), sh_size=len(section.data),
            sh_link=number_of[section.link] if section.link else 0,
            sh_info=number_of[section.info_section] if section.info_section else section.info,
            sh_addralign=section.align,
            sh_entsize=section.entsize)))
        body += section.data
    body += bytes(-len(body) % 8)
    header = Elf64_Ehdr.build(dict(
        e_ident=(ELFMAG + bytes([ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE]))
        .ljust(EI_NIDENT, b"\0"),
        e_type=ET_REL, e_machine=EM_BPF, e_version=EV_CURRENT, e_entry=0, e_phoff=0,
        e_shoff=len(body), e_flags=0, e_ehsize=Elf64_Ehdr.sizeof(), e_phentsize=0, e_phnum=0,
        e_shentsize=Elf64_Shdr.sizeof(), e_shnum=len(headers),
        e_shstrndx=number_of[".shstrtab"]))
    body[:len(header)] = header
    return bytes(body) + b"".join(headers)
