"""Map declarations: one object for the kernel code and for Python.

``counts = HashMap(key=u32, value=u64, max_entries=10240)`` at module level
declares a map. Inside a program, ``counts.lookup(pid)`` emits the helper
call and returns a pointer to a ``u64`` that must be checked for NULL.
A declaration holds no kernel object: it becomes a
:class:`~pybpf.kernel.map_spec.MapSpec` in the program's
:class:`~pybpf.spec.CollectionSpec` (:meth:`MapDecl.spec`), and once that is
loaded ``coll.maps.counts[pid]`` and ``coll.maps.counts.items()`` read the
live map, decoding keys and values with the same types' ``construct``
parsers.

A map's name is the module variable it is assigned to (``counts``), or
``name=`` when given; programs refer to maps by that name until the loader
patches in file descriptors.

A :class:`RingBuf` counts what it loses: its records are reserved with
``with events.reserve(Event) as ev:``, which submits the record at the end
of the block, discards it when the block is left early, and bumps a per-CPU
counter (``events.lost``, a map of its own) when the ring is full, so no
program can forget to.
"""

from typing import Any, Dict, Iterator, Optional

from ..caller import user_frame
from ..kernel.maps import MapSpec
from ..consts import (BPF_ANY, BPF_F_CURRENT_CPU, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH,
                      BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
                      BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERF_EVENT_ARRAY,
                      BPF_MAP_TYPE_RINGBUF)
from ..kernel.map_codecs import possible_cpus
from .statement import statement
from .codegen import current
from .helpers import call_helper, helper
from .memory import AddressView, Ref
from .types import DSLType, as_type, sizeof, u32, u64
from .values import as_value, build_error, compare, implicit


class Named:
    """Something declared at module level that takes its variable's name:
    the name it is bound to in the globals of the module declaring it (the
    innermost user code running when it is made), unless given ``name``."""

    def __init__(self, name: Optional[str]):
        self._name = name
        frame = user_frame() if name is None else None
        self._scope: Dict[str, Any] = frame.f_globals if frame is not None else {}

    @property
    def name(self) -> str:
        """The name given, else the module variable it is assigned to."""
        if self._name is None:
            for key, value in self._scope.items():
                if value is self:
                    self._name = key
                    break
            else:
                raise build_error("cannot tell the name of %r: assign it to a module-level "
                                  "variable or pass name=..." % self)
        return self._name


class MapDecl(Named):
    """A map of ``map_type`` with typed keys and values."""

    map_type = -1

    def __init__(self, *, key: Any = None, value: Any = None, max_entries: int,
                 flags: int = 0, name: Optional[str] = None):
        super().__init__(name)
        self.key_type: Optional[DSLType] = as_type(key) if key is not None else None
        self.value_type: Optional[DSLType] = as_type(value) if value is not None else None
        self.max_entries = max_entries
        self.flags = flags

    def __repr__(self) -> str:
        kind = type(self).__name__
        return "<%s %s>" % (kind, self._name or "(unnamed)")

    def spec(self) -> MapSpec:
        """What the kernel layer needs to create this map."""
        return MapSpec(self.map_type,
                       key_size=self.key_type.size if self.key_type else None,
                       value_size=self.value_type.size if self.value_type else None,
                       max_entries=self.max_entries, name=self.name, flags=self.flags,
                       key=self.key_type.text_construct() if self.key_type else None,
                       value=self.value_type.text_construct() if self.value_type else None)

    # --- in programs ---------------------------------------------------------------------------

    def lookup(self, key: Any) -> Ref:
        """``bpf_map_lookup_elem(&map, &key)``: a pointer to the value, NULL
        when absent (check it before use)."""
        return call_helper(current(), helper("map_lookup_elem"), (self, self._item(key, "key")),
                           {}, result_type=self.value_type)

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> Any:
        """``bpf_map_update_elem(&map, &key, &value, flags)``; returns 0 or -errno."""
        return call_helper(current(), helper("map_update_elem"),
                           (self, self._item(key, "key"), self._item(value, "value"), flags), {})

    def delete(self, key: Any) -> Any:
        """``bpf_map_delete_elem(&map, &key)``; returns 0 or -errno."""
        return call_helper(current(), helper("map_delete_elem"), (self, self._item(key, "key")),
                           {})

    def _item(self, item: Any, role: str) -> Any:
        """A key or value as the helper takes it: memory of the right size,
        or a scalar converted to the declared type (stored to the stack)."""
        declared = self.key_type if role == "key" else self.value_type
        if isinstance(item, AddressView):
            item = item._ref
        if isinstance(item, Ref):
            if declared is not None and item._type.size != declared.size:
                raise build_error("map %s: the %s is %s (%d bytes) but the map's %s type is %s "
                                  "(%d bytes)" % (self.name, role, item._type.name,
                                                  item._type.size, role, declared.name,
                                                  declared.size))
            return item
        if declared is None or not declared.is_scalar:
            raise build_error("map %s: pass the %s as memory (a stack %s), not a value"
                              % (self.name, role, declared.name if declared else "object"))
        return implicit(as_value(item), declared)


