"""The maps an object declares: BTF-defined ``.maps``, legacy ``maps``
sections, and the global data sections that become array maps.

What comes out is plain data (:class:`MapDef`, :class:`GlobalData`), each
remembering the section and offset it came from, because that is how
relocations find a map: a ``ld_imm64`` patched against a symbol at offset
``n`` of ``.maps`` means the map defined there.

BTF-defined maps are described the way libbpf's ``bpf_helpers.h`` macros
write them: ``__uint(name, n)`` is a member ``int (*name)[n]`` (the value
is the array's length), ``__type(name, T)`` a member ``T *name`` (the
size and BTF id of ``T``), ``__array(values, struct inner)`` a member
``struct inner *values[]`` (the inner map's own definition, or a program
for a prog array), with initial slots given by relocations in ``.rel.maps``.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..consts import BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS, BPF_MAP_TYPE_PROG_ARRAY
from ..elf import bpf_map_def
from ..kernel.btf import BTF
from ..kernel.btf_format import (BTF_KIND_ARRAY, BTF_KIND_DATASEC, BTF_KIND_FUNC_PROTO,
                                 BTF_KIND_PTR, BTF_KIND_STRUCT, BTF_KIND_VAR)
from .reader import SHT_NOBITS, ElfFile, ObjectFileError, Section

MAPS_SECTION = ".maps"
LEGACY_MAPS_SECTION = "maps"
DATA_SECTION_PREFIXES = (".data", ".rodata", ".bss")

#: ``pinning`` values of a BTF map definition (libbpf's enum libbpf_pin_type).
LIBBPF_PIN_NONE = 0
LIBBPF_PIN_BY_NAME = 1

_UINT_MEMBERS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
                 "pinning", "map_extra")


@dataclass
class MapDef:
    """One map as the object defines it. ``initial`` holds the slots a
    map-in-map or prog array is declared with: ``{index: symbol name}``."""

    name: str
    section: str
    offset: int
    map_type: int = 0
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    map_flags: int = 0
    numa_node: int = 0
    pinning: int = LIBBPF_PIN_NONE
    map_extra: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    inner: Optional["MapDef"] = None
    initial: Dict[int, str] = field(default_factory=dict)


@dataclass
class Variable:
    """A global variable of a data section: its byte range and BTF type."""

    name: str
    offset: int
    size: int
    type_id: int


@dataclass
class GlobalData:
    """A data section that becomes a one-element array map: ``data`` is the
    initial value (zeros for ``.bss``); ``variables`` are named from BTF."""

    section: str
    data: bytes
    readonly: bool
    variables: Dict[str, Variable] = field(default_factory=dict)
    datasec_id: int = 0


def is_data_section(name: str) -> bool:
    """``.data``, ``.rodata``, ``.bss`` or one of their ``.name.suffix`` kin,
    as libbpf counts them (``.rodata.str1.1`` included)."""
    return any(name == p or name.startswith(p + ".") for p in DATA_SECTION_PREFIXES)


# --- BTF-defined maps --------------------------------------------------------------------------

def _uint_member(btf: BTF, type_id: int) -> int:
    """The ``n`` of ``int (*name)[n]``."""
    target = btf.resolve_type(type_id)
    if target.kind != BTF_KIND_PTR:
        raise ValueError("is not a __uint() (a pointer to an array)")
    array = btf.resolve_type(target.type)
    if array.kind != BTF_KIND_ARRAY:
        raise ValueError("is not a __uint() (a pointer to an array)")
    return btf.array_info(array.id).nelems


def parse_btf_map(btf: BTF, name: str, struct_id: int, section: str,
                  offset: int) -> MapDef:
    """The definition in struct ``struct_id`` (a ``.maps`` variable's type)."""
    definition = MapDef(name, section, offset)
    struct = btf.resolve_type(struct_id)
    if struct.kind != BTF_KIND_STRUCT:
        raise ValueError("map %r: its definition is %s, not a struct" % (name, struct))
    for member in btf.members(struct.id):
        try:
            if member.name in _UINT_MEMBERS:
                setattr(definition, member.name if member.name != "type" else "map_type",
                        _uint_member(btf, member.type))
            elif member.name in ("key", "value"):
                pointer = btf.resolve_type(member.type)
                if pointer.kind != BTF_KIND_PTR:
                    raise ValueError("is not a __type() (a pointer)")
                setattr(definition, member.name + "_size", btf.sizeof(pointer.type))
                setattr(definition, "btf_%s_type_id" % member.name, pointer.type)
            elif member.name == "values":
                _parse_values(btf, definition, member.type)
            else:
                raise ValueError("is not a map attribute libbpf knows")
        except ValueError as exc:
            raise ValueError("map %r: member %r %s" % (name, member.name, exc)) from None
    return definition


def _parse_values(btf: BTF, definition: MapDef, type_id: int) -> None:
    """``__array(values, ...)``: an inner map's definition, or a prog array's
    programs (function prototypes, nothing to read)."""
    array = btf.resolve_type(type_id)
    if array.kind != BTF_KIND_ARRAY:
        raise ValueError("is not an __array()")
    pointer = btf.resolve_type(btf.array_info(array.id).elem_type_id)
    if pointer.kind != BTF_KIND_PTR:
        raise ValueError("is not an __array() of pointers")
    target = btf.resolve_type(pointer.type)
    if not definition.value_size:
        definition.value_size = 4   # a slot holds a map's or program's fd
    if target.kind != BTF_KIND_FUNC_PROTO:
        definition.inner = parse_btf_map(btf, definition.name + ".inner", target.id,
                                         definition.section, definition.offset)


def btf_maps(elf: ElfFile, btf: Optional[BTF]) -> List[MapDef]:
    """Every map of ``.maps``, in the order of its DATASEC, with initial slots."""
    section = elf.by_name.get(MAPS_SECTION)
    if section is None:
        return []
    if btf is None:
        raise elf.error("has BTF-defined maps but the object has no .BTF section", section)
    datasec = next((t for t in btf.find_all(MAPS_SECTION, (BTF_KIND_DATASEC,))), None)
    if datasec is None:
        raise elf.error("no DATASEC for it in .BTF", section)
    symbols = {s.name: s for s in elf.symbols_in(section)}
    out = []
    for var_id, _offset, _size in datasec_entries(btf, datasec.id):
        var = btf.type(var_id)
        if var.kind != BTF_KIND_VAR:
            raise elf.error("DATASEC entry %s is not a variable" % var, section)
        symbol = symbols.get(var.name)
        if symbol is None:
            raise elf.error("map %r has no symbol" % var.name, section)
        try:
            out.append(parse_btf_map(btf, var.name, var.type, section.name, symbol.value))
        except ValueError as exc:
            raise elf.error(str(exc), section, symbol.value) from None
    _initial_slots(elf, btf, section, out)
    return out


def _initial_slots(elf: ElfFile, btf: BTF, section: Section, maps: List[MapDef]) -> None:
    """``.rel.maps``: each relocation fills slot ``i`` of the ``values``
    array of the map it lands in with the symbol it names."""
    by_offset = sorted(maps, key=lambda m: m.offset)
    for reloc in elf.relocations(section):
        owner = next((m for m in reversed(by_offset) if m.offset <= reloc.offset), None)
        symbol = elf.symbol(reloc.symbol, section, reloc.offset)
        if owner is None or owner.map_type not in (BPF_MAP_TYPE_ARRAY_OF_MAPS,
                                                   BPF_MAP_TYPE_HASH_OF_MAPS,
                                                   BPF_MAP_TYPE_PROG_ARRAY):
            raise elf.error("relocation against %r initialises no map-in-map or prog array"
                            % symbol.name, section, reloc.offset)
        values_start = _values_offset(elf, btf, owner)
        index, rest = divmod(reloc.offset - owner.offset - values_start, 8)
        if rest or index < 0:
            raise elf.error("relocation is not on a slot of %r's values" % owner.name,
                            section, reloc.offset)
        owner.initial[index] = symbol.name


def _values_offset(elf: ElfFile, btf: BTF, definition: MapDef) -> int:
    """Where ``values`` starts inside the map's definition."""
    datasec = btf.find(MAPS_SECTION, (BTF_KIND_DATASEC,))
    for var_id, _offset, _size in datasec_entries(btf, datasec.id):
        var = btf.type(var_id)
        if var.name == definition.name:
            for member in btf.members(var.type):
                if member.name == "values":
                    return member.bit_offset // 8
    raise elf.error("map %r has no values member" % definition.name)


def datasec_entries(btf: BTF, datasec_id: int) -> List[Tuple[int, int, int]]:
    """(variable type id, offset, size) of each entry of a DATASEC."""
    return [(entry.type, entry.offset, entry.size) for entry in btf.record(datasec_id).entries]


# --- legacy maps ---------------------------------------------------------------------------------

def legacy_maps(elf: ElfFile) -> List[MapDef]:
    """``struct bpf_map_def`` objects in a ``maps`` section, one per symbol
    (iproute2's longer definitions: the first five fields are the same)."""
    section = elf.by_name.get(LEGACY_MAPS_SECTION)
    if section is None:
        return []
    out = []
    size = bpf_map_def.sizeof()
    for symbol in elf.symbols_in(section):
        if symbol.value + size > len(section.data):
            raise elf.error("map %r's definition runs past the section's end" % symbol.name,
                            section, symbol.value)
        fields = bpf_map_def.parse(section.data[symbol.value:])
        out.append(MapDef(symbol.name, section.name, symbol.value, fields.type,
                          fields.key_size, fields.value_size, fields.max_entries,
                          fields.map_flags))
    return out


# --- global data -------------------------------------------------------------------------------

def global_data(elf: ElfFile, btf: Optional[BTF]) -> List[GlobalData]:
    """One :class:`GlobalData` per non-empty data section, with its
    variables named and typed from BTF where the object has it."""
    out = []
    for section in elf.sections:
        if not is_data_section(section.name) or not section.size:
            continue
        data = bytes(section.size) if section.type == SHT_NOBITS else section.data
        entry = GlobalData(section.name, data, section.name.startswith(".rodata"))
        if btf is not None:
            _name_variables(elf, btf, section, entry)
        out.append(entry)
    return out


def _name_variables(elf: ElfFile, btf: BTF, section: Section, entry: GlobalData) -> None:
    found = btf.find_all(section.name, (BTF_KIND_DATASEC,))
    if not found:
        return
    entry.datasec_id = found[0].id
    symbols = {s.name: s for s in elf.symbols_in(section)}
    for var_id, offset, size in datasec_entries(btf, found[0].id):
        var = btf.type(var_id)
        symbol = symbols.get(var.name)
        if symbol is not None:
            offset = symbol.value
        if offset + size > section.size:
            raise ObjectFileError(elf.name, "variable %r [%d, %d) lies outside the section"
                                  % (var.name, offset, offset + size), section.name, offset)
        entry.variables[var.name] = Variable(var.name, offset, size, var.type)
