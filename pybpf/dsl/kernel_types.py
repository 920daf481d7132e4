"""Kernel types as the DSL sees them: BTF records turned into DSL types.

Kernel structs are not declared in Python: their layout is whatever the
running kernel was built with, which its BTF (``/sys/kernel/btf/vmlinux``)
describes. ``KernelPtr("file")`` names ``struct file *`` without reading
BTF; the first member access made while a program is built loads it (once
per process, :func:`pybpf.kernel.btf.vmlinux`), so programs that never touch
kernel structs never pay for it. This is our CO-RE: offsets are resolved at
build time on the host the program will run on.

A member's BTF type becomes a DSL type: integers and enums an
:class:`~pybpf.dsl.types.IntType` of their size and signedness, pointers a
``PointerType(target, "kernel")``, structs and unions a
:class:`KernelStruct`, arrays an ``ArrayType`` (a flexible array member, of
no declared length, a :class:`FlexibleArray`). Reading them is
:mod:`pybpf.dsl.kernel_memory`'s job, not this module's.

Tests and cross-builds pick another BTF with :func:`using_btf`.
"""

import contextlib
import functools
import threading
from typing import Any, Iterator, NamedTuple, Optional, Tuple

from ..errors import UnsupportedFeature
from ..kernel import btf as kbtf
from ..kernel.btf_format import (BTF_KIND_ARRAY, BTF_KIND_ENUM, BTF_KIND_ENUM64, BTF_KIND_FWD,
                                 BTF_KIND_INT, BTF_KIND_PTR, BTF_KIND_STRUCT, BTF_KIND_UNION)
from .types import ArrayType, DSLType, PointerType, char, s8, s16, s32, s64, u8, u16, \
    u32, u64, void

_INTS = {(1, False): u8, (2, False): u16, (4, False): u32, (8, False): u64,
         (1, True): s8, (2, True): s16, (4, True): s32, (8, True): s64}

_override = threading.local()


def current_btf() -> kbtf.BTF:
    """The BTF kernel types resolve against: the one :func:`using_btf`
    set, else the running kernel's (loaded on first use)."""
    return btf_override() or kbtf.vmlinux()


def btf_override() -> Optional[kbtf.BTF]:
    """The BTF :func:`using_btf` set, or None for the running kernel's
    (without loading it): what a build depends on besides its source."""
    stack = getattr(_override, "stack", None)
    return stack[-1] if stack else None


def kernel_has_helper(name: str) -> bool:
    """Whether the kernel programs are built for implements helper ``name``
    (``bpf_loop``): its BTF's ``enum bpf_func_id`` lists every helper it has,
    and reading it needs no privileges. Without kernel BTF there is no way to
    tell, so the answer is yes and the verifier has the last word."""
    if not name.startswith("bpf_"):
        raise ValueError("helper names start with bpf_: %r" % name)
    try:
        ids = current_btf().enum_values("bpf_func_id")
    except (kbtf.TypeNotFound, UnsupportedFeature):
        return True
    return "BPF_FUNC_" + name[len("bpf_"):] in ids


@contextlib.contextmanager
def using_btf(btf: kbtf.BTF) -> Iterator[kbtf.BTF]:
    """Resolve kernel types against ``btf`` inside the block (a test's
    hand-made BTF, or another kernel's ``vmlinux`` file)."""
    stack = getattr(_override, "stack", None)
    if stack is None:
        stack = _override.stack = []
    stack.append(btf)
    try:
        yield btf
    finally:
        stack.pop()


class KernelStruct(DSLType):
    """A kernel struct or union, by name (``KernelStruct("file")``) or, for
    an anonymous one, by its id in one BTF. Its size and members come from
    the current BTF when they are first asked for."""

    align = 8

    def __init__(self, name: str, btf: Optional[kbtf.BTF] = None, type_id: int = 0):
        self._name = name
        self._btf = btf
        self._type_id = type_id

    @property
    def name(self) -> str:  # type: ignore[override]
        """``struct file`` (``union ...``): from BTF once it was looked up."""
        if self._btf is not None:
            return self._btf.c_type(self._type_id)
        return "struct " + self._name

    def resolved(self) -> Tuple[kbtf.BTF, int]:
        """(BTF, type id) of this type in the current BTF. Raises
        :class:`~pybpf.kernel.btf.TypeNotFound` (with near names)."""
        btf = current_btf()
        if self._btf is not btf:
            if not self._name:
                raise kbtf.TypeNotFound(btf.source, "(anon)", "an anonymous type of %s cannot "
                                        "be found in %s" % (self._btf.source, btf.source))
            self._btf = btf
            self._type_id = btf.find(self._name, (BTF_KIND_STRUCT, BTF_KIND_UNION)).id
        return btf, self._type_id

    @property
    def size(self) -> int:  # type: ignore[override]
        """The struct's size in the kernel's BTF, known only once resolved."""
        btf, type_id = self.resolved()
        return btf.sizeof(type_id)

    def member(self, path: str) -> "KernelMember":
        """Where ``path`` (member names joined by dots, through anonymous
        and embedded structs, never through pointers) is, and its DSL
        type. Raises :class:`~pybpf.kernel.btf.FieldNotFound`."""
        btf, type_id = self.resolved()
        return _member(btf, type_id, path)

    def construct(self) -> Any:
        """Refused: kernel structs are read member by member, never copied whole to userspace."""
        raise TypeError("%s is kernel memory: read its members, it has no userspace parser"
                        % self.name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KernelStruct):
            return False
        if self._name or other._name:
            return self._name == other._name
        return self._btf is other._btf and self._type_id == other._type_id

    def __hash__(self) -> int:
        return hash(self._name or (id(self._btf), self._type_id))


