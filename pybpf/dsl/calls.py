"""Calls: helper and bpf-to-bpf calls, their arguments in r1-r5.

A mixin of :class:`~pybpf.dsl.codegen.FunctionCode` (which it relies on for
values, stores and emission). Arguments are described by how they reach
their register (:class:`Arg`); after the call's event is recorded, they are
moved into r1-r5 as one parallel move, so that no argument overwrites a
register another one still has to read, a cycle going through a spare.
Scalars passed by address (C's ``&key``) are stored to a stack copy first,
which later calls in the same block reuse while it still holds the value.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import asm, isa
from ..isa import R0, R10, Reg
from .locations import Base, FrameBase, MapValueBase, imm32
from .regalloc import StackSlot
from .values import Const, Local, Value, build_error

ARG_REGS = tuple(Reg(i) for i in range(1, 6))


class Arg:
    """One argument of a call, by how it reaches its register:
    ``value`` (a Value), ``addr`` (base + offset), ``temp`` (a value or
    bytes stored in a stack temporary, passed by address), ``map`` (a map
    fd), ``func`` (a subprogram's address)."""

    __slots__ = ("kind", "value", "base", "offset", "data", "name")

    def __init__(self, kind: str, value: Any = None, base: Any = None, offset: int = 0,
                 data: Any = None, name: str = ""):
        self.kind, self.value, self.base, self.offset = kind, value, base, offset
        self.data, self.name = data, name


class _Move:
    __slots__ = ("target", "kind", "reg", "payload")

    def __init__(self, target: Reg, kind: str, reg: Optional[Reg] = None, payload: Any = None):
        self.target, self.kind, self.reg, self.payload = target, kind, reg, payload


class CallCode:
    """The call half of FunctionCode."""


    def call(self, args: Sequence[Arg], ret_type: Any, *, helper: Optional[int] = None,
             function: Optional[str] = None, origin: str = "") -> Optional[Local]:
        """Marshal ``args`` into r1-r5, call a helper (by id) or a
        subprogram (by label), and return its result (r0) as a value."""
        if len(args) > len(ARG_REGS):
            raise build_error("a call takes at most 5 arguments, not %d" % len(args))
        for arg in args:
            if arg.kind == "value":
                arg.value = self.clean(arg.value)
        temps = self._store_temps(args)
        for reg, arg in zip(ARG_REGS, args):
            if arg.kind == "value":
                self.use(arg.value, want=reg)
            elif arg.kind == "addr":
                # base + offset is added in the argument register, so a base
                # that dies here may as well already be there (a kernel read's
                # ``r3 = *(u64 *)(r10 - 8); r3 += 32``).
                self.use(arg.base, want=reg)
        self.alloc.call()
        self._marshal(args, temps)
        if helper is not None:
            self._add(asm.call(helper))
        else:
            self._add(asm.call_function(function))
        if ret_type is None:
            return None
        storage = self.new_storage(origin)
        result = self._result(ret_type, storage, source=R0)
        if self.live(storage):
            self._place_arrival(storage, R0)
        return result

    def _store_temps(self, args: Sequence[Arg]) -> Dict[int, int]:
        """Arguments passed by the address of a stack copy (C's ``&key``):
        store them first, before the call (their values need not survive
        it) and before the argument registers are written. A copy made
        earlier in this block or an enclosing one is reused: it is still
        there, and the helper only read it."""
        temps: Dict[int, int] = {}
        for index, arg in enumerate(args):
            if arg.kind != "temp":
                continue
            key = _temp_key(arg)
            found = next((block.temps[key] for block in self._valid_for(key[1])
                          if key in block.temps), None)
            if found is None:
                size = len(arg.data) if isinstance(arg.data, bytes) else arg.data.size
                found = (self.frame.alloc(size, "a call argument"), size)
                self.blocks[-1].temps[key] = found
                if isinstance(arg.data, bytes):
                    self._store_bytes(found[0], arg.data)
                else:
                    self.store(FrameBase(found[0]), 0, size, arg.value)
            temps[index] = found[0]
        return temps

    def _store_bytes(self, offset: int, data: bytes) -> None:
        for at in range(0, len(data), 4):
            chunk = data[at:at + 4]
            if len(chunk) == 4:
                self.emit(isa.st(4, R10, offset + at, imm32(int.from_bytes(chunk, "little"),
                                                            False)))
            else:
                for part, byte in enumerate(chunk):
                    self.emit(isa.st(1, R10, offset + at + part, byte))

    def _marshal(self, args: Sequence[Arg], temps: Dict[int, Tuple[int, int]]) -> None:
        moves: List[_Move] = []
        for index, (target, arg) in enumerate(zip(ARG_REGS, args)):
            if arg.kind == "temp":
                moves.append(_Move(target, "fp", payload=temps[index]))
            elif arg.kind == "map":
                moves.append(_Move(target, "map", payload=arg.value))
            elif arg.kind == "func":
                moves.append(_Move(target, "func", payload=arg.name))
            elif arg.kind == "addr":
                moves.append(self._address_move(target, arg.base, arg.offset))
            else:
                moves.append(self._value_move(target, arg.value))
        self._parallel_move(moves)

    def _value_move(self, target: Reg, value: Value) -> _Move:
        if isinstance(value, Const):
            return _Move(target, "imm", payload=value.value)
        home = value.storage.home
        if isinstance(home, StackSlot):
            return _Move(target, "slot", payload=int(home))
        return _Move(target, "reg", reg=home, payload=0)

    def _address_move(self, target: Reg, base: Base, offset: int) -> _Move:
        if isinstance(base, FrameBase):
            return _Move(target, "fp", payload=base.offset + offset)
        if isinstance(base, MapValueBase):
            return _Move(target, "map_value", payload=(base.map, offset))
        home = base.storage.home
        if isinstance(home, StackSlot):
            return _Move(target, "slot_addr", payload=(int(home), offset))
        return _Move(target, "reg", reg=home, payload=offset)

    def _parallel_move(self, moves: List[_Move]) -> None:
        """Emit ``moves`` so that no register is overwritten before every
        move reading it is done; a cycle goes through a free register."""
        pending = [m for m in moves if not (m.kind == "reg" and m.reg == m.target
                                             and not m.payload)]
        while pending:
            ready = next((m for m in pending
                          if not any(o is not m and o.kind == "reg" and o.reg == m.target
                                     for o in pending)), None)
            if ready is None:  # a cycle of register moves: break it through a spare
                blocked = pending[0]
                spare = self.alloc.scratch({m.target for m in pending}
                                           | {m.reg for m in pending})
                self.move(spare, blocked.reg)
                blocked.reg = spare
                continue
            pending.remove(ready)
            self._emit_move(ready)

    def _emit_move(self, m: _Move) -> None:
        target = m.target
        if m.kind == "reg":
            self.move(target, m.reg)
            if m.payload:
                self.emit(isa.alu(isa.BPF_ADD, target, m.payload))
        elif m.kind == "imm":
            self.mov_imm(target, m.payload)
        elif m.kind == "slot":
            self.emit(isa.ldx(8, target, R10, m.payload))
        elif m.kind == "slot_addr":
            slot, offset = m.payload
            self.emit(isa.ldx(8, target, R10, slot))
            if offset:
                self.emit(isa.alu(isa.BPF_ADD, target, offset))
        elif m.kind == "fp":
            self.move(target, R10)
            self.emit(isa.alu(isa.BPF_ADD, target, m.payload))
        elif m.kind == "map":
            self.map_fd(target, m.payload)
        elif m.kind == "map_value":
            self.map_value(target, m.payload[0], m.payload[1])
        else:
            self._refs[m.payload] = 1
            self._add(asm.ld_function(target, m.payload))


def _temp_key(arg: Arg) -> Tuple[Any, ...]:
    """What a stack copy holds; the second item is the storage it came
    from (None for constants)."""
    if isinstance(arg.data, bytes):
        return ("bytes", None, arg.data)
    value = arg.value
    if isinstance(value, Const):
        return ("const", None, value.value, arg.data.size)
    return ("value", value.storage, value.storage.version, arg.data.size)
