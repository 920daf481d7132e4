"""Relocations and linking: each entry program becomes one self-contained
piece of code, as libbpf makes it.

An object keeps code per section: entry programs in their ``SEC()``
sections and the functions they call (``static`` or global subprograms) in
``.text``. For each entry program the linker copies its function, then,
depth first in the order calls appear, appends every ``.text`` function
it reaches and points each call (``R_BPF_64_32``, or a call without a
relocation inside one section) and each function address (a ``bpf_loop``
callback: ``ld_imm64`` against a function) at the copy. This is the order
libbpf's ``bpf_object__reloc_code`` appends in, so the kernel sees the same
instructions from both.

``R_BPF_64_64`` against a map symbol or a data section is kept as a
reference by name (:class:`Reference`), resolved to an fd when the
collection loads; externs are patched in place by :mod:`.externs`.
``func_info`` and ``line_info`` of ``.BTF.ext`` follow the code they
describe.
"""

import struct
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from .. import isa
from .btf_ext import BTFExt
from .reader import (SHN_LORESERVE, SHN_UNDEF, STB_LOCAL, STT_FUNC, STT_SECTION, ElfFile,
                     Section, Symbol)

R_BPF_64_64 = 1
R_BPF_64_32 = 10

_SLOT = struct.Struct("<BBhi")
_CALL = isa.BPF_JMP | isa.BPF_CALL
_LD_IMM64 = isa.LD_IMM64_OPCODE

# What a reference does to its instruction.
REF_MAP = "map"          # ld_imm64: the map's fd
REF_VALUE = "value"      # ld_imm64: the address of a byte of a (global data) map's value
REF_CALL = "call"        # call: a .text function
REF_FUNC = "func"        # ld_imm64: a .text function's address


class Reference(NamedTuple):
    """What one instruction refers to: a map (by name), a byte of a map's
    value, or the ``.text`` slot of a function."""

    kind: str
    target: str = ""
    offset: int = 0          # byte offset into the value; the slot in .text for calls


class Function(NamedTuple):
    """A function's code range in its section, in slots."""

    name: str
    section: Section
    start: int
    end: int


class LinkedProgram(NamedTuple):
    """An entry program with its subprograms appended: code (slots) and,
    by slot, the references left for load time, the ``func_info``, the
    ``line_info`` (slot, file, line, column) and the same as the kernel
    takes it (slot, file name offset, line offset, line_col)."""

    name: str
    section: str
    code: bytes
    references: Dict[int, Reference]
    func_info: List[Tuple[int, int]]
    line_info: List[Tuple[int, str, int, int]]
    kernel_line_info: List[Tuple[int, int, int, int]]


ExternPatch = Callable[[bytearray, int, Symbol, Section], Optional[Reference]]