class FlexibleArray(DSLType):
    """A flexible array member (``struct file *fd[]``): elements of
    ``elem`` whose count only the kernel knows, so an index needs a bound."""

    size = 0

    def __init__(self, elem: DSLType):
        self.elem = elem

    @property
    def align(self) -> int:  # type: ignore[override]
        """The alignment of one element."""
        return self.elem.align

    @property
    def name(self) -> str:  # type: ignore[override]
        """The C spelling, ``elem[]``, for messages."""
        return "%s[]" % self.elem.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlexibleArray) and other.elem == self.elem

    def __hash__(self) -> int:
        return hash(("[]", self.elem))


class KernelMember(NamedTuple):
    """A member of a kernel struct: byte ``offset`` and DSL ``type``; for a
    bitfield, ``size`` bytes at ``offset`` hold it and ``lshift``/``rshift``
    extract it from that load widened to 64 bits (libbpf's CO-RE rule)."""

    path: str
    offset: int
    size: int
    type: DSLType
    bitfield: Optional[Tuple[int, int]]   # (lshift, rshift), or None


@functools.lru_cache(maxsize=4096)
def _member(btf: kbtf.BTF, type_id: int, path: str) -> KernelMember:
    field = btf.field(type_id, path)
    mtype = dsl_type(btf, field.type_id)
    bitfield = (field.lshift_u64, field.rshift_u64) if field.is_bitfield else None
    return KernelMember(path, field.offset, field.size, mtype, bitfield)


def dsl_type(btf: kbtf.BTF, type_id: int) -> DSLType:
    """The DSL type of BTF type ``type_id`` (see the module docstring)."""
    t = btf.resolve_type(type_id)
    if t.kind in (BTF_KIND_INT, BTF_KIND_ENUM, BTF_KIND_ENUM64):
        info = btf.int_info(t.id)
        if t.name == "char" or (info.is_char and info.size == 1):
            return char
        if (info.size, info.signed) not in _INTS:
            raise kbtf.BTFError("%s: %s is a %d-byte integer, which no register holds"
                                % (btf.source, t, info.size))
        return _INTS[(info.size, info.signed)]
    if t.kind == BTF_KIND_PTR:
        target = btf.resolve_type(t.type)
        if target.kind in (BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_FWD,
                           BTF_KIND_INT, BTF_KIND_ENUM, BTF_KIND_ENUM64, BTF_KIND_PTR,
                           BTF_KIND_ARRAY):
            return PointerType(dsl_type(btf, target.id), "kernel")
        return PointerType(void, "kernel")      # void *, function pointers
    if t.kind in (BTF_KIND_STRUCT, BTF_KIND_UNION):
        return KernelStruct(t.name, btf, t.id)
    if t.kind == BTF_KIND_FWD:
        return KernelStruct(t.name)
    if t.kind == BTF_KIND_ARRAY:
        info = btf.array_info(t.id)
        elem = dsl_type(btf, info.elem_type_id)
        return ArrayType(elem, info.nelems) if info.nelems else FlexibleArray(elem)
    raise kbtf.BTFError("%s: the DSL cannot read %s (a %s)" % (btf.source, t, t.kind_name))


def kernel_struct(name: str) -> KernelStruct:
    """``KernelStruct`` by its C name (``"file"``, ``"struct file"``)."""
    for prefix in ("struct ", "union "):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if not name.isidentifier():
        raise ValueError("%r is not the name of a kernel struct" % name)
    return KernelStruct(name)


class _KernelPtr(PointerType):
    """``KernelPtr``: an untyped kernel address, and the maker of typed ones."""

    def __call__(self, value: Any) -> Any:
        """``KernelPtr("file")`` is the type ``struct file *`` (its layout
        comes from the kernel's BTF, :func:`kernel_struct`);
        ``KernelPtr("file")(ctx.args[0])`` a value of it, and
        ``KernelPtr(x)`` an untyped kernel address."""
        if isinstance(value, str):
            return PointerType(kernel_struct(value), "kernel")
        return super().__call__(value)


#: An untyped kernel address; ``KernelPtr("task_struct")`` a typed one.
KernelPtr = _KernelPtr(void, "kernel")
