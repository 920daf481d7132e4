"""Register allocation by building twice: once to learn, once to emit.

A program function is plain Python that calls the DSL, so nobody can see
ahead what it will do with a value. We run it twice. The first run (with a
:class:`TraceAllocator`) emits into the void and records *events*: where
each storage (the home of a value: a register or a stack slot) is defined,
where it is read and by whom, where helper calls clobber r0-r5, where loops
begin and end. :func:`analyse` turns the trace into live ranges; the second
run (with an :class:`Allocator`) gives each storage its home when it is
defined, knowing its whole future:

* a value whose range crosses a call lives in r6-r9, or in a stack slot
  when those are taken (spilled); other values use r0-r5;
* a value that is never read (directly or through other needed values)
  is not computed at all;
* hints avoid moves: a call result prefers r0, the context r1, a value whose
  last use is as argument k of a call prefers r(k), a value copied into a
  variable shares the variable's home when that is safe;
* a value read inside a loop and defined before it lives until the loop's
  end, so the next iteration still finds it.

Positions count events, not instructions; both runs must record the same
events (the build is deterministic), which :class:`Allocator` checks.
"""

import heapq
from typing import Dict, List, Optional, Set, Tuple

from ..errors import ProgramBuildError
from ..isa import Reg

CALLER_SAVED = tuple(Reg(i) for i in range(6))      # r0-r5: clobbered by calls
CALLEE_SAVED = tuple(Reg(i) for i in range(6, 10))  # r6-r9: kept across calls
ALL_REGS = CALLER_SAVED + CALLEE_SAVED
#: Registers a value may not take while the others are busy: what is left
#: for the scratch registers of one operation (two operands, one constant).
SCRATCH_RESERVE = 2


