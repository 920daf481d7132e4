"""The text ``llvm-objdump -d -r`` prints for an object :mod:`pybpf.elf`
writes, made without LLVM: ``pybpf disasm --raw`` prints it, so our listing
and LLVM's can be diffed line for line (``tests/e2e/test_cli_code.py`` does).

What it reproduces of llvm-objdump 19 (``--no-print-imm-hex --mcpu=v4``):

* a ``Disassembly of section NAME:`` block per executable section;
* a ``<symbol>:`` header where a function or label starts; of several
  symbols at one address llvm-objdump shows only the last in (address,
  name) order, and so do we;
* ``slot:<TAB>hex bytes<TAB>text`` per instruction (an ld_imm64 on one line);
* jump targets as ``<symbol+0xoffset>`` from the nearest symbol at or
  before the target (offsets wrap at 64 bits, as LLVM computes them);
* ``R_BPF_64_64`` relocation lines under the instructions they patch.
"""

from bisect import bisect_right
from typing import Dict, List, Sequence, Tuple

from .. import disasm, elf, isa
from .common import hex_bytes

_U64 = (1 << 64) - 1


def _shown_symbols(symbols: Sequence[elf.Symbol], section: str) -> List[Tuple[int, str]]:
    """(address, name) of the one symbol llvm-objdump shows at each address."""
    here: Dict[int, str] = {}
    for symbol in symbols:
        if symbol.section == section and symbol.type in (elf.STT_FUNC, elf.STT_NOTYPE):
            here[symbol.value] = max(here.get(symbol.value, symbol.name), symbol.name)
    return sorted(here.items())


def _target(shown: List[Tuple[int, str]], address: int) -> str:
    position = bisect_right(shown, (address, "\U0010ffff")) - 1
    start, name = shown[position]   # the entry function sits at 0: always found
    offset = (address - start) & _U64
    return " <%s+%#x>" % (name, offset) if offset else " <%s>" % name


def objdump_listing(obj: elf.ObjectFile) -> str:
    """What ``llvm-objdump -d -r`` prints for ``obj.encode()`` after its
    ``file format`` line."""
    symbols = obj.symbols()
    out: List[str] = []
    for entry in obj.programs:
        out += ["", "Disassembly of section %s:" % entry.section]
        shown = _shown_symbols(symbols, entry.section)
        headers = dict(shown)
        relocations = {r.offset: r for r in obj.relocations(entry)}
        instructions = elf.object_instructions(entry.program)
        for insn, slot in zip(instructions, isa.slot_starts(instructions)):
            address = slot * isa.SLOT_SIZE
            if address in headers:
                out += ["", "%016x <%s>:" % (address, headers[address])]
            text = disasm.format_instruction(insn)
            if insn.opcode in disasm.JUMP_OPCODES:
                text += _target(shown, (disasm.jump_target(insn, slot) * isa.SLOT_SIZE) & _U64)
            out.append("%8d:\t%s\t%s" % (slot, hex_bytes(insn.encode()), text))
            if address in relocations:
                out.append("\t\t%016x:  R_BPF_64_64\t%s" % (address, relocations[address].symbol))
    return "\n".join(out)
