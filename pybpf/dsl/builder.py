"""``p``: the statements of a program function.

Program functions receive a :class:`Builder` (by convention ``p``) and read
top-down like their C:

.. code-block:: python

    pid = p.var(u32, p.helpers.get_current_pid_tgid() >> 32)   # u32 pid = ...;
    with p.if_(pid == 1):                                       # if (pid == 1)
        p.return_(0)                                            #     return 0;
    key = p.stack(Key, zero=True)                               # struct key key = {};
    for i in p.range(16):                                       # for (i = 0; i < 16; i++)
        with p.if_(key.name[i] == 0):
            p.break_()

Structured control flow is what keeps jump offsets and unreachable code out
of the user's hands: ``if_``/``elif_``/``else_`` are context managers,
loops are Python ``for`` statements over :meth:`Builder.range` (so that
``unroll=True`` can emit the body once per iteration), and leaving early is
``p.return_()``, ``p.break_()``, ``p.continue_()``, never a Python
``return``/``break``.
"""

import builtins
from typing import Any, Callable, FrozenSet, Iterator, List, Optional, Set

from ..helper_defs import HELPERS
from . import kernel_memory, printk
from . import stacks as stacks_module
from .statement import statement
from .calls import Arg
from .helpers import Helpers
from .kernel_memory import KernelRef
from .kernel_types import kernel_has_helper
from .locations import FrameBase
from .memory import AddressView, Ref, stack_ref
from .packet import PacketStatements
from .subprogram import Subprogram
from .types import ArrayType, IntType, PointerType, as_type, s64, u8, u16, u32, u64
from .values import (Cond, Const, Local, Var, as_cond, as_value, build_error, compare,
                     convert, implicit)

#: The most jumps one verifier path may take (kernel/bpf/verifier.c); a
#: bounded loop is followed once per iteration, so it caps their number.
BPF_COMPLEXITY_LIMIT_JMP_SEQ = 8192

#: Regions up to this size are zeroed and copied with straight-line code;
#: larger ones (in maps: the stack is at most 512 bytes) with a loop.
UNROLL_LIMIT = 256


class _Chain:
    """An if/elif chain that an ``elif_``/``else_`` may still continue."""

    __slots__ = ("end_label", "else_label", "last_falls", "false_facts", "marker", "unset",
                 "unset_falling")

    def __init__(self, end_label: str, unset: FrozenSet[int]):
        self.end_label = end_label
        self.unset = unset                 # variables maybe unset where the chain began
        self.unset_falling: FrozenSet[int] = frozenset()  # ... at the ends of its branches
        self.else_label = ""
        self.last_falls = True
        self.false_facts: Set[Any] = set()
        self.marker = (-1, -1)


class _Loop:
    __slots__ = ("cont", "end", "reservations")

    def __init__(self, cont: str, end: str, reservations: int):
        self.cont, self.end, self.reservations = cont, end, reservations