class Linker:
    """Links the entry programs of ``elf``. ``map_at`` names the map defined
    at (section, offset); ``extern`` patches (or refers) an instruction that
    uses an extern symbol. ``code`` holds each executable section's bytes as
    CO-RE left them."""

    def __init__(self, elf: ElfFile, code: Dict[str, bytearray],
                 map_at: Callable[[str, int], Optional[str]],
                 data_section: Callable[[str], bool], extern: ExternPatch,
                 btf_ext: Optional[BTFExt], string: Callable[[int], str]):
        self.elf = elf
        self._code = code
        self._map_at = map_at
        self._is_data = data_section
        self._extern = extern
        self._ext = btf_ext
        self._string = string
        self.text = elf.by_name.get(".text")
        self.references: Dict[str, Dict[int, Reference]] = {
            name: self._section_references(elf.by_name[name]) for name in code}
        self._text_functions = self.functions(self.text) if self.text is not None else []

    # --- functions ---------------------------------------------------------------------------

    def functions(self, section: Section) -> List[Function]:
        """The functions of ``section`` by address (size from the symbol, or
        up to the next one)."""
        symbols = [s for s in self.elf.symbols_in(section) if s.type == STT_FUNC]
        out = []
        for number, symbol in enumerate(symbols):
            end = symbol.value + symbol.size if symbol.size else (
                symbols[number + 1].value if number + 1 < len(symbols) else section.size)
            if symbol.value % 8 or end > section.size:
                raise self.elf.error("function %r [%d, %d) is not whole instructions inside "
                                     "the section" % (symbol.name, symbol.value, end),
                                     section, symbol.value)
            out.append(Function(symbol.name, section, symbol.value // 8, end // 8))
        return out

    def entry_programs(self) -> List[Function]:
        """Every function outside ``.text``: the programs libbpf loads."""
        out = []
        for name in self._code:
            section = self.elf.by_name[name]
            if section is self.text:
                continue
            for function in self.functions(section):
                symbol = next(s for s in self.elf.symbols_in(section) if s.name == function.name)
                if symbol.bind == STB_LOCAL:
                    raise self.elf.error("program %r is static: libbpf loads only global "
                                         "functions as programs" % symbol.name, section,
                                         symbol.value)
                out.append(function)
        return out

    # --- relocations -------------------------------------------------------------------------

    def _section_references(self, section: Section) -> Dict[int, Reference]:
        """The references of every relocated instruction of ``section``, by slot;
        externs are patched into the code here."""
        code = self._code[section.name]
        out: Dict[int, Reference] = {}
        for reloc in self.elf.relocations(section):
            if reloc.offset % 8 or reloc.offset + 8 > len(code):
                raise self.elf.error("relocation at a byte that is no instruction", section,
                                     reloc.offset)
            if reloc.type not in (R_BPF_64_64, R_BPF_64_32):
                raise self.elf.error("relocation type %d is not one BPF code uses"
                                     % reloc.type, section, reloc.offset)
            symbol = self.elf.symbol(reloc.symbol, section, reloc.offset)
            reference = self._reference(code, reloc.offset // 8, symbol, section)
            if reference is not None:
                out[reloc.offset // 8] = reference
        return out

    def _reference(self, code: bytearray, slot: int, symbol: Symbol,
                   section: Section) -> Optional[Reference]:
        opcode, _regs, _off, imm = _SLOT.unpack_from(code, slot * 8)
        where = slot * 8
        if opcode not in (_CALL, _LD_IMM64):
            raise self.elf.error("relocation against %r on an instruction (opcode %#x) that "
                                 "is neither a call nor a 64-bit load" % (symbol.name, opcode),
                                 section, where)
        if opcode == _LD_IMM64 and (slot + 1) * 8 + 8 > len(code):
            raise self.elf.error("64-bit load cut off by the section's end", section, where)
        if symbol.shndx == SHN_UNDEF:
            return self._extern(code, slot, symbol, section)
        if symbol.shndx >= SHN_LORESERVE:
            raise self.elf.error("relocation against %r, which is in no section (index %#x)"
                                 % (symbol.name, symbol.shndx), section, where)
        target = self.elf.section(symbol.shndx, "symbol %r" % symbol.name)
        if opcode == _CALL:
            if target is not self.text:
                raise self.elf.error("call to %r in section %s: called functions must be in "
                                     ".text" % (symbol.name, target.name), section, where)
            return Reference(REF_CALL, offset=symbol.value // 8 + imm + 1)
        if target is self.text and symbol.type in (STT_FUNC, STT_SECTION):
            if (symbol.value + imm) % 8:
                raise self.elf.error("function address %r+%d is not an instruction"
                                     % (symbol.name, imm), section, where)
            return Reference(REF_FUNC, offset=(symbol.value + imm) // 8)
        map_name = self._map_at(target.name, symbol.value)
        if map_name is not None:
            return Reference(REF_MAP, map_name)
        if self._is_data(target.name):
            return Reference(REF_VALUE, target.name, symbol.value + imm)
        raise self.elf.error("relocation against %r in section %s, which is no map, data or "
                             "function" % (symbol.name, target.name), section, where)

    # --- linking -----------------------------------------------------------------------------

    def link(self, entry: Function) -> LinkedProgram:
        """``entry`` with every ``.text`` function it reaches appended."""
        state = _LinkState()
        self._append(state, entry)
        return LinkedProgram(entry.name, entry.section.name, bytes(state.code),
                             state.references, state.func_info, state.line_info,
                             state.kernel_line_info)

    def _append(self, state: "_LinkState", function: Function) -> None:
        base = len(state.code) // 8
        state.placed[(function.section.name, function.start)] = base
        source = self._code[function.section.name]
        state.code += source[function.start * 8:function.end * 8]
        self._copy_btf_ext(state, function, base)
        references = self.references[function.section.name]
        for slot in range(function.start, function.end):
            reference = references.get(slot)
            opcode, regs, _off, imm = _SLOT.unpack_from(source, slot * 8)
            if reference is None and opcode == _CALL and regs >> 4 == isa.BPF_PSEUDO_CALL:
                # a call inside one section needs no relocation: imm is already relative
                reference = Reference(REF_CALL, offset=slot + imm + 1)
            if reference is None:
                continue
            here = base + slot - function.start
            if reference.kind in (REF_MAP, REF_VALUE):
                state.references[here] = reference
                continue
            callee = self._text_function_at(reference.offset, function, slot)
            key = (callee.section.name, callee.start)
            if key not in state.placed:
                self._append(state, callee)
            target = state.placed[key] + reference.offset - callee.start
            self._set_target(state.code, here, reference.kind, target)

    def _text_function_at(self, text_slot: int, caller: Function, slot: int) -> Function:
        for function in self._text_functions:
            if function.start <= text_slot < function.end:
                return function
        raise self.elf.error("call or function address leads to .text instruction %d, where "
                             "no function is" % text_slot, caller.section, slot * 8)

    @staticmethod
    def _set_target(code: bytearray, here: int, kind: str, target: int) -> None:
        """Point the call or ld_imm64 at ``here`` at slot ``target`` (both
        relative to the next instruction, as the kernel counts)."""
        opcode, regs, off, _imm = _SLOT.unpack_from(code, here * 8)
        src = isa.BPF_PSEUDO_CALL if kind == REF_CALL else isa.BPF_PSEUDO_FUNC
        _SLOT.pack_into(code, here * 8, opcode, (regs & 0x0F) | src << 4, off,
                        target - here - 1)
        if kind == REF_FUNC:
            _SLOT.pack_into(code, here * 8 + 8, 0, 0, 0, 0)

    def _copy_btf_ext(self, state: "_LinkState", function: Function, base: int) -> None:
        if self._ext is None:
            return
        name = function.section.name
        lo, hi = function.start * 8, function.end * 8
        for record in self._ext.func_info.get(name, ()):
            if lo <= record.insn_off < hi:
                state.func_info.append((base + (record.insn_off - lo) // 8, record.type_id))
        for line in self._ext.line_info.get(name, ()):
            if lo <= line.insn_off < hi:
                slot = base + (line.insn_off - lo) // 8
                state.line_info.append((slot, self._string(line.file_name_off), line.line,
                                        line.column))
                state.kernel_line_info.append((slot, line.file_name_off, line.line_off,
                                               line.line_col))


class _LinkState:
    """The program being built: its code, where each function landed, and
    what travels with the code."""

    def __init__(self) -> None:
        self.code = bytearray()
        self.placed: Dict[Tuple[str, int], int] = {}
        self.references: Dict[int, Reference] = {}
        self.func_info: List[Tuple[int, int]] = []
        self.line_info: List[Tuple[int, str, int, int]] = []
        self.kernel_line_info: List[Tuple[int, int, int, int]] = []
