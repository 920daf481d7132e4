"""The assembler: instructions plus labels, symbolic jumps and calls, map
references kept as relocations, and the source line of every instruction.

:class:`Assembler` is a builder. Labels are metadata, not pseudo-instructions:
a label names the next instruction emitted, a jump records the label it
targets, and offsets are computed once, in :meth:`Assembler.assemble`, which
fails with an :class:`~pybpf.errors.AssemblyError` naming the source line for
an unknown label or an offset that does not fit. The result is an
:class:`AssembledProgram`: instructions, relocations and the line table in one
immutable object.

Indexes: ``index`` always counts logical instructions (an ``ld_imm64`` is one);
``slot`` counts 8-byte slots, as the kernel and its verifier log do.

>>> a = Assembler()
>>> a.emit(isa.mov(isa.R0, 0))
>>> a.emit(isa.exit_())
>>> a.assemble().bytecode().hex()
'b7000000000000009500000000000000'
"""

import sys
from bisect import bisect_right
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from . import helper_defs, isa
from .errors import AssemblyError, SourceLocation

_PACKAGE_DIR = __file__.rsplit("/", 1)[0] + "/"

# Relocation kinds: what the loader must patch before the kernel sees the code.
RELOC_MAP_FD = "map_fd"          # ld_imm64 src=BPF_PSEUDO_MAP_FD, imm = map fd
RELOC_MAP_VALUE = "map_value"    # ld_imm64 src=BPF_PSEUDO_MAP_VALUE, imm = fd | offset << 32


class Relocation(NamedTuple):
    """A reference to a map that is resolved when the program is loaded."""

    index: int          # logical instruction index of the ld_imm64
    kind: str           # RELOC_MAP_FD or RELOC_MAP_VALUE
    symbol: str         # the map's name
    offset: int = 0     # byte offset into the value, for RELOC_MAP_VALUE


def caller_location(skip_package: str = _PACKAGE_DIR) -> Optional[SourceLocation]:
    """The first stack frame outside pybpf's own code (or ``None``).

    This is how an instruction learns which line of a user's program or of
    ``programs/`` emitted it without every call passing it along.
    """
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(skip_package) or "/programs/" in filename:
            return SourceLocation(filename, frame.f_lineno)
        frame = frame.f_back
    return None


class AssembledProgram:
    """Finished code: immutable instructions, relocations, labels, line table.

    ``lines[i]`` is where logical instruction ``i`` came from.
    """

    __slots__ = ("name", "instructions", "relocations", "labels", "lines", "functions",
                 "_slot_starts")

    def __init__(self, instructions: Sequence[isa.Instruction],
                 relocations: Sequence[Relocation] = (),
                 labels: Optional[Mapping[str, int]] = None,
                 lines: Optional[Sequence[Optional[SourceLocation]]] = None,
                 functions: Sequence[str] = (), name: str = ""):
        self.name = name
        self.instructions: Tuple[isa.Instruction, ...] = tuple(instructions)
        self.relocations: Tuple[Relocation, ...] = tuple(relocations)
        self.labels: Dict[str, int] = dict(labels or {})
        self.lines: Tuple[Optional[SourceLocation], ...] = (
            tuple(lines) if lines is not None else (None,) * len(self.instructions))
        self.functions: Tuple[str, ...] = tuple(functions)
        self._slot_starts = isa.slot_starts(self.instructions)  # and the end, last

    def __len__(self) -> int:
        return len(self.instructions)

    @property
    def slot_count(self) -> int:
        return self._slot_starts[-1]

    def slot_of(self, index: int) -> int:
        """Slot where logical instruction ``index`` starts."""
        return self._slot_starts[index]

    def index_of_slot(self, slot: int) -> int:
        """Logical instruction that covers ``slot`` (verifier logs count slots)."""
        if not 0 <= slot < self.slot_count:
            raise IndexError("slot %d is outside the program (%d slots)" % (slot, self.slot_count))
        return bisect_right(self._slot_starts, slot) - 1

    def location_of_slot(self, slot: int) -> Optional[SourceLocation]:
        return self.lines[self.index_of_slot(slot)]

    def labels_by_index(self) -> Dict[int, List[str]]:
        out: Dict[int, List[str]] = {}
        for name, index in self.labels.items():
            out.setdefault(index, []).append(name)
        return out

    def map_symbols(self) -> Dict[int, Relocation]:
        return {reloc.index: reloc for reloc in self.relocations}

    def resolve(self, map_fds: Optional[Mapping[str, int]] = None) -> List[isa.Instruction]:
        """Instructions with every map reference patched to a file descriptor."""
        out = list(self.instructions)
        for reloc in self.relocations:
            if map_fds is None or reloc.symbol not in map_fds:
                raise AssemblyError("map %r is referenced but was not given to the loader"
                                    % reloc.symbol, self.lines[reloc.index])
            fd = map_fds[reloc.symbol]
            insn = out[reloc.index]
            if reloc.kind == RELOC_MAP_FD:
                out[reloc.index] = insn._replace(src=isa.BPF_PSEUDO_MAP_FD, imm=fd)
            else:
                out[reloc.index] = insn._replace(src=isa.BPF_PSEUDO_MAP_VALUE,
                                                 imm=fd | (reloc.offset << 32))
        return out

    def bytecode(self, map_fds: Optional[Mapping[str, int]] = None) -> bytes:
        """Encoded bytes; ``map_fds`` is needed when the program references maps."""
        if self.relocations:
            return isa.encode(self.resolve(map_fds))
        return isa.encode(self.instructions)


