"""The assembler: one list of instructions, each carrying its own metadata.

An :class:`Instruction` is one logical eBPF instruction with what cilium/ebpf
keeps in ``asm.Instruction``'s metadata: the labels that name it (symbols),
the symbol it refers to (a jump's or call's target label, or a map), and the
source line that emitted it. Labels are metadata, not pseudo-instructions.
The DSL's code generator builds such a list, its peephole pass rewrites it,
:class:`Assembler` takes it (checking every instruction and label), and
:meth:`Assembler.assemble` resolves references last: jump and call offsets
are computed there, failing with an :class:`~pybpf.errors.AssemblyError`
that names the source line for an unknown label or an offset that does not
fit; map references stay symbolic until the loader has file descriptors.

The result is an :class:`AssembledProgram`: the finished list, and the same
facts as plain tables (instructions, relocations, labels, line table,
functions) from which one can be rebuilt.

Indexes: ``index`` always counts logical instructions (an ``ld_imm64`` is one);
``slot`` counts 8-byte slots, as the kernel and its verifier log do.

>>> a = Assembler()
>>> a.emit(isa.mov(isa.R0, 0))
>>> a.emit(isa.exit_())
>>> a.assemble().bytecode().hex()
'b7000000000000009500000000000000'
"""

from bisect import bisect_right
from operator import itemgetter
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from . import helper_defs, isa
from .caller import caller_location
from .errors import AssemblyError, SourceLocation

# What a reference patches. Resolved by the assembler:
REF_JUMP = "jump"         # the 16-bit off field of a jump
REF_LONG_JUMP = "long"    # the 32-bit imm of gotol
REF_CALL = "call"         # the imm of a bpf-to-bpf call
REF_FUNC = "func"         # the imm of ld_imm64 BPF_PSEUDO_FUNC (a callback's address)
# Relocations, resolved by the loader before the kernel sees the code:
RELOC_MAP_FD = "map_fd"          # ld_imm64 src=BPF_PSEUDO_MAP_FD, imm = map fd
RELOC_MAP_VALUE = "map_value"    # ld_imm64 src=BPF_PSEUDO_MAP_VALUE, imm = fd | offset << 32
_RELOCATIONS = (RELOC_MAP_FD, RELOC_MAP_VALUE)

GOTO_OPCODE = isa.BPF_JMP | isa.BPF_JA


class Relocation(NamedTuple):
    """A reference to a map that is resolved when the program is loaded."""

    index: int          # logical instruction index of the ld_imm64
    kind: str           # RELOC_MAP_FD or RELOC_MAP_VALUE
    symbol: str         # the map's name
    offset: int = 0     # byte offset into the value, for RELOC_MAP_VALUE


class Instruction(NamedTuple):
    """One logical instruction and its metadata, an immutable value (passes
    put a ``_replace``d copy in its place, as cilium's asm does).

    ``insn`` is the :class:`pybpf.isa.Instruction` (with a zero offset until
    its reference is resolved); ``location`` is where it was emitted;
    ``reference`` is the label or map it refers to and ``kind`` how
    (``REF_*``/``RELOC_*``), ``offset`` the byte offset into a map's value;
    ``labels`` name it. A tuple of tuples and numbers: cheap to make, and
    nothing for the garbage collector to follow.
    """

    insn: isa.Instruction
    location: Optional[SourceLocation] = None
    reference: Optional[str] = None
    kind: Optional[str] = None
    offset: int = 0
    labels: Tuple[str, ...] = ()

    def __repr__(self) -> str:
        ref = " -> %s %s" % (self.kind, self.reference) if self.kind else ""
        named = "%s: " % ", ".join(self.labels) if self.labels else ""
        return "<%s%r%s at %s>" % (named, self.insn, ref, self.location)


# -- instructions with references: what the DSL and the text parser emit --------------


