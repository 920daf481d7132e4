"""Instruction selection for one function: values, memory, jumps, returns.

:class:`FunctionCode` turns DSL operations into instructions on the homes
:mod:`pybpf.dsl.regalloc` chose; with its mixins for arithmetic
(:mod:`~pybpf.dsl.arith`) and calls (:mod:`~pybpf.dsl.calls`) it is the only
place that names registers. It appends :class:`pybpf.asm.Instruction`
entries, each with its labels, reference and source line, to one list that
the peephole pass rewrites and the assembler takes. It keeps the invariants
the rest relies on:

* a value of 32 bits or less sits in a register with the upper 32 bits
  zero (ALU32 operations, zero-extending loads; ``s8``/``s16`` are
  sign-extended to 32 bits), so ``u32 -> u64`` costs nothing and 32-bit
  comparisons use ``JMP32``;
* constants go in the immediate field whenever it holds them (it is
  sign-extended 32 bits for 64-bit operations), else through ``ld_imm64``;
* nothing is emitted where control cannot reach (the verifier rejects
  "unreachable insn"): a statement there is a build error instead;
* labels name the next instruction and are placed lazily, so an ``else``
  can still slip its ``goto`` in front of them.
"""

import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .. import asm, isa
from ..asm import caller_location
from ..errors import ProgramBuildError, SourceLocation
from ..isa import R0, R10, Reg
from . import peephole
from .arith import ArithmeticCode, canonical_bits
from .assigned import Assignments
from .calls import ARG_REGS, CallCode
from .locations import MASK64, Base, FrameBase, MapValueBase, imm32
from .regalloc import StackSlot, Storage
from .types import IntType, PointerType
from .values import (BoolOp, Compare, Cond, Const, ConstCond, Local, NEGATED, Not, Value,
                     Var, as_value, build_error, convert, implicit)

_JUMP = {"==": (isa.BPF_JEQ, isa.BPF_JEQ), "!=": (isa.BPF_JNE, isa.BPF_JNE),
         "<": (isa.BPF_JLT, isa.BPF_JSLT), "<=": (isa.BPF_JLE, isa.BPF_JSLE),
         ">": (isa.BPF_JGT, isa.BPF_JSGT), ">=": (isa.BPF_JGE, isa.BPF_JSGE)}


_active = threading.local()


def current() -> Any:
    """The builder of the function being built (maps and helpers emit into it)."""
    stack = getattr(_active, "stack", None)
    if not stack:
        raise build_error("this DSL operation only works while a program is being built "
                          "(inside a @tracepoint/@raw_tracepoint/@subprogram function)")
    return stack[-1]


@contextmanager
def building(builder: Any) -> Iterator[None]:
    """Make ``builder`` the current one for the duration of a build."""
    stack = getattr(_active, "stack", None)
    if stack is None:
        stack = _active.stack = []
    stack.append(builder)
    try:
        yield
    finally:
        stack.pop()


class Block:
    """A region of structured control flow (function body, if branch, loop
    body). Values made inside are unusable outside; ``facts`` are the
    pointers proven non-NULL inside."""

    __slots__ = ("kind", "location", "facts", "temps")

    def __init__(self, kind: str, location: Optional[SourceLocation], facts=()):
        self.kind = kind
        self.location = location
        self.facts = set(facts)
        self.temps: Dict[Any, Tuple[int, int]] = {}   # stored argument -> (offset, size)