class HashMap(MapDecl):
    """``BPF_MAP_TYPE_HASH``: keys and values of the declared types."""

    map_type = BPF_MAP_TYPE_HASH


class LRUHashMap(MapDecl):
    """``BPF_MAP_TYPE_LRU_HASH``: a hash that evicts the least recently used entry when full."""

    map_type = BPF_MAP_TYPE_LRU_HASH


class PerCPUHash(MapDecl):
    """``BPF_MAP_TYPE_PERCPU_HASH``: one value per CPU for each key."""

    map_type = BPF_MAP_TYPE_PERCPU_HASH


class ArrayMap(MapDecl):
    """``BPF_MAP_TYPE_ARRAY``: ``max_entries`` values indexed by a u32, all present."""

    map_type = BPF_MAP_TYPE_ARRAY

    def __init__(self, *, value: Any, max_entries: int, flags: int = 0,
                 name: Optional[str] = None):
        super().__init__(key=u32, value=value, max_entries=max_entries, flags=flags, name=name)


class PerCPUArray(ArrayMap):
    """Per-CPU values: also the scratch space for data larger than the
    512-byte stack (``scratch.lookup(0)``)."""

    map_type = BPF_MAP_TYPE_PERCPU_ARRAY


class RingBuf(MapDecl):
    """A ``BPF_MAP_TYPE_RINGBUF`` of ``size`` bytes (a power of two, a
    multiple of the page size) and its lost-record counter ``lost``."""

    map_type = BPF_MAP_TYPE_RINGBUF

    def __init__(self, size: int, name: Optional[str] = None):
        super().__init__(max_entries=size, name=name)
        self.lost = _LostCounter(self)

    @statement
    def reserve(self, record_type: Any) -> Iterator[Ref]:
        """``with events.reserve(Event) as ev:`` reserves a record. Inside the
        block ``ev`` is non-NULL; at its end the record is submitted; leaving
        it early (``p.return_()``, ``p.break_()``) discards it. A full ring
        skips the block and counts the loss."""
        builder = current()
        code = builder.code
        record = call_helper(builder, helper("ringbuf_reserve"),
                             (self, sizeof(record_type)), {}, result_type=record_type)
        pointer = record._base
        lost = code.new_label("ring_full")
        code.jump_if(compare("==", record._pointer_value(unchecked=True), 0), lost)
        block = code.enter("ring buffer record", {pointer.storage})
        builder._reservations.append((self, record))
        yield record
        builder._reservations.pop()
        end = None
        if code.reachable:
            call_helper(builder, helper("ringbuf_submit"), (record,), {})
            end = code.new_label("submitted")
            code.goto(end)
        code.leave(block)
        code.place(lost)
        self.lost.count(builder)
        if end is not None:
            code.place(end)

    def discard_record(self, builder: Any, record: Ref) -> None:
        """``bpf_ringbuf_discard(record, 0)``: for a block left early."""
        call_helper(builder, helper("ringbuf_discard"), (record,), {})

    def output(self, data: Any, size: Any = None) -> None:
        """``bpf_ringbuf_output(&events, data, size, 0)``, counting a failure
        as lost. ``size`` defaults to the size of ``data``."""
        builder = current()
        args = (self, data) if size is None else (self, data, size)
        result = call_helper(builder, helper("ringbuf_output"), args, {})
        with builder.if_(result != 0):
            self.lost.count(builder)


class PerfEventArray(MapDecl):
    """A ``BPF_MAP_TYPE_PERF_EVENT_ARRAY``: one perf buffer per CPU, the
    older way to stream records (prefer :class:`RingBuf` from Linux 5.8).
    ``coll.reader(events, Event)`` reads it; records it could not hold are
    counted by the reader (``PERF_RECORD_LOST``), not by the program."""

    map_type = BPF_MAP_TYPE_PERF_EVENT_ARRAY

    def __init__(self, name: Optional[str] = None):
        super().__init__(key=u32, value=u32, max_entries=len(possible_cpus()), name=name)

    def output(self, ctx: Any, data: Any, size: Any = None) -> Any:
        """``bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, data,
        size)``: ``data`` (program memory; ``size`` defaults to its size) to
        this CPU's buffer. Returns 0 or -errno (``-ENOENT``: no reader has
        opened this CPU's buffer)."""
        args = (ctx, self, BPF_F_CURRENT_CPU, data) + (() if size is None else (size,))
        return call_helper(current(), helper("perf_event_output"), args, {})


class _LostCounter(PerCPUArray):
    """``<ringbuf>_lost``: key 0 holds, per CPU, how many records did not fit."""

    def __init__(self, ring: RingBuf):
        super().__init__(value=u64, max_entries=1)
        self._ring = ring

    @property
    def name(self) -> str:
        return self._ring.name + "_lost"

    def count(self, builder: Any) -> None:
        slot = self.lookup(0)
        with builder.if_(slot):
            builder.atomic_add(slot, 1)