class Builder(PacketStatements):
    """The statements of one function; ``p.helpers`` calls kernel helpers.
    Packet headers and byte order (``p.packet_header``, ``p.ntohs``) come
    from :class:`~.packet.PacketStatements`."""

    def __init__(self, code: Any):
        self.code = code
        code.builder = self
        self.helpers = Helpers(self)
        self._chain: Optional[_Chain] = None
        self._loops: List[_Loop] = []
        self._reservations: List[Any] = []   # open ring buffer records

    # --- values -------------------------------------------------------------------------------

    def var(self, vtype: Any, init: Any = None) -> Var:
        """A local variable (C: ``u32 x = init;``). Without ``init`` it is
        unset until ``.set()``; the verifier rejects reading it before."""
        vtype = as_type(vtype)
        if not vtype.is_scalar:
            raise build_error("p.var() holds integers and pointers; use p.stack(%s) for %s"
                              % (vtype.name, vtype.name))
        if isinstance(init, Cond):
            init = self.code.materialize(init, vtype)
        if isinstance(vtype, PointerType):
            kernel_memory.check_assignable(vtype, init)
            return vtype.view(self.code.declare(vtype, init))
        return self.code.declare(vtype, init)

    def stack(self, vtype: Any, zero: bool = False) -> Ref:
        """An object on the stack (C: ``struct key k;``, with ``zero=True``
        ``struct key k = {};``). Its offset is chosen for you; exceeding 512
        bytes is a build error naming this line."""
        t = as_type(vtype)
        ref = stack_ref(self.code.frame.alloc(t.size, "%s on the stack" % t.name), t)
        if zero:
            self.zero(ref)
        return ref

    def addr(self, ref: Ref) -> AddressView:
        """Fields as places: ``p.atomic_add(p.addr(ev).count, 1)``."""
        return AddressView(_memory(ref, "p.addr()"))

    def atomic_add(self, ref: Ref, value: Any) -> None:
        """``__sync_fetch_and_add(ptr, value)`` on a 4- or 8-byte integer."""
        ref = _memory(ref, "p.atomic_add()")
        t = ref._type
        if not isinstance(t, IntType) or t.size not in (4, 8):
            raise build_error("atomic add needs a 32- or 64-bit integer, not %s" % t.name)
        ref._checked().atomic_add(ref._base, ref._offset, t.size, implicit(as_value(value), t))

    # --- kernel memory (pybpf.dsl.kernel_memory) --------------------------------------------

    def current_task(self) -> KernelRef:
        """``(struct task_struct *)bpf_get_current_task()``: members read
        with ``bpf_probe_read_kernel`` at this kernel's BTF offsets."""
        return kernel_memory.current_task(self)

    def fetch(self, ref: Any, *members: str) -> KernelRef:
        """``ref`` with ``members`` of it read by one ``bpf_probe_read_kernel``
        of the bytes they span (``p.fetch(dentry, "d_parent", "d_name")``);
        reading them afterwards costs a load each."""
        return kernel_memory.fetch(self, ref, *members)

    def field(self, ref: Any, *paths: str) -> Any:
        """The first of ``paths`` this kernel has, for members renamed
        between kernels: ``p.field(task, "__state", "state")``."""
        return kernel_memory.first_field(ref, *paths)

    def index(self, ref: Any, index: Any, bound: Any) -> Any:
        """``ref[index]`` if ``index < bound``, else 0 (NULL): the kernel's
        own bound, as in ``p.index(fdt.fd, fd, fdt.max_fds)``."""
        return kernel_memory.index_element(self, ref, index, bound)

    def container_of(self, ref: Any, struct: str, member: str) -> KernelRef:
        """The ``struct`` holding ``ref`` as its ``member``:
        ``p.container_of(vfsmnt, "mount", "mnt")``."""
        return kernel_memory.container_of(ref, struct, member)

    def log2(self, value: Any) -> Var:
        """bcc's ``bpf_log2(v)``: the highest set bit of a 32-bit value (0 for 0)."""
        return self._log2(value, 32)

    def log2l(self, value: Any) -> Var:
        """bcc's ``bpf_log2l(v)``: one more than the highest set bit of a
        64-bit value (1 for 0 and 1): the slot ``print_log2_hist`` expects."""
        return self._log2(value, 64)

    def _log2(self, value: Any, bits: int) -> Var:
        """The highest set bit by halving, as bcc's ``bpf_log2`` does."""
        v = self.var(u64 if bits == 64 else u32, value)
        result = self.var(u32, 1 if bits == 64 else 0)
        shift = bits // 2
        while shift:
            with self.if_(v > (1 << shift) - 1):
                v >>= shift
                result += shift
            shift //= 2
        return result

    def get_stackid(self, ctx: Any, stacks: Any, flags: Any = 0) -> Any:
        """``bpf_get_stackid(ctx, &stacks, flags)``: the id of the current
        stack in the ``StackTrace`` map ``stacks``; see :mod:`.stacks`."""
        return stacks_module.get_stackid(ctx, stacks, flags)

    def printk(self, fmt: Any, *args: Any) -> Any:
        """``bpf_printk(fmt, ...)``: a line in the trace buffer (``pybpf
        trace`` reads it); see :mod:`.printk`."""
        return printk.printk(self, fmt, args)

    # --- memory blocks ------------------------------------------------------------------------

    def zero(self, ref: Ref) -> None:
        """memset(ref, 0, sizeof(*ref)), without a loop for small objects."""
        ref = _memory(ref, "p.zero()")
        if _needs_loop(ref, ref._type.size):
            self._copy_loop(ref, None, ref._type.size)
        else:
            self._fill(ref, ref._type.size, lambda at, width: Const(0, _WIDTH_TYPES[width]))

    def store_bytes(self, ref: Ref, data: bytes) -> None:
        """Store constant bytes, zero-padded to the size of ``ref``."""
        size = ref._type.size
        if len(data) > size:
            raise build_error("%d bytes do not fit %s (%d bytes)" % (len(data), ref._type.name,
                                                                    size))
        padded = data + bytes(size - len(data))
        self._fill(ref, size, lambda at, width: Const(
            int.from_bytes(padded[at:at + width], "little"), _WIDTH_TYPES[width]))

    def copy(self, dst: Ref, src: Ref) -> None:
        """memcpy(dst, src, sizeof(*src)) between two pieces of program memory."""
        dst, src = _memory(dst, "p.copy()"), _memory(src, "p.copy()")
        size = src._type.size
        if dst._type.size < size:
            raise build_error("cannot copy %s (%d bytes) into %s (%d bytes)"
                              % (src._type.name, size, dst._type.name, dst._type.size))
        src._checked()
        if _needs_loop(dst, size):
            self._copy_loop(dst, src, size)
        else:
            self._fill(dst, size, lambda at, width: src._sub(at, _WIDTH_TYPES[width])._read(),
                       src)

    def _fill(self, ref: Ref, size: int, value_at, other: Optional[Ref] = None) -> None:
        """Store ``value_at(offset, width)`` over ``size`` bytes, in the
        widest aligned pieces."""
        code = ref._checked()
        at = 0
        while at < size:
            width = _chunk(ref, at, size - at, other)
            code.store(ref._base, ref._offset + at, width, value_at(at, width))
            at += width

    def _copy_loop(self, dst: Ref, src: Optional[Ref], size: int) -> None:
        """Zero (``src`` None) or copy a large region: 8-byte words in a
        kernel bounded loop, then the tail in straight-line code."""
        if dst._offset % 8 or (src is not None and src._offset % 8):
            raise build_error("regions over %d bytes must be 8-byte aligned to be zeroed or "
                              "copied" % UNROLL_LIMIT)
        words, rest = divmod(size, 8)
        for i in self.range(words):
            offset = convert(i, u64) << 3
            value = Const(0, u64) if src is None else src._dynamic(offset, u64)._read()
            dst._dynamic(offset, u64)._write(value)
        if rest:
            tail = dst._sub(words * 8, u8[rest])
            if src is None:
                self._fill(tail, rest, lambda at, width: Const(0, _WIDTH_TYPES[width]))
            else:
                tail_src = src._sub(words * 8, u8[rest])
                self._fill(tail, rest, lambda at, width:
                           tail_src._sub(at, _WIDTH_TYPES[width])._read(), tail_src)

    # --- strings ------------------------------------------------------------------------------

    def str_eq(self, buf: Ref, text: bytes) -> Cond:
        """Whether the string in ``buf`` (a ``char[N]``) is ``text``: its
        bytes, then a NUL unless ``text`` fills the array. Also written
        ``buf == b"bash"`` (C: ``!strcmp(buf, "bash")``)."""
        buf = _memory(buf, "p.str_eq()")
        if not isinstance(text, (bytes, bytearray)):
            raise build_error("p.str_eq() compares with constant bytes (b\"bash\"), not %r; "
                              "p.str_prefix_eq() also takes a string in memory" % (text,))
        text = bytes(text)
        if b"\0" in text:
            raise build_error("%r holds a NUL: a string ends at its first one" % (text,))
        if len(text) > _string_length(buf):
            raise build_error("%r is longer than %s: never equal" % (text, buf._type.name))
        return self._prefix_const(buf, text if len(text) == _string_length(buf)
                                  else text + b"\0")

    def str_prefix_eq(self, buf: Ref, prefix: Any) -> Cond:
        """Whether the string in ``buf`` starts with ``prefix``.

        A constant ``bytes`` prefix compiles to a few wide loads compared
        with constants; a prefix in memory (a config field, NUL-terminated
        or filling its array) to a bounded loop over its bytes."""
        buf = _memory(buf, "p.str_prefix_eq()")
        if isinstance(prefix, (bytes, bytearray)):
            return self._prefix_const(buf, bytes(prefix))
        prefix = _memory(prefix, "p.str_prefix_eq()")
        length = min(_string_length(buf), _string_length(prefix))
        equal = self.var(u8, 1)
        for i in self.range(length):
            c = prefix[i]
            with self.if_(c == 0):
                self.break_()
            with self.if_(buf[i] != c):
                equal.set(0)
                self.break_()
        return equal != 0

    def _prefix_const(self, buf: Ref, prefix: bytes) -> Cond:
        if not prefix:
            raise build_error("an empty prefix always matches; test for it in Python")
        if len(prefix) > _string_length(buf):
            raise build_error("prefix %r is longer than %s" % (prefix, buf._type.name))
        result: Optional[Cond] = None
        at = 0
        while at < len(prefix):
            width = _chunk(buf, at, len(prefix) - at, None)
            chunk = buf._sub(at, _WIDTH_TYPES[width])._read()
            test = compare("==", chunk, int.from_bytes(prefix[at:at + width], "little"))
            result = test if result is None else result & test
            at += width
        return result  # type: ignore[return-value]

    # --- control flow: branches ---------------------------------------------------------------

    @statement
    def if_(self, cond: Any) -> Iterator[None]:
        """``if (cond) { ... }``; a pointer as ``cond`` tests it against NULL
        and proves it non-NULL inside."""
        code = self.code
        cond = as_cond(cond)
        self._chain = None
        else_label = code.new_label("else")
        code.jump_if(cond, else_label, when=False)
        chain = _Chain(code.new_label("endif"), code.assigned.state())
        yield from self._branch(chain, cond, else_label, "if")

    @statement
    def elif_(self, cond: Any) -> Iterator[None]:
        """``with p.elif_(cond):`` right after an ``if_`` or ``elif_`` block (C: ``else if``)."""
        code = self.code
        chain = self._continue_chain("elif_")
        cond = as_cond(cond)
        else_label = code.new_label("else")
        code.jump_if(cond, else_label, when=False)
        yield from self._branch(chain, cond, else_label, "elif")

    @statement
    def else_(self) -> Iterator[None]:
        """``with p.else_():`` right after an ``if_`` or ``elif_`` block."""
        code = self.code
        chain = self._continue_chain("else_")
        block = code.enter("else", chain.false_facts)
        yield
        code.leave(block)
        code.assigned.restore(chain.unset_falling | (code.assigned.state() if code.reachable
                                                     else frozenset()))
        code.place(chain.end_label)
        self._chain = None

    def _branch(self, chain: _Chain, cond: Cond, else_label: str, kind: str) -> Iterator[None]:
        code = self.code
        block = code.enter(kind, cond.nonnull_facts() | chain.false_facts)
        yield
        code.leave(block)
        chain.last_falls = code.reachable
        if code.reachable:
            chain.unset_falling |= code.assigned.state()
        code.assigned.restore(chain.unset | chain.unset_falling)   # if no else_ follows
        if not code.reachable:  # only the false path goes on from here
            code.add_facts(cond.null_facts())
        chain.false_facts |= cond.null_facts()
        chain.else_label = else_label
        code.place(else_label)
        code.place(chain.end_label)
        chain.marker = code.mark()
        self._chain = chain

    def _continue_chain(self, what: str) -> _Chain:
        chain = self._chain
        if chain is None or not self.code.reopen(chain.marker, chain.else_label,
                                                 chain.end_label, chain.last_falls):
            raise build_error("p.%s() must directly follow a `with p.if_(...)` or "
                              "`with p.elif_(...)` block" % what)
        self._chain = None
        self.code.assigned.restore(chain.unset)
        return chain

    # --- control flow: leaving ----------------------------------------------------------------

    def return_(self, value: Any = 0) -> None:
        """``return value;``. Ring buffer records still open are discarded."""
        self._chain = None
        self._discard_from(0)
        self.code.ret(value)

    def break_(self) -> None:
        """Leave the innermost ``p.range()`` loop (C: ``break;``)."""
        loop = self._innermost("break_")
        self._discard_from(loop.reservations)
        self.code.goto(loop.end)

    def continue_(self) -> None:
        """Go on with the next iteration of the innermost loop (C: ``continue;``)."""
        loop = self._innermost("continue_")
        self._discard_from(loop.reservations)
        self.code.goto(loop.cont)

    def _innermost(self, what: str) -> _Loop:
        self._chain = None
        if not self._loops:
            raise build_error("p.%s() outside a `for ... in p.range()` loop" % what)
        return self._loops[-1]

    def _discard_from(self, depth: int) -> None:
        for ringbuf, pointer in reversed(self._reservations[depth:]):
            ringbuf.discard_record(self, pointer)

    # --- control flow: loops ------------------------------------------------------------------

    def range(self, start: Any, stop: Any = None, *, unroll: bool = False,
              vtype: IntType = u32) -> Iterator[Any]:
        """``for (i = start; i < stop; i++)``, as ``for i in p.range(stop):``.

        By default a loop the kernel runs (bounded loops, Linux 5.3): the
        body is emitted once and ``i`` is a variable. ``unroll=True`` emits
        the body once per iteration with ``i`` a Python int (constant
        bounds only). Leave with ``p.break_()``, never a Python ``break``.
        """
        if stop is None:
            start, stop = 0, start
        if unroll:
            if not isinstance(start, int) or not isinstance(stop, int):
                raise build_error("an unrolled loop needs constant bounds")
            yield from builtins.range(start, stop)
            return
        code = self.code
        self._chain = None
        stop_value = as_value(stop)
        if isinstance(stop_value, Const) and isinstance(start, int) and start >= stop_value.value:
            return
        i = self.var(vtype, start)
        top, cont, end = code.new_label("loop"), code.new_label("next"), code.new_label("done")
        if not (isinstance(stop_value, Const) and isinstance(start, int)):
            code.jump_if(compare(">=", i, stop_value), end)
        begin = code.alloc.loop_begin()
        unset, assigned_at = code.assigned.state(), code.assigned.mark()
        code.place(top)
        block = code.enter("loop")
        self._loops.append(_Loop(cont, end, len(self._reservations)))
        yield i
        self._loops.pop()
        code.leave(block)
        code.place(cont)
        if code.reachable:
            i += 1
            code.jump_if(compare("<", i, stop_value), top)
        code.alloc.loop_end(begin)
        code.assigned.after_loop(unset, assigned_at)
        code.place(end)
        self._chain = None

    def loop(self, count: Any, callback: Any, ctx: Optional[Ref] = None) -> Local:
        """``bpf_loop(count, callback, ctx, 0)`` (Linux 5.17): call the
        subprogram ``callback(p, i, ctx)`` up to ``count`` times (it returns
        1 to stop); returns the number of calls made.

        The verifier checks ``callback`` once, however large ``count`` is.
        On a kernel without ``bpf_loop`` (its BTF says so) the same contract
        is kept by a bounded loop of bpf-to-bpf calls (Linux 5.3), which the
        verifier walks once per iteration: ``count`` must then be a constant.
        """
        if not isinstance(callback, Subprogram):
            raise build_error("p.loop() calls a @subprogram, not %r" % (callback,))
        self._chain = None
        self.code.use_subprogram(callback)
        ctx_arg = Arg("value", value=Const(0, u64)) if ctx is None else _pointer_arg(ctx)
        if not kernel_has_helper("bpf_loop"):
            return self._loop_without_bpf_loop(count, callback, ctx_arg)
        return self.code.call([Arg("value", value=implicit(as_value(count), u32)),
                               Arg("func", name=callback.label), ctx_arg,
                               Arg("value", value=Const(0, u64))],
                              s64, helper=_helper_id("bpf_loop"), origin="bpf_loop")

    def _loop_without_bpf_loop(self, count: Any, callback: Any, ctx_arg: Arg) -> Local:
        """What ``bpf_loop`` does, as the kernel's own loop writes it::

            for (i = 0; i < count; i++)
                if (callback(i, ctx)) return i + 1;
            return count;
        """
        missing = "this kernel has no bpf_loop helper (added in Linux 5.17), and p.loop()"
        constant = as_value(count)
        if not isinstance(constant, Const):
            raise build_error("%s falls back to a bounded loop only for a constant count, "
                              "not %r" % (missing, count))
        if constant.value < 0:
            raise build_error("p.loop() needs a count of 0 or more, not %d" % constant.value)
        if constant.value * 2 > BPF_COMPLEXITY_LIMIT_JMP_SEQ:
            raise build_error("%s falls back to a bounded loop the verifier follows once per "
                              "iteration: %d iterations are more than it can follow within "
                              "BPF_COMPLEXITY_LIMIT_JMP_SEQ (%d jumps; counted conservatively "
                              "at 2 a turn)"
                              % (missing, constant.value, BPF_COMPLEXITY_LIMIT_JMP_SEQ))
        calls = self.var(s64, count)
        for i in self.range(count):
            stop = self.code.call([Arg("value", value=implicit(i, u64)), ctx_arg], s64,
                                  function=callback.label,
                                  origin="the result of %s()" % callback.name)
            with self.if_(stop != 0):
                calls.set(i + 1)
                self.break_()
        return calls

    # --- subprograms --------------------------------------------------------------------------

    def call(self, subprogram: Any, *args: Any) -> Optional[Local]:
        """A bpf-to-bpf call (what ``subprogram(p, ...)`` does)."""
        params = subprogram.params
        if len(args) != len(params):
            raise build_error("%s() takes %d arguments, not %d"
                              % (subprogram.name, len(params), len(args)))
        self._chain = None
        marshalled = []
        for (name, ptype), arg in zip(params, args):
            if isinstance(ptype, PointerType):
                marshalled.append(_pointer_arg(arg))
            else:
                marshalled.append(Arg("value", value=implicit(as_value(arg), ptype)))
        self.code.use_subprogram(subprogram)
        return self.code.call(marshalled, subprogram.ret_type, function=subprogram.label,
                              origin="the result of %s()" % subprogram.name)