def jump(op: int, dst: isa.Reg, operand: isa.Operand, target: str, *, jmp32: bool = False,
         location: Optional[SourceLocation] = None) -> Instruction:
    """``if dst <op> operand goto target``."""
    return Instruction(isa.jump(op, dst, operand, 0, jmp32=jmp32), location, target, REF_JUMP)


def goto(target: str, *, long: bool = False,
         location: Optional[SourceLocation] = None) -> Instruction:
    """Unconditional jump; ``long`` uses ``gotol`` (32-bit offset)."""
    if long:
        return Instruction(isa.gotol(0), location, target, REF_LONG_JUMP)
    return Instruction(isa.ja(0), location, target, REF_JUMP)


def may_goto(target: str, location: Optional[SourceLocation] = None) -> Instruction:
    """``may_goto target``: jump there when the kernel's loop budget runs out."""
    return Instruction(isa.may_goto(0), location, target, REF_JUMP)


def call(helper: "HelperRef", location: Optional[SourceLocation] = None) -> Instruction:
    """Call a kernel helper by name (``"map_lookup_elem"`` or
    ``"bpf_map_lookup_elem"``) or by id."""
    return Instruction(isa.call_helper(helper_id(helper, location)), location)


def call_function(target: str, location: Optional[SourceLocation] = None) -> Instruction:
    """bpf-to-bpf call of the subprogram that starts at label ``target``."""
    return Instruction(isa.call_local(0), location, target, REF_CALL)


def ld_function(dst: isa.Reg, target: str,
                location: Optional[SourceLocation] = None) -> Instruction:
    """Load the address of a subprogram (a callback for ``bpf_loop``)."""
    return Instruction(isa.ld_imm64(dst, 0, isa.BPF_PSEUDO_FUNC), location, target, REF_FUNC)


def ld_map(dst: isa.Reg, map_name: str, *, value_offset: Optional[int] = None,
           location: Optional[SourceLocation] = None) -> Instruction:
    """Load a map reference (or, with ``value_offset``, the address of a byte
    in an array map's value). The fd is patched in at load time."""
    if value_offset is None:
        return Instruction(isa.ld_imm64(dst, 0, isa.BPF_PSEUDO_MAP_FD), location, map_name,
                           RELOC_MAP_FD)
    return Instruction(isa.ld_imm64(dst, 0, isa.BPF_PSEUDO_MAP_VALUE), location, map_name,
                       RELOC_MAP_VALUE, value_offset)


class AssembledProgram:
    """Finished code as plain tables: ``instructions``, ``relocations``,
    ``labels`` (name -> index; a label may name the end), ``lines``
    (``lines[i]`` is where instruction ``i`` came from) and ``functions``;
    and the same facts as one list of :class:`Instruction` (``listing``).

    The constructor takes the tables, so that a program kept as plain data
    (a build cache, a decoded dump) is rebuilt with
    ``AssembledProgram(p.instructions, p.relocations, p.labels, p.lines,
    p.functions, p.name)``.
    """

    __slots__ = ("name", "instructions", "relocations", "labels", "lines", "functions",
                 "_slot_starts", "_listing")

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
        self._listing: Optional[Tuple[Instruction, ...]] = None

    @property
    def listing(self) -> Tuple[Instruction, ...]:
        """The instructions with their labels, map references and source
        lines (jumps and calls are resolved: their offsets are final)."""
        if self._listing is None:
            listing = [Instruction(insn, location)
                       for insn, location in zip(self.instructions, self.lines)]
            for reloc in self.relocations:
                listing[reloc.index] = listing[reloc.index]._replace(
                    reference=reloc.symbol, kind=reloc.kind, offset=reloc.offset)
            for label, index in self.labels.items():
                if index < len(listing):
                    listing[index] = listing[index]._replace(
                        labels=listing[index].labels + (label,))
            self._listing = tuple(listing)
        return self._listing

    @property
    def end_labels(self) -> Tuple[str, ...]:
        """Labels that name the end, after the last instruction."""
        return tuple(label for label, index in self.labels.items()
                     if index == len(self.instructions))

    def __len__(self) -> int:
        return len(self.instructions)

    @property
    def slot_count(self) -> int:
        """How many 8-byte slots the program takes."""
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
        """The source line of the instruction that covers ``slot``."""
        return self.lines[self.index_of_slot(slot)]

    def labels_by_index(self) -> Dict[int, List[str]]:
        """Label names by the index of the instruction they name."""
        out: Dict[int, List[str]] = {}
        for name, index in self.labels.items():
            out.setdefault(index, []).append(name)
        return out

    def map_symbols(self) -> Dict[int, Relocation]:
        """Map relocations by the index of their ``ld_imm64``."""
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