class FunctionCode(ArithmeticCode, CallCode):
    """Instructions of one function into ``sink`` (an Assembler, or None
    in the tracing build)."""

    def __init__(self, name: str, sink, allocator, frame, cpu: int, label_prefix: str = "",
                 entry: Optional[SourceLocation] = None):
        self.name = name
        self.builder: Any = None
        self.sink = sink
        self.alloc = allocator
        self.frame = frame
        self.cpu = cpu
        self.prefix = label_prefix
        self.blocks: List[Block] = [Block("function", caller_location())]
        self.reachable = True
        self.assigned = Assignments()
        self.unreachable_at: Optional[SourceLocation] = None
        self.maps: Dict[str, Any] = {}
        self.subprograms: List[Any] = []
        self._pending: List[str] = []
        self._refs: Dict[str, int] = {}
        self._labels = 0
        self._returns: Dict[int, str] = {}
        # where instructions come from instead of the caller's line: the
        # function's definition while its parameters arrive (see enter_body)
        self._location: Optional[SourceLocation] = entry
        self._stream: List[asm.Instruction] = []          # to the sink, after the peephole

    # --- emission and labels ------------------------------------------------------------------

    def _add(self, instruction: asm.Instruction) -> None:
        """Append ``instruction``, named by the labels placed since the last
        one and attributed to the current source line."""
        if not self.reachable:
            raise build_error("unreachable code: nothing can run after the return, break or "
                              "continue at %s in this block" % (self.unreachable_at,))
        if self.sink is not None:
            self._stream.append(instruction._replace(
                location=self._location or caller_location(), labels=tuple(self._pending)))
        self._pending.clear()

    def enter_body(self) -> None:
        """The user's function starts: attribute instructions to its lines."""
        self._location = None

    def use_subprogram(self, subprogram: Any) -> None:
        """Record that this function calls ``subprogram``, so the build links it in."""
        if subprogram not in self.subprograms:
            self.subprograms.append(subprogram)

    def emit(self, insn: isa.Instruction) -> None:
        """Append a plain instruction."""
        self._add(asm.Instruction(insn))

    def new_label(self, kind: str) -> str:
        """A label of this function not used before, named after its ``kind``."""
        self._labels += 1
        return "%s%s_%d" % (self.prefix, kind, self._labels)

    def place(self, label: str) -> None:
        """Name the next instruction ``label``; code there is reachable when
        some jump targets it."""
        self._pending.append(label)
        if self._refs.get(label):
            self.reachable = True

    def mark(self) -> Tuple[int, int]:
        """Where the code stands: allocator events and instructions so far."""
        return self.alloc.trace.pos, len(self._stream)

    def reopen(self, mark: Tuple[int, int], else_label: str, end_label: str,
               falls: bool) -> bool:
        """Turn the end of an if block at ``mark`` (``else_label`` and
        ``end_label`` placed there) into the start of its else branch:
        ``goto end_label`` (if the block ``falls`` through), then
        ``else_label``. False if other code came in between.

        An ``elif_`` condition is evaluated by Python before ``elif_`` runs,
        so what it emitted (a field load: ``p.elif_(eth.h_proto == ...)``)
        already follows the labels; those instructions, all from the calling
        line, move into the else branch behind the inserted ``goto``."""
        pos, at = mark
        if else_label in self._pending:       # nothing emitted since the block
            if pos != self.alloc.trace.pos:
                return False
            self._pending.remove(else_label)
            self._pending.remove(end_label)
            self.reachable = falls
            if falls:
                self.goto(end_label)
            self.place(else_label)
            return True
        if self.sink is not None:              # the emitting pass: move the labels
            here = caller_location()
            if any(insn.location != here for insn in self._stream[at:]):
                return False
            first = self._stream[at]
            others = tuple(label for label in first.labels if label not in (else_label,
                                                                            end_label))
            if falls:
                self._stream[at] = first._replace(labels=(else_label,))
                self._stream.insert(at, asm.goto(end_label)._replace(location=here,
                                                                     labels=others))
            else:
                self._stream[at] = first._replace(labels=others + (else_label,))
        if falls:
            self._refs[end_label] = self._refs.get(end_label, 0) + 1
        return True

    def goto(self, label: str) -> None:
        """Jump to ``label``; what follows in this block is unreachable."""
        self._refs[label] = self._refs.get(label, 0) + 1
        self._add(asm.goto(label))
        self._stop()

    def _stop(self) -> None:
        self.reachable = False
        self.unreachable_at = caller_location()

    # --- blocks and facts ---------------------------------------------------------------------

    def enter(self, kind: str, facts=()) -> Block:
        """Open a block (branch, loop body) knowing ``facts``: non-NULL pointers."""
        block = Block(kind, caller_location(), {(s, s.version) for s in facts})
        self.blocks.append(block)
        return block

    def leave(self, block: Block) -> None:
        """Close ``block`` and free its stack temporaries; blocks nest strictly."""
        if self.blocks[-1] is not block:
            raise build_error("blocks closed out of order (a `for ... in p.range()` left with "
                              "a Python `break`? use p.break_())")
        self.blocks.pop()
        for offset, size in block.temps.values():
            self.frame.free(offset, size)

    def add_facts(self, facts) -> None:
        """Pointers proven non-NULL from here to the end of the current block."""
        self.blocks[-1].facts.update((s, s.version) for s in facts)

    def proven_nonnull(self, storage: Storage) -> bool:
        """Whether a NULL check the verifier saw covers ``storage`` here."""
        key = (storage, storage.version)
        return any(key in block.facts for block in self._valid_for(storage))

    def _valid_for(self, storage: Optional[Storage]) -> List[Block]:
        """The blocks whose knowledge about ``storage`` holds here, innermost
        first. A variable may change later in a loop's body, before the next
        iteration reaches this point: what was known outside the loop is not
        known inside it."""
        valid = []
        for block in reversed(self.blocks):
            valid.append(block)
            if block.kind == "loop" and (storage is None or storage.is_var):
                break
        return valid

    def _check_scope(self, storage: Storage) -> None:
        if storage.fn is not self:
            raise build_error("a value of function %r is used in function %r: pass it as an "
                              "argument instead" % (storage.fn.name, self.name))
        if not any(storage.block is block for block in self.blocks):
            block = storage.block
            raise build_error("a value computed inside the %s block at %s is used outside it; "
                              "declare it before the block with p.var(...) and .set() it inside"
                              % (block.kind, block.location))

    # --- storages and their events ------------------------------------------------------------

    def new_storage(self, origin: str = "", is_var: bool = False) -> Storage:
        """A home for a new value, owned by this function and the current block."""
        return Storage(self.alloc.new_id(), self, self.blocks[-1], origin, is_var)

    def use(self, value: Any, consumer: Optional[Storage] = None,
            want: Optional[Reg] = None) -> None:
        """Record a read of ``value`` (by ``consumer``, wanted in register ``want``)."""
        if isinstance(value, Local):
            self._check_scope(value.storage)
            self.assigned.read(value.storage.id)
            self.alloc.use(value.storage, consumer, want)

    def _result(self, vtype: Any, storage: Storage, source: Optional[Reg] = None) -> Local:
        self.alloc.define(storage, source)
        return Local(vtype, storage)

    def live(self, storage: Storage) -> bool:
        """Whether the value is needed (the tracing build needs everything)."""
        return self.alloc.needed(storage)

    # --- registers ----------------------------------------------------------------------------

    def _reg_of(self, value: Value, avoid=()) -> Reg:
        """A register holding ``value`` (loading a constant or a spilled
        value into a scratch register)."""
        if isinstance(value, Const):
            reg = self.alloc.scratch(avoid)
            self.mov_imm(reg, value.value, _is64(value.type))
            return reg
        home = value.storage.home
        if isinstance(home, StackSlot):
            reg = self.alloc.scratch(avoid)
            self.emit(isa.ldx(8, reg, R10, int(home)))
            return reg
        return home

    def _operand(self, value: Value, is64: bool, avoid=()) -> Union[Reg, int]:
        """An instruction's second operand: the immediate when it fits."""
        if isinstance(value, Const):
            imm = imm32(value.value, is64)
            if imm is not None:
                return imm
        return self._reg_of(value, avoid)

    def _target(self, storage: Storage, avoid=()) -> Reg:
        home = storage.home
        return home if isinstance(home, Reg) else self.alloc.scratch(avoid)

    def _writeback(self, storage: Storage, reg: Reg) -> None:
        if isinstance(storage.home, StackSlot):
            self.emit(isa.stx(8, R10, int(storage.home), reg))

    def _home_reg(self, value: Value) -> Optional[Reg]:
        if isinstance(value, Local) and isinstance(value.storage.home, Reg):
            return value.storage.home
        return None

    def mov_imm(self, reg: Reg, value: int, is64: bool = True) -> None:
        """``reg = value``: a mov when the immediate field holds it, else ld_imm64."""
        imm = imm32(value, is64)
        if imm is None:
            value &= MASK64
            self.emit(isa.ld_imm64(reg, value - (1 << 64) if value >> 63 else value))
        else:
            self.emit(isa.mov(reg, imm, alu64=is64))

    def move(self, dst: Reg, src: Reg) -> None:
        """``dst = src``, nothing when they are the same register."""
        if dst != src:
            self.emit(isa.mov(dst, src))

    # --- moves -------------------------------------------------------------------------------

    def _load_into(self, reg: Reg, value: Value, is64: bool) -> None:
        if isinstance(value, Const):
            self.mov_imm(reg, value.value, is64)
        elif isinstance(value.storage.home, StackSlot):
            self.emit(isa.ldx(8, reg, R10, int(value.storage.home)))
        else:
            self.move(reg, value.storage.home)

    # --- variables ----------------------------------------------------------------------------

    def declare(self, vtype: Any, init: Any = None, origin: str = "") -> Var:
        """A ``p.var`` of ``vtype``; without ``init`` it must be set before a read."""
        storage = self.new_storage(origin, is_var=True)
        storage.bits = canonical_bits(vtype)
        var = Var(vtype, storage)
        if init is None:
            self.alloc.define(storage)
            self.assigned.declare(storage.id)
        else:
            self.assign(var, init)
        return var

    def assign(self, var: Var, value: Any) -> None:
        """``var = value``, converted to the variable's type as C would."""
        value = as_value(value)
        if isinstance(var.type, PointerType):
            if not isinstance(value.type, PointerType):
                value = convert(value, var.type)
        else:
            value = self.clean(implicit(value, var.type))
        storage = var.storage
        self._check_scope(storage)
        self.use(value, storage)
        if isinstance(value, Local):
            self.alloc.copy(value.storage, storage)
            storage.nullable = storage.nullable or value.storage.nullable
        self.alloc.define(storage)
        self.assigned.wrote(storage.id)
        storage.version += 1
        if not self.live(storage):
            return
        home = storage.home
        if isinstance(home, Reg):
            self._load_into(home, value, _is64(var.type))
            return
        if isinstance(value, Const) and imm32(value.value, True) is not None:
            self.emit(isa.st(8, R10, int(home), imm32(value.value, True)))
            return
        reg = self._reg_of(value)
        self.emit(isa.stx(8, R10, int(home), reg))

    def params(self, specs: Sequence[Tuple[Any, str]]) -> List[Local]:
        """The values that arrive in r1, r2, ... (the context, a subprogram's
        arguments), each ``(type, origin)``. Until a value has been placed,
        its register is not given to another."""
        storages = [self.new_storage(origin) for _type, origin in specs]
        self.alloc.reserve({ARG_REGS[i]: s.id for i, s in enumerate(storages)})
        values = []
        for reg, storage, (vtype, _origin) in zip(ARG_REGS, storages, specs):
            values.append(self._result(vtype, storage, source=reg))
            if self.live(storage):
                self._place_arrival(storage, reg)
        return values

    def _place_arrival(self, storage: Storage, reg: Reg) -> None:
        if isinstance(storage.home, StackSlot):
            self.emit(isa.stx(8, R10, int(storage.home), reg))
        else:
            self.move(storage.home, reg)

    # --- memory -------------------------------------------------------------------------------

    def _base_reg(self, base: Base, offset: int, scratch: Optional[Reg] = None,
                  avoid=()) -> Tuple[Reg, int]:
        """(register, offset) addressing ``base + offset``. A map value or a
        spilled pointer is first loaded into ``scratch`` (or a free register)."""
        if isinstance(base, FrameBase):
            return R10, base.offset + offset
        home = base.storage.home if isinstance(base, Local) else None
        if isinstance(home, Reg) and -0x8000 <= offset <= 0x7FFF:
            return home, offset
        reg = scratch if scratch is not None else self.alloc.scratch(avoid)
        if isinstance(base, MapValueBase):
            self.map_value(reg, base.map, offset)
            return reg, 0
        if isinstance(home, Reg):   # beyond the 16-bit offset field: add it first
            self.move(reg, home)
        else:
            self.emit(isa.ldx(8, reg, R10, int(home)))
        if -0x8000 <= offset <= 0x7FFF:
            return reg, offset
        self.emit(isa.alu(isa.BPF_ADD, reg, offset))
        return reg, 0

    def _base_regs(self, base: Base) -> set:
        reg = self._home_reg(base) if isinstance(base, Local) else None
        return {reg} if reg is not None else set()

    def load(self, base: Base, offset: int, vtype: Any) -> Local:
        """A ``vtype`` read from ``base + offset``, zero- or sign-extended."""
        storage = self.new_storage()
        self.use(base, storage)
        if isinstance(base, Local):
            self.alloc.derive(base.storage, storage)
        result = self._result(vtype, storage)
        if self.live(storage):
            dst = self._target(storage, self._base_regs(base))
            reg, off = self._base_reg(base, offset, dst)
            self.emit(isa.ldx(vtype.size, dst, reg, off))
            if isinstance(vtype, IntType) and vtype.signed and vtype.size < 4:
                self._sign_extend_32(dst, vtype.bits)
            self._writeback(storage, dst)
        storage.bits = canonical_bits(vtype)
        return result

    def store(self, base: Base, offset: int, size: int, value: Value) -> None:
        """Write ``size`` bytes of ``value`` at ``base + offset`` (st for constants)."""
        self.use(base)
        self.use(value)
        avoid = self._base_regs(base) | ({self._home_reg(value)} - {None})
        reg, off = self._base_reg(base, offset, avoid=avoid)
        if isinstance(value, Const):
            imm = imm32(value.value, size == 8)
            if imm is not None:
                self.emit(isa.st(size, reg, off, imm))
                return
        self.emit(isa.stx(size, reg, off, self._reg_of(value, avoid | {reg})))

    def atomic_add(self, base: Base, offset: int, size: int, value: Value) -> None:
        """``lock *(base + offset) += value``: a counter safe on every CPU at once."""
        self.use(base)
        self.use(value)
        avoid = self._base_regs(base) | ({self._home_reg(value)} - {None})
        reg, off = self._base_reg(base, offset, avoid=avoid)
        source = self._home_reg(value)
        if source is None:
            source = self.alloc.scratch(avoid | {reg})
            self._load_into(source, value, size == 8)
        self.emit(isa.atomic(size, isa.BPF_ADD, reg, off, source))

    def address(self, base: Base, offset: int, ptype: PointerType) -> Local:
        """The address ``base + offset`` as a pointer value."""
        if isinstance(base, Local) and offset == 0:
            return Local(ptype, base.storage)
        storage = self.new_storage()
        self.use(base, storage)
        result = self._result(ptype, storage)
        if isinstance(base, Local):
            storage.nullable = base.storage.nullable
        if self.live(storage):
            dst = self._target(storage, self._base_regs(base))
            self._address_into(dst, base, offset)
            self._writeback(storage, dst)
        return result

    def _address_into(self, dst: Reg, base: Base, offset: int) -> None:
        if isinstance(base, MapValueBase):
            self.map_value(dst, base.map, offset)
            return
        if isinstance(base, FrameBase):
            self.move(dst, R10)
            offset += base.offset
        else:
            self._load_into(dst, base, True)
        if offset:
            self.emit(isa.alu(isa.BPF_ADD, dst, offset))

    def map_value(self, dst: Reg, map_decl: Any, offset: int) -> None:
        """``dst`` = address of a global data map's value at ``offset``."""
        self.maps[map_decl.name] = map_decl
        self._add(asm.ld_map(dst, map_decl.name, value_offset=offset))

    def map_fd(self, dst: Reg, map_decl: Any) -> None:
        """``dst`` = the map, for a helper call (ld_imm64 with BPF_PSEUDO_MAP_FD)."""
        self.maps[map_decl.name] = map_decl
        self._add(asm.ld_map(dst, map_decl.name))

    # --- jumps --------------------------------------------------------------------------------

    def jump_if(self, cond: Cond, target: str, when: bool = True) -> None:
        """Jump to ``target`` where ``cond`` is ``when``; fall through otherwise."""
        if isinstance(cond, ConstCond):
            raise build_error("this condition is always %s (it compares constants); use a "
                              "Python `if` to choose code at build time"
                              % ("true" if cond.value else "false"))
        if isinstance(cond, Not):
            self.jump_if(cond.inner, target, not when)
        elif isinstance(cond, BoolOp):
            short = (cond.op == "and") != when   # the left side alone decides
            if short:
                self.jump_if(cond.left, target, when)
                self.jump_if(cond.right, target, when)
            else:
                skip = self.new_label("skip")
                self.jump_if(cond.left, skip, not when)
                self.jump_if(cond.right, target, when)
                self.place(skip)
        else:
            self._compare_jump(cond, target, when)

    def _compare_jump(self, cond: Compare, target: str, when: bool) -> None:
        op = cond.op if when else NEGATED[cond.op]
        self.use(cond.a)
        self.use(cond.b)
        rb = self._home_reg(cond.b)
        ra = self._reg_of(cond.a, {rb} if rb is not None else ())
        operand = self._operand(cond.b, cond.is64, {ra})
        code = _JUMP[op][cond.signed]
        self._refs[target] = self._refs.get(target, 0) + 1
        self._add(asm.jump(code, ra, operand, target, jmp32=not cond.is64))

    def materialize(self, cond: Cond, vtype: IntType) -> Local:
        """A condition as a 0/1 value."""
        storage = self.new_storage(is_var=True)
        var = Var(vtype, storage)
        self.assign(var, 1)
        done = self.new_label("cond")
        self.jump_if(cond, done, True)
        self.assign(var, 0)
        self.place(done)
        return Local(vtype, storage)

    # --- returns ------------------------------------------------------------------------------

    def ret(self, value: Any) -> None:
        """Return ``value`` in r0; returns of one constant share their code."""
        value = as_value(value)
        if isinstance(value, Const):
            shared = self._returns.get(value.value)
            if shared is not None:
                self.goto(shared)
                return
            label = self.new_label("return")
            self._returns[value.value] = label
            self.place(label)
            self.mov_imm(R0, value.value)
        else:
            value = self.clean(value)
            self.use(value, want=R0)
            self._load_into(R0, value, True)
        self.emit(isa.exit_())
        self._stop()

    # --- the end ------------------------------------------------------------------------------

    def finish(self, end: Optional[SourceLocation] = None) -> None:
        """Close the function: an implicit ``return 0`` where the end is
        reachable, attributed to ``end`` (the function's last line)."""
        if len(self.blocks) > 1:
            block = self.blocks[-1]
            raise ProgramBuildError("the %s block opened at %s was never closed (a Python "
                                    "`break` or `return` inside `for ... in p.range()`? use "
                                    "p.break_() / p.return_())" % (block.kind, block.location),
                                    block.location)
        if self.reachable:
            self._location = end
            self.ret(0)
            self._location = None
        self.alloc.finish()
        if self.sink is not None:
            self.sink.extend(peephole.optimize(self._stream))


def _is64(vtype: Any) -> bool:
    return vtype is None or isinstance(vtype, PointerType) or vtype.size == 8
