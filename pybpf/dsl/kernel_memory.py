"""Reading kernel structs: ``task.real_parent.tgid``, ``file.f_path.dentry``.

A :class:`KernelRef` is a kernel address seen as a kernel type (from BTF,
:mod:`pybpf.dsl.kernel_types`). It is the kernel-memory twin of
:class:`~pybpf.dsl.memory.Ref`: attribute access reaches members at the
offsets this kernel's BTF gives, but a program cannot load kernel memory
directly, so reading a scalar member emits ``bpf_probe_read_kernel`` of
just its bytes into a stack slot, then loads it:

* an embedded struct, union or array member is another KernelRef (no read);
* an integer member is a value of its BTF type (a bitfield is extracted);
* a pointer member is read and becomes a KernelRef of what it points to.

Each read is a helper call, the cost that matters, so :func:`fetch` copies
the span of several members of one object with one read; the members are then
loaded from the copy (``d = p.fetch(dentry, "d_parent", "d_name")``).
Members outside the copy are still read from the kernel: ``fetch`` changes
the cost, never the meaning.

A kernel pointer is never dereferenced, only handed to the probe-read
helpers, which return zeros for a bad address: a chain through NULL reads
zeros, not a verifier rejection. Kernel memory is read-only.
"""

from typing import Any, NamedTuple, Optional

from ..errors import ProgramBuildError
from ..helper_defs import HELPERS
from ..kernel.btf import FieldNotFound, TypeNotFound
from .calls import Arg
from .codegen import current
from .kernel_types import FlexibleArray, KernelMember, KernelStruct, kernel_struct
from .locations import FrameBase
from .memory import Ref
from .types import VALUES, ArrayType, PointerType, s64, u8, u16, u32, u64, void
from .values import Cond, Const, Local, Value, Var, as_value, binary, build_error, compare, \
    convert

_PROBE_READ_KERNEL = HELPERS["bpf_probe_read_kernel"].id


class _Copy(NamedTuple):
    """Bytes ``[lo, hi)`` of a kernel object (offsets from its address),
    copied to the stack at ``base + offset``."""

    base: FrameBase
    offset: int
    lo: int
    hi: int

    def ref(self, offset: int, size: int, rtype: Any) -> Optional[Ref]:
        """The copy of bytes ``[offset, offset + size)`` as ``rtype``, or
        None when they were not copied."""
        if self.lo <= offset and offset + size <= self.hi:
            return Ref(self.base, self.offset + offset - self.lo, rtype)
        return None