HelperRef = Union[str, int]

# The hot path of emit() and assemble(): an Instruction made without
# NamedTuple's keyword handling, and its fields read by position.
_plain = tuple.__new__
_INSN, _LOCATION = itemgetter(0), itemgetter(1)


class Assembler:
    """Collect a program's instructions, then :meth:`assemble` it.

    :meth:`append` and :meth:`extend` take :class:`Instruction` lists as the
    DSL builds them; the other methods build one instruction each, recording
    the ``location`` given or the first caller outside pybpf.
    """

    def __init__(self, name: str = ""):
        self.name = name
        self._listing: List[Instruction] = []
        self._pending: List[str] = []                 # labels naming the next instruction
        self._label_lines: Dict[str, Optional[SourceLocation]] = {}
        self._label_index: Dict[str, int] = {}        # of the instruction each label names
        self._resolvable: List[int] = []              # indexes of jumps and calls
        self._relocations: List[Relocation] = []
        self._functions: List[str] = []

    def __len__(self) -> int:
        return len(self._listing)

    def append(self, instruction: Instruction) -> None:
        """Add ``instruction`` (checked for validity and for labels defined
        twice); labels placed with :meth:`label` name it."""
        problem = isa.validity_problem(instruction.insn)
        if problem:
            raise AssemblyError("invalid instruction %r: %s" % (instruction.insn, problem),
                                instruction.location)
        index = len(self._listing)
        for name in instruction.labels:
            self._define(name, instruction.location)
        if self._pending:
            instruction = instruction._replace(labels=tuple(self._pending) + instruction.labels)
            self._pending = []
        for name in instruction.labels:
            self._label_index[name] = index
        kind = instruction.kind
        if kind in _RELOCATIONS:
            self._relocations.append(Relocation(index, kind, instruction.reference,
                                                instruction.offset))
        elif kind is not None:
            self._resolvable.append(index)
        self._listing.append(instruction)

    def extend(self, instructions: Sequence[Instruction]) -> None:
        """:meth:`append` each of ``instructions``."""
        for instruction in instructions:
            self.append(instruction)

    def _define(self, name: str, location: Optional[SourceLocation]) -> None:
        if name in self._label_lines:
            raise AssemblyError("label %r defined twice (first at %s)"
                                % (name, self._label_lines[name]), location)
        self._label_lines[name] = location

    # -- one instruction at a time -----------------------------------------------------

    def emit(self, insn: isa.Instruction, location: Optional[SourceLocation] = None) -> None:
        """Add a plain instruction (the short path of :meth:`append`: no
        reference, no labels of its own)."""
        entry = _plain(Instruction, (insn, location or caller_location(), None, None, 0, ()))
        problem = isa.validity_problem(insn)
        if problem:
            raise AssemblyError("invalid instruction %r: %s" % (insn, problem), entry.location)
        if self._pending:
            self.append(entry)
        else:
            self._listing.append(entry)

    def label(self, name: str, location: Optional[SourceLocation] = None) -> None:
        """Name the next instruction emitted."""
        self._define(name, location or caller_location())
        self._pending.append(name)

    def function(self, name: str, location: Optional[SourceLocation] = None) -> None:
        """Start a bpf-to-bpf subprogram: a label that ``call_function`` targets."""
        self.label(name, location or caller_location())
        self._functions.append(name)

    def jump(self, op: int, dst: isa.Reg, operand: isa.Operand, target: str, *,
             jmp32: bool = False, location: Optional[SourceLocation] = None) -> None:
        """``if dst <op> operand goto target``."""
        self.append(jump(op, dst, operand, target, jmp32=jmp32,
                         location=location or caller_location()))

    def goto(self, target: str, *, long: bool = False,
             location: Optional[SourceLocation] = None) -> None:
        """Unconditional jump; ``long`` uses ``gotol`` (32-bit offset)."""
        self.append(goto(target, long=long, location=location or caller_location()))

    def may_goto(self, target: str, location: Optional[SourceLocation] = None) -> None:
        """``may_goto target``."""
        self.append(may_goto(target, location or caller_location()))

    def call(self, helper: HelperRef, location: Optional[SourceLocation] = None) -> None:
        """Call a kernel helper by name or id (see :func:`call`)."""
        self.append(call(helper, location or caller_location()))

    def call_function(self, target: str, location: Optional[SourceLocation] = None) -> None:
        """bpf-to-bpf call of a subprogram started with :meth:`function`."""
        self.append(call_function(target, location or caller_location()))

    def ld_function(self, dst: isa.Reg, target: str,
                    location: Optional[SourceLocation] = None) -> None:
        """Load the address of a subprogram (a callback for ``bpf_loop``)."""
        self.append(ld_function(dst, target, location or caller_location()))

    def ld_map(self, dst: isa.Reg, map_name: str, *, value_offset: Optional[int] = None,
               location: Optional[SourceLocation] = None) -> None:
        """Load a map reference, or the address of a byte in its value."""
        self.append(ld_map(dst, map_name, value_offset=value_offset,
                           location=location or caller_location()))

    # -- finish ------------------------------------------------------------------------

    def assemble(self) -> AssembledProgram:
        """Resolve jump and call references into offsets and return the
        finished program."""
        listing = self._listing
        instructions = list(map(_INSN, listing))
        # a label may name the end (e.g. a final exit path): slot_starts has it last
        slot_starts = isa.slot_starts(instructions)
        labels = dict(self._label_index)
        for name in self._pending:
            labels[name] = len(listing)
        for index in self._resolvable:
            entry = listing[index] = _resolve(listing[index], slot_starts[index], labels,
                                              slot_starts)
            instructions[index] = entry.insn
        program = AssembledProgram(instructions, self._relocations, labels,
                                   list(map(_LOCATION, listing)), self._functions, self.name)
        program._listing = tuple(listing)
        return program