class _Fixup(NamedTuple):
    index: int
    target: str
    kind: str  # "jump" (off field), "long" (imm of gotol), "call", "func" (ld_imm64 pseudo func)


HelperRef = Union[str, int]


class Assembler:
    """Build a program instruction by instruction.

    Every ``emit`` records a source location: the ``location`` given, or the
    first caller outside pybpf.
    """

    def __init__(self, name: str = ""):
        self.name = name
        self._insns: List[isa.Instruction] = []
        self._lines: List[Optional[SourceLocation]] = []
        self._labels: Dict[str, int] = {}
        self._label_lines: Dict[str, Optional[SourceLocation]] = {}
        self._fixups: List[_Fixup] = []
        self._relocs: List[Relocation] = []
        self._functions: List[str] = []

    def __len__(self) -> int:
        return len(self._insns)

    # -- plain instructions --------------------------------------------------------

    def emit(self, insn: isa.Instruction, location: Optional[SourceLocation] = None) -> None:
        problem = isa.validity_problem(insn)
        loc = location or caller_location()
        if problem:
            raise AssemblyError("invalid instruction %r: %s" % (insn, problem), loc)
        self._insns.append(insn)
        self._lines.append(loc)

    def label(self, name: str, location: Optional[SourceLocation] = None) -> None:
        """Name the next instruction emitted."""
        loc = location or caller_location()
        if name in self._labels:
            raise AssemblyError("label %r defined twice (first at %s)"
                                % (name, self._label_lines[name]), loc)
        self._labels[name] = len(self._insns)
        self._label_lines[name] = loc

    def function(self, name: str, location: Optional[SourceLocation] = None) -> None:
        """Start a bpf-to-bpf subprogram: a label that ``call_function`` targets."""
        self.label(name, location or caller_location())
        self._functions.append(name)

    # -- symbolic control flow -----------------------------------------------------

    def jump(self, op: int, dst: isa.Reg, operand: isa.Operand, target: str, *,
             jmp32: bool = False, location: Optional[SourceLocation] = None) -> None:
        """``if dst <op> operand goto target``."""
        self._fixup(isa.jump(op, dst, operand, 0, jmp32=jmp32), target, "jump", location)

    def goto(self, target: str, *, long: bool = False,
             location: Optional[SourceLocation] = None) -> None:
        """Unconditional jump; ``long`` uses ``gotol`` (32-bit offset)."""
        if long:
            self._fixup(isa.gotol(0), target, "long", location)
        else:
            self._fixup(isa.ja(0), target, "jump", location)

    def may_goto(self, target: str, location: Optional[SourceLocation] = None) -> None:
        self._fixup(isa.may_goto(0), target, "jump", location)

    def call(self, helper: HelperRef, location: Optional[SourceLocation] = None) -> None:
        """Call a kernel helper by name (``"map_lookup_elem"`` or
        ``"bpf_map_lookup_elem"``) or by id."""
        loc = location or caller_location()
        self.emit(isa.call_helper(helper_id(helper, loc)), loc)

    def call_function(self, target: str, location: Optional[SourceLocation] = None) -> None:
        """bpf-to-bpf call of a subprogram started with :meth:`function`."""
        self._fixup(isa.call_local(0), target, "call", location)

    def ld_function(self, dst: isa.Reg, target: str,
                    location: Optional[SourceLocation] = None) -> None:
        """Load the address of a subprogram (a callback for ``bpf_loop``)."""
        self._fixup(isa.ld_imm64(dst, 0, isa.BPF_PSEUDO_FUNC), target, "func", location)

    def ld_map(self, dst: isa.Reg, map_name: str, *, value_offset: Optional[int] = None,
               location: Optional[SourceLocation] = None) -> None:
        """Load a map reference (or, with ``value_offset``, the address of a byte
        in an array map's value). The fd is patched in at load time."""
        loc = location or caller_location()
        if value_offset is None:
            reloc = Relocation(len(self._insns), RELOC_MAP_FD, map_name)
            self.emit(isa.ld_imm64(dst, 0, isa.BPF_PSEUDO_MAP_FD), loc)
        else:
            reloc = Relocation(len(self._insns), RELOC_MAP_VALUE, map_name, value_offset)
            self.emit(isa.ld_imm64(dst, 0, isa.BPF_PSEUDO_MAP_VALUE), loc)
        self._relocs.append(reloc)

    def _fixup(self, insn: isa.Instruction, target: str, kind: str,
               location: Optional[SourceLocation]) -> None:
        loc = location or caller_location(_PACKAGE_DIR)
        self._fixups.append(_Fixup(len(self._insns), target, kind))
        self.emit(insn, loc)

    # -- finish --------------------------------------------------------------------

    def assemble(self) -> AssembledProgram:
        """Resolve labels into offsets and return the finished program."""
        insns = list(self._insns)
        # a label may name the end (e.g. a final exit path): slot_starts has it last
        slot_starts = isa.slot_starts(insns)
        for fix in self._fixups:
            loc = self._lines[fix.index]
            if fix.target not in self._labels:
                raise AssemblyError("unknown label %r" % fix.target, loc)
            target_slot = slot_starts[self._labels[fix.target]]
            insn = insns[fix.index]
            # pc-relative to the next slot, except for a function address:
            # the kernel resolves ld_imm64 BPF_PSEUDO_FUNC like a call, from
            # the ld_imm64's own slot + 1 (add_subprog_and_kfunc in verifier.c).
            delta = target_slot - slot_starts[fix.index] - (1 if fix.kind == "func" else insn.width)
            if fix.kind == "jump":
                if not -0x8000 <= delta <= 0x7FFF:
                    raise AssemblyError("jump to %r is %d instructions away, beyond the 16-bit "
                                        "offset range (-32768..32767); use a long goto (gotol)"
                                        % (fix.target, delta), loc)
                insns[fix.index] = insn._replace(off=delta)
            elif fix.kind in ("long", "call", "func"):
                if not -0x80000000 <= delta <= 0x7FFFFFFF:
                    raise AssemblyError("target %r is beyond the 32-bit offset range" % fix.target,
                                        loc)
                insns[fix.index] = insn._replace(imm=delta)
        return AssembledProgram(insns, self._relocs, self._labels, self._lines,
                                self._functions, self.name)


def helper_id(helper: HelperRef, location: Optional[SourceLocation] = None) -> int:
    """Resolve a helper name (with or without ``bpf_``) or id to its id."""
    if isinstance(helper, int):
        if helper not in helper_defs.HELPERS_BY_ID:
            raise AssemblyError("unknown helper id %d" % helper, location)
        return helper
    name = helper if helper.startswith("bpf_") else "bpf_" + helper
    proto = helper_defs.HELPERS.get(name)
    if proto is None:
        raise AssemblyError("unknown helper %r" % helper, location)
    return proto.id