class KernelRef:
    """``type`` at kernel address ``pointer + offset`` (see the module doc).

    ``is_null`` and ``set`` are the only attributes of its own; a member
    with one of those names is reached with ``p.field(ref, "set")``.
    """

    __slots__ = ("_pointer", "_offset", "_type", "_copy")

    def __init__(self, pointer: Value, offset: int, ktype: Any, copy: Optional[_Copy] = None):
        object.__setattr__(self, "_pointer", pointer)
        object.__setattr__(self, "_offset", offset)
        object.__setattr__(self, "_type", ktype)
        object.__setattr__(self, "_copy", copy)

    # --- members ------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise build_error("kernel memory is read-only (%s.%s)" % (self._type.name, name))

    def _member(self, path: str) -> KernelMember:
        t = self._type
        if not isinstance(t, KernelStruct):
            raise build_error("%s is not a struct: it has no member %r%s"
                              % (t.name, path, "; index it first ([0], p.index())"
                                 if t.is_scalar else ""))
        try:
            return t.member(path)
        except (FieldNotFound, TypeNotFound) as exc:
            raise _missing(t, exc) from None

    def _get(self, path: str) -> Any:
        """Member ``path`` (embedded members joined by dots)."""
        m = self._member(path)
        offset = self._offset + m.offset
        if m.bitfield is not None:
            return _extract(self._load(offset, _UNSIGNED[m.size]), m)
        if m.type.is_scalar:
            return self._at(offset, m.type)
        return KernelRef(self._pointer, offset, m.type, self._copy)

    def _at(self, offset: int, vtype: Any) -> Any:
        """The scalar of ``vtype`` at ``offset``: a value, or for a pointer
        a KernelRef of its target."""
        if isinstance(vtype, PointerType):
            return KernelRef(Local(vtype, self._load(offset, u64).storage), 0, vtype.target)
        return self._load(offset, vtype)

    def _load(self, offset: int, vtype: Any) -> Local:
        code = current().code
        copied = self._copy.ref(offset, vtype.size, vtype) if self._copy else None
        if copied is not None:
            return code.load(copied._base, copied._offset, vtype)
        slot = code.frame.alloc(vtype.size, "a kernel read")
        probe_read(FrameBase(slot), 0, vtype.size, self._pointer, offset)
        value = code.load(FrameBase(slot), 0, vtype)
        code.frame.free(slot, vtype.size)
        return value

    # --- elements -----------------------------------------------------------------------------

    def __getitem__(self, index: Any) -> Any:
        """``ref[i]``: an array element, or (C's ``ptr[i]``) the ``i``-th
        object at a pointer. A run-time index needs a bound: an array's
        own length, else ``p.index(ref, i, bound)``."""
        t = self._type
        if isinstance(index, Const):
            index = index.value
        if isinstance(t, ArrayType):
            if not isinstance(index, int):
                return index_element(current(), self, index, t.count)
            if not 0 <= index < t.count:
                raise build_error("index %d is out of range for %s (0..%d)"
                                  % (index, t.name, t.count - 1))
            return self._element(index, t.elem)
        if not isinstance(index, int):
            raise build_error("a run-time index into %s needs a bound the kernel keeps "
                              "(fdtable.max_fds for fdtable.fd): p.index(ref, i, bound)"
                              % _pointed(t))
        return self._element(index, t.elem if isinstance(t, FlexibleArray) else t)

    def _element(self, index: int, elem: Any) -> Any:
        offset = self._offset + index * elem.size
        return self._at(offset, elem) if elem.is_scalar \
            else KernelRef(self._pointer, offset, elem, self._copy)

    # --- as a pointer -------------------------------------------------------------------------

    def _pointer_value(self) -> Value:
        ptype = PointerType(self._type, "kernel")
        pointer = self._pointer
        if self._offset == 0:
            return pointer if isinstance(pointer, Const) else Local(ptype, pointer.storage)
        return convert(binary("+", convert(pointer, u64), self._offset), ptype)

    __hash__ = object.__hash__

    def __eq__(self, other: Any) -> Cond:  # type: ignore[override]
        return compare("==", self._pointer_value(), 0 if other is None else other)

    def __ne__(self, other: Any) -> Cond:  # type: ignore[override]
        return compare("!=", self._pointer_value(), 0 if other is None else other)

    @property
    def is_null(self) -> Cond:
        """The condition ``pointer == NULL``, for ``p.if_`` before a read."""
        return compare("==", self._pointer_value(), 0)

    def set(self, value: Any) -> "KernelRef":
        """Assign a variable made by ``p.var(KernelPtr("dentry"), ...)``."""
        pointer = self._pointer
        if not isinstance(pointer, Var) or self._offset:
            raise build_error("only a kernel pointer variable (p.var(KernelPtr(...))) can be "
                              "set; this is %s" % _pointed(self._type))
        check_assignable(pointer.type, value)
        pointer.set(value)
        return self

    def __bool__(self) -> bool:
        raise build_error("a kernel pointer has no truth value while the program is being "
                          "built; write `with p.if_(ptr):`")

    def __repr__(self) -> str:
        return "<KernelRef %s at %r%+d>" % (self._type.name, self._pointer, self._offset)

    # --- copying out --------------------------------------------------------------------------

    def _read_into(self, dst: Ref) -> None:
        """``dst = *self``: the whole object into program memory (what
        ``ev.comm = task.comm`` does): one probe read, or a copy from
        what :func:`fetch` already read."""
        size = self._type.size
        if dst._type.size < size:
            raise build_error("cannot copy %s (%d bytes) into %s (%d bytes)"
                              % (self._type.name, size, dst._type.name, dst._type.size))
        dst._checked()
        copied = self._copy.ref(self._offset, size, u8[size]) if self._copy else None
        if copied is not None:
            current().copy(dst, copied)
            return
        probe_read(dst._base, dst._offset, size, self._pointer, self._offset)


_UNSIGNED = {1: u8, 2: u16, 4: u32, 8: u64}


def _pointed(t: Any) -> str:
    return "a %s in kernel memory" % t.name


def _missing(struct: KernelStruct, exc: Exception) -> ProgramBuildError:
    return build_error("%s in this kernel's BTF: %s; where kernels differ, "
                       "p.field(ref, \"new_name\", \"old_name\") takes the first that exists"
                       % (struct.name, exc))


def _extract(raw: Value, m: KernelMember) -> Value:
    """A bitfield from the load that holds it (libbpf's
    BPF_CORE_READ_BITFIELD_PROBED)."""
    lshift, rshift = m.bitfield  # type: ignore[misc]
    wide = binary("<<", convert(raw, u64), lshift)
    signed = m.type.signed  # type: ignore[attr-defined]
    return convert(binary(">>", convert(wide, s64) if signed else wide, rshift), m.type)


def probe_read(dst: Any, dst_offset: int, size: int, pointer: Value, offset: int) -> None:
    """``bpf_probe_read_kernel(dst + dst_offset, size, pointer + offset)``,
    the address computed in the argument register. Its result is not
    needed: on failure the helper zeroes ``dst``."""
    code = current().code
    source = Arg("value", value=Const((pointer.value + offset) & (1 << 64) - 1, u64)) \
        if isinstance(pointer, Const) else Arg("addr", base=pointer, offset=offset)
    code.call([Arg("addr", base=dst, offset=dst_offset), Arg("value", value=Const(size, u32)),
               source], None, helper=_PROBE_READ_KERNEL)