_WIDTH_TYPES = {1: u8, 2: u16, 4: u32, 8: u64}


def _memory(ref: Any, what: str) -> Ref:
    if isinstance(ref, AddressView):
        return ref._ref
    if not isinstance(ref, Ref):
        raise build_error("%s needs program memory (a stack object, a map value, a field), "
                          "not %r" % (what, ref))
    return ref


def _needs_loop(ref: Ref, size: int) -> bool:
    return size > UNROLL_LIMIT and not isinstance(ref._base, FrameBase)


def _chunk(ref: Ref, at: int, remaining: int, other: Optional[Ref]) -> int:
    """The widest access (8, 4, 2, 1 bytes) aligned at ``ref + at`` (and at
    ``other + at``) that fits in ``remaining``. Bases are 8-byte aligned."""
    position = ref._offset + at + (ref._base.offset if isinstance(ref._base, FrameBase) else 0)
    other_position = 0 if other is None else other._offset + at + (
        other._base.offset if isinstance(other._base, FrameBase) else 0)
    for width in (8, 4, 2, 1):
        if width <= remaining and position % width == 0 and other_position % width == 0:
            return width
    return 1


def _string_length(ref: Ref) -> int:
    t = ref._type
    if not isinstance(t, ArrayType) or t.elem.size != 1:
        raise build_error("a string is a char array, not %s" % t.name)
    return t.count


def _pointer_arg(value: Any) -> Arg:
    """An argument that must point at program memory."""
    if isinstance(value, AddressView):
        value = value._ref
    if isinstance(value, Ref):
        value._checked()
        return Arg("addr", base=value._base, offset=value._offset)
    value = as_value(value)
    if isinstance(value, Local) and isinstance(value.type, PointerType):
        return Arg("value", value=value)
    raise build_error("this argument must point at program memory (a stack object, map value "
                      "or field), not %r" % (value,))


def _helper_id(name: str) -> int:
    return HELPERS[name].id