class StackSlot(int):
    """A home on the stack: the (negative) offset from r10."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "[r10%d]" % int(self)


class Storage:
    """Where one value lives. ``home`` is a Reg, a StackSlot, or None while
    not yet placed and for values nobody needs."""

    __slots__ = ("id", "fn", "block", "home", "nullable", "bits", "version", "origin",
                 "is_var")

    def __init__(self, sid: int, fn, block, origin: str = "", is_var: bool = False):
        self.id = sid
        self.fn = fn
        self.block = block
        self.home = None
        self.nullable = False
        self.bits = 64          # how many low bits of the register may be non-zero
        self.version = 0
        self.origin = origin
        self.is_var = is_var

    def __repr__(self) -> str:
        return "<storage %d %s>" % (self.id, self.home)


class Trace:
    """The events of one build (see the module docstring)."""

    def __init__(self):
        self.pos = 0
        self.defs: Dict[int, int] = {}                   # sid -> first definition
        self.uses: List[Tuple[int, int, Optional[int]]] = []   # (sid, pos, consumer sid)
        self.calls: List[int] = []
        self.loops: List[Tuple[int, int]] = []
        self.source_hints: Dict[int, Reg] = {}           # sid -> register it is defined in
        self.sink_hints: Dict[Tuple[int, int], Reg] = {}  # (sid, pos) -> register wanted there
        self.copies: List[Tuple[int, int, int]] = []     # (value sid, var sid, pos)
        self.var_defs: Dict[int, List[int]] = {}         # var sid -> later assignments
        self.derived: List[Tuple[int, int, int]] = []    # (operand sid, result sid, use pos)
        self.count = 0                                   # storages created

    def tick(self) -> int:
        """The position of the next event."""
        self.pos += 1
        return self.pos


class Liveness:
    """What :func:`analyse` learns from a trace, per storage and per group
    (storages that share a home)."""

    def __init__(self):
        self.needed: Set[int] = set()
        self.group: Dict[int, int] = {}           # sid -> representative sid
        self.start: Dict[int, int] = {}           # representative -> first definition
        self.end: Dict[int, int] = {}             # representative -> last use
        self.crosses_call: Set[int] = set()       # representatives
        self.hints: Dict[int, List[Reg]] = {}     # representative -> preferred registers
        self.derived: Dict[int, int] = {}         # result -> operand that dies making it
        self.count = 0


def analyse(trace: Trace) -> Liveness:
    """Live ranges from a trace: which storages are needed, which share a home,
    where each group starts and ends, whether it crosses a call, and its
    register hints."""
    live = Liveness()
    live.count = trace.count
    operands: Dict[int, List[int]] = {}
    roots: Set[int] = set()
    for sid, _pos, consumer in trace.uses:
        if consumer is None:
            roots.add(sid)
        else:
            operands.setdefault(consumer, []).append(sid)
    work = list(roots)
    needed = live.needed
    while work:
        sid = work.pop()
        if sid in needed:
            continue
        needed.add(sid)
        work.extend(operands.get(sid, ()))

    start = {sid: pos for sid, pos in trace.defs.items() if sid in needed}
    end = dict(start)
    uses_of: Dict[int, List[int]] = {}
    for sid, pos, consumer in trace.uses:
        if sid in needed and (consumer is None or consumer in needed):
            uses_of.setdefault(sid, []).append(pos)
            if pos > end[sid]:
                end[sid] = pos
    for sid, positions in trace.var_defs.items():   # a store nobody reads still writes
        if sid in needed:
            end[sid] = max(end[sid], max(positions))
    for begin, finish in trace.loops:
        for sid, positions in uses_of.items():
            if start[sid] < begin and any(begin <= pos <= finish for pos in positions):
                end[sid] = max(end[sid], finish)

    parent = {sid: sid for sid in needed}

    def find(sid: int) -> int:
        while parent[sid] != sid:
            parent[sid] = parent[parent[sid]]
            sid = parent[sid]
        return sid

    for value, var, pos in trace.copies:
        if value not in needed or var not in needed or end[value] != pos:
            continue
        # Share the variable's home only if the variable is not read or
        # written while the value is alive (it would be overwritten).
        busy = [p for p in uses_of.get(var, ()) if start[value] < p < pos]
        if busy or any(start[value] < p < pos for p in trace.var_defs.get(var, ())):
            continue
        a, b = find(value), find(var)
        if a != b:
            parent[b] = a
    for sid in needed:
        root = find(sid)
        live.group[sid] = root
        live.start[root] = min(live.start.get(root, start[sid]), start[sid])
        live.end[root] = max(live.end.get(root, end[sid]), end[sid])
    for root in set(live.group.values()):
        s, e = live.start[root], live.end[root]
        if any(s < c < e for c in trace.calls):
            live.crosses_call.add(root)
    for sid, reg in trace.source_hints.items():
        if sid in needed:
            live.hints.setdefault(live.group[sid], []).append(reg)
    # Where each value is wanted when it dies (an argument register, r0 for
    # a return), passed back along in-place chains: in ``r3 = *(r8 + 0);
    # r3 += 4095`` the load already aims for the r3 its sum is passed in.
    wanted: Dict[int, List[Reg]] = {}   # by group
    for (sid, pos), reg in trace.sink_hints.items():
        if sid in needed and end[sid] == pos:
            wanted.setdefault(live.group[sid], []).append(reg)
    for operand, result, pos in reversed(trace.derived):
        if operand in needed and result in needed and end[operand] == pos:
            live.derived[result] = operand
            wanted.setdefault(live.group[operand], []).extend(
                wanted.get(live.group[result], ()))
    for root, regs in wanted.items():
        live.hints.setdefault(root, []).extend(regs)
    return live


class TraceAllocator:
    """The first build's allocator: records events, gives every storage a
    virtual register of its own (numbers above r10, never encoded)."""

    def __init__(self):
        self.trace = Trace()
        self._next_virtual = 16

    # events
    def new_id(self) -> int:
        """The id of a new storage; both builds must hand out the same ids."""
        sid = self.trace.count
        self.trace.count += 1
        return sid

    def define(self, storage: Storage, source: Optional[Reg] = None) -> None:
        """``storage`` gets a value here (``source``: the register it arrives in)."""
        pos = self.trace.tick()
        trace = self.trace
        if storage.id not in trace.defs:
            trace.defs[storage.id] = pos
            if source is not None:
                trace.source_hints[storage.id] = source
        elif storage.is_var:
            trace.var_defs.setdefault(storage.id, []).append(pos)
        if storage.home is None:
            storage.home = self._virtual()

    def use(self, storage: Storage, consumer: Optional[Storage] = None,
            want: Optional[Reg] = None) -> None:
        """``storage`` is read here, by ``consumer``, wanted in register ``want``."""
        pos = self.trace.tick()
        self.trace.uses.append((storage.id, pos, consumer.id if consumer is not None else None))
        if want is not None:
            self.trace.sink_hints[(storage.id, pos)] = want

    def derive(self, operand: Storage, result: Storage) -> None:
        """``result`` is computed from ``operand``, just read: if that was its
        last read, they may share a register (an in-place operation)."""
        if not operand.is_var:
            self.trace.derived.append((operand.id, result.id, self.trace.pos))

    def copy(self, value: Storage, var: Storage) -> None:
        """``value`` is copied into the variable ``var``: they may share a home."""
        self.trace.copies.append((value.id, var.id, self.trace.pos))

    def call(self) -> None:
        """A helper or function call here clobbers r0-r5."""
        self.trace.calls.append(self.trace.tick())

    def loop_begin(self) -> int:
        """A loop starts; pass the result to :meth:`loop_end`."""
        return self.trace.tick()

    def loop_end(self, begin: int) -> None:
        """The loop that began at ``begin`` ends: values read inside live on."""
        self.trace.loops.append((begin, self.trace.tick()))

    def needed(self, storage: Storage) -> bool:
        """Whether ``storage`` is ever read: in the first build nothing is known."""
        return True

    def reserve(self, arrivals: Dict[Reg, int]) -> None:
        """Registers holding arguments (register -> storage id) that only
        their own storage may take until it is defined."""

    def scratch(self, avoid=()) -> Reg:
        """A register for a temporary of one operation, not in ``avoid``."""
        return self._virtual()

    def finish(self) -> None:
        """The build is over; the first build has nothing to check."""
        pass

    def _virtual(self) -> Reg:
        self._next_virtual += 1
        return Reg(self._next_virtual)


class Allocator(TraceAllocator):
    """The second build's allocator: places each storage when it is
    defined, from the :class:`Liveness` of the first build."""

    def __init__(self, live: Liveness, frame):
        super().__init__()
        self.live = live
        self.frame = frame
        self._busy_until = {reg: -1 for reg in ALL_REGS}
        self._homes: Dict[int, object] = {}          # representative -> home
        self._arrivals: Dict[Reg, int] = {}          # see reserve()
        self._spills: List[Tuple[int, int, int]] = []  # heap of (end, offset, representative)

    def define(self, storage: Storage, source: Optional[Reg] = None) -> None:
        """Place ``storage`` (its group's home, found once) from its definition on."""
        pos = self.trace.tick()
        if storage.id not in self.trace.defs:
            self.trace.defs[storage.id] = pos
        if source is not None and self._arrivals.get(source) == storage.id:
            del self._arrivals[source]
        if storage.id not in self.live.needed:
            return
        root = self.live.group[storage.id]
        home = self._homes.get(root)
        if home is None:
            operand = self.live.derived.get(storage.id)
            in_place = self._homes.get(self.live.group[operand]) if operand is not None else None
            home = self._place(root, pos, in_place if isinstance(in_place, Reg) else None)
            self._homes[root] = home
        storage.home = home

    def needed(self, storage: Storage) -> bool:
        """Whether the first build saw ``storage`` read; if not, skip computing it."""
        return storage.id in self.live.needed

    def reserve(self, arrivals: Dict[Reg, int]) -> None:
        """Keep argument registers for their own storages until those are defined."""
        self._arrivals = dict(arrivals)

    def _place(self, root: int, pos: int, in_place: Optional[Reg]):
        """A home for group ``root`` from ``pos`` on: the first free of its
        hints, the register of the operand it is computed from (an in-place
        operation), the others in order; the stack when too few are left."""
        self._release_spills(pos)
        end = self.live.end[root]
        busy = sum(1 for until in self._busy_until.values() if until >= pos)
        if busy < len(ALL_REGS) - SCRATCH_RESERVE:
            allowed = CALLEE_SAVED if root in self.live.crosses_call else ALL_REGS
            preferred = self.live.hints.get(root, []) + ([in_place] if in_place else [])
            for reg in preferred + list(allowed):
                if reg in allowed and self._busy_until[reg] < pos and reg not in self._arrivals:
                    self._busy_until[reg] = end
                    return reg
        offset = self.frame.alloc(8, "a spilled value")
        heapq.heappush(self._spills, (end, offset, root))
        return StackSlot(offset)

    def _release_spills(self, pos: int) -> None:
        while self._spills and self._spills[0][0] < pos:
            _end, offset, _root = heapq.heappop(self._spills)
            self.frame.free(offset, 8)

    def _free_now(self, avoid) -> List[Reg]:
        pos = self.trace.pos
        return [reg for reg in ALL_REGS if self._busy_until[reg] < pos and reg not in avoid
                and reg not in self._arrivals]

    def scratch(self, avoid=()) -> Reg:
        """The first register free now and not in ``avoid``."""
        free = self._free_now(avoid)
        if not free:
            raise ProgramBuildError("internal error: no free register for a temporary "
                                    "(too many values alive at once)")
        return free[0]

    def finish(self) -> None:
        """Check both builds made the same storages, else the homes are wrong."""
        if self.trace.count != self.live.count:
            raise ProgramBuildError("the program function did not do the same thing when run "
                                    "twice (%d values, then %d): its code must not depend on "
                                    "anything but its arguments"
                                    % (self.live.count, self.trace.count))