def _resolve(entry: Instruction, slot: int, target_index: Mapping[str, int],
             slot_starts: Sequence[int]) -> Instruction:
    """``entry`` (a jump or call at ``slot``) with its offset set to reach
    its target label."""
    if entry.reference not in target_index:
        raise AssemblyError("unknown label %r" % entry.reference, entry.location)
    insn = entry.insn
    # pc-relative to the next slot, except for a function address: the
    # kernel resolves ld_imm64 BPF_PSEUDO_FUNC like a call, from the
    # ld_imm64's own slot + 1 (add_subprog_and_kfunc in verifier.c).
    delta = (slot_starts[target_index[entry.reference]] - slot
             - (1 if entry.kind == REF_FUNC else insn.width))
    if entry.kind == REF_JUMP:
        if not -0x8000 <= delta <= 0x7FFF:
            raise AssemblyError("jump to %r is %d instructions away, beyond the 16-bit offset "
                                "range (-32768..32767); use a long goto (gotol)"
                                % (entry.reference, delta), entry.location)
        return entry._replace(insn=insn._replace(off=delta))
    else:
        if not -0x80000000 <= delta <= 0x7FFFFFFF:
            raise AssemblyError("target %r is beyond the 32-bit offset range" % entry.reference,
                                entry.location)
        return entry._replace(insn=insn._replace(imm=delta))


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