def check_assignable(ptype: Any, value: Any) -> None:
    """Refuse ``struct dentry *`` = ``struct mount *``: cast explicitly
    (``p.container_of``, ``KernelPtr("x")(value)``) when that is meant."""
    if isinstance(value, KernelRef) and isinstance(ptype, PointerType) \
            and ptype.target is not void and value._type is not void \
            and value._type != ptype.target:
        raise build_error("cannot assign %s to a %s variable" % (_pointed(value._type),
                                                                  ptype.name))


# --- what p.<name>() does -------------------------------------------------------------------

def kernel_ref(value: Any) -> KernelRef:
    """``value`` as a KernelRef (a view keeps its type; anything else is
    an untyped kernel address)."""
    if isinstance(value, KernelRef):
        return value
    value = as_value(value)
    if isinstance(value.type, PointerType) and value.type.space == "kernel":
        return KernelRef(value, 0, value.type.target)
    raise build_error("expected a kernel pointer (a KernelRef, or KernelPtr(\"struct\")(value)),"
                      " not %r" % (value,))


def current_task(p: Any) -> KernelRef:
    """``(struct task_struct *)bpf_get_current_task()``."""
    task = kernel_struct("task_struct")
    return KernelRef(convert(p.helpers.get_current_task(), PointerType(task, "kernel")), 0, task)


def fetch(p: Any, ref: Any, *paths: str) -> KernelRef:
    """``ref`` with the members ``paths`` (and whatever lies between them)
    read into a stack copy by one ``bpf_probe_read_kernel``."""
    ref = kernel_ref(ref)
    if not paths:
        raise build_error("p.fetch() needs the members to read")
    members = [ref._member(path) for path in paths]
    lo = ref._offset + min(m.offset for m in members)
    hi = ref._offset + max(m.offset + m.size for m in members)
    buf = p.stack(u8[hi - lo])
    pointer = ref._pointer
    if isinstance(pointer, Var):
        # The copy is of the object the variable points to now; members
        # read later from the kernel must come from the same object.
        pointer = Local(pointer.type, p.var(u64, pointer).storage)
    probe_read(buf._base, buf._offset, hi - lo, pointer, lo)
    return KernelRef(pointer, ref._offset, ref._type, _Copy(buf._base, buf._offset, lo, hi))


def first_field(ref: Any, *paths: str) -> Any:
    """The first of ``paths`` this kernel has (members joined by dots,
    through pointers too: ``"real_parent.tgid"``)."""
    ref = kernel_ref(ref)
    if not paths:
        raise build_error("p.field() needs at least one member path")
    problems = []
    for path in paths:
        problem = _path_problem(ref._type, path)
        if problem is None:
            value = ref
            for name in path.split("."):
                value = value._get(name)
            return value
        problems.append(problem)
    raise build_error("%s has none of %s in this kernel's BTF: %s"
                      % (ref._type.name, ", ".join(repr(path) for path in paths),
                         "; ".join(problems)))


def _path_problem(t: Any, path: str) -> Optional[str]:
    """Why ``path`` cannot be read from a ``t`` (None when it can)."""
    for name in path.split("."):
        if isinstance(t, PointerType):
            t = t.target
        if not isinstance(t, KernelStruct):
            return "%s: %s is not a struct" % (path, t.name)
        try:
            t = t.member(name).type
        except (FieldNotFound, TypeNotFound) as exc:
            return str(exc)
    return None


def index_element(p: Any, ref: Any, index: Any, bound: Any) -> Any:
    """Element ``index`` of the array or pointer ``ref`` if ``index <
    bound`` (unsigned: a negative index is out of range), else 0 (NULL)."""
    ref = kernel_ref(ref)
    t = ref._type
    elem = t.elem if isinstance(t, (ArrayType, FlexibleArray)) else t
    if not elem.is_scalar:
        raise build_error("p.index() reads integer and pointer elements, not %s" % elem.name)
    result = p.var(elem, 0)
    at = convert(as_value(index), u64)
    with p.if_(at < convert(as_value(bound), u64)):
        address = binary("+", convert(ref._pointer, u64), binary("*", at, elem.size))
        result.set(KernelRef(address, ref._offset, elem)._at(ref._offset, elem))
    return result


def container_of(ref: Any, struct: str, member: str) -> KernelRef:
    """The ``struct`` whose member ``member`` is at ``ref`` (the kernel's
    ``container_of``: ``p.container_of(vfsmnt, "mount", "mnt")``)."""
    ref = kernel_ref(ref)
    outer = kernel_struct(struct)
    try:
        m = outer.member(member)
    except (FieldNotFound, TypeNotFound) as exc:
        raise _missing(outer, exc) from None
    if ref._type is not void and ref._type != m.type:
        raise build_error("%s.%s is %s, but this pointer is to %s"
                          % (outer.name, member, m.type.name, ref._type.name))
    address = binary("-", convert(ref._pointer_value(), u64), m.offset)
    return KernelRef(convert(address, PointerType(outer, "kernel")), 0, outer)


VALUES.kernel_view = lambda value, target: KernelRef(value, 0, target)
