"""The DSL's types: sized integers, fixed arrays, C-layout structs, pointers.

One declaration serves both sides. A :class:`Struct` subclass gives the
kernel side its field offsets (laid out by the C rules clang uses for
``-target bpf``: each field at the next multiple of its alignment, the
struct's size rounded up to its largest alignment) and gives userspace the
``construct`` parser of the same bytes (``Event.construct()``), which
:mod:`pybpf.kernel.records` turns into its fast decoder.
``Event.text_construct()`` is the same parser with every ``char[N]`` read
as text: a :class:`CStr` (a ``str`` cut at the first NUL, the stored bytes
in ``.raw``), which is what a collection's readers and typed maps give.

This module knows nothing about registers or code; :mod:`pybpf.dsl.values`
gives the integer types their operators.

>>> class Event(Struct):
...     pid: u32
...     ts: u64
...     comm: char[16]
>>> sizeof(Event), offsetof(Event, "ts"), offsetof(Event, "comm")
(32, 8, 16)
>>> Event.construct().parse(bytes(range(32))).pid
50462976
>>> ev = Event.text_construct().parse(bytes(16) + b"bash" + bytes(12))
>>> ev.comm, ev.comm.raw[:6]
('bash', b'bash\\x00\\x00')
"""

import sys
from typing import Any, Callable, Dict, NamedTuple, Optional

import construct


class ValueHooks:
    """What the types need of the layers above them, filled in by those layers.

    Calling a type on a program value (``u32(x)``, ``UserPtr(addr)``)
    converts the value, and a kernel pointer is read as a view of the
    memory it points at: both make code, which is the job of
    :mod:`.values` (``convert``) and :mod:`.kernel_memory` (``kernel_view``),
    modules built on this one. They set these attributes when imported (the
    package imports them before any program is built), so that this module
    describes layouts and imports nothing of the DSL.
    """

    def __init__(self) -> None:
        self.convert: Callable[[Any, "DSLType"], Any] = _not_ready
        self.kernel_view: Callable[[Any, "DSLType"], Any] = _not_ready


def _not_ready(*args: Any) -> Any:
    raise RuntimeError("pybpf.dsl.types used without pybpf.dsl: import the package")


VALUES = ValueHooks()


class DSLType:
    """Common protocol of every type: ``size``, ``align``, ``name`` and
    the ``construct`` that parses it. ``T[n]`` is an array of ``n`` T."""

    size: int
    align: int
    name: str

    def construct(self) -> construct.Construct:
        """The ``construct`` parser and builder of this type's bytes."""
        raise NotImplementedError

    def text_construct(self) -> "construct.Construct":
        """As :meth:`construct`, but strings (``char[N]``) parse to
        :class:`CStr` and build from ``str`` or ``bytes``: how userspace
        reads records and map entries."""
        return self.construct()

    def __getitem__(self, count: int) -> "ArrayType":
        return ArrayType(self, count)

    def __repr__(self) -> str:
        return self.name

    @property
    def is_scalar(self) -> bool:
        """True for what fits in a register (integers, pointers)."""
        return False


class IntType(DSLType):
    """A fixed-width integer. Calling it converts: ``u32(x)`` truncates a
    64-bit value, ``s64(x)`` sign-extends a signed 32-bit one, ``u8(300)``
    is the constant 44 (C conversion rules)."""

    __slots__ = ("name", "size", "signed", "bits", "min", "max")

    def __init__(self, name: str, size: int, signed: bool):
        self.name = name
        self.size = size
        self.signed = signed
        self.bits = size * 8
        self.min = -(1 << (self.bits - 1)) if signed else 0
        self.max = (1 << (self.bits - 1)) - 1 if signed else (1 << self.bits) - 1

    @property
    def align(self) -> int:
        """Integers are aligned to their size, as in C."""
        return self.size

    @property
    def is_scalar(self) -> bool:
        """An integer fits in a register."""
        return True

    @property
    def promoted(self) -> "IntType":
        """The register width arithmetic happens in: 32 bits for types up to
        32 bits (keeping their signedness, unlike C's promotion to ``int``:
        ``u8 + u32`` stays unsigned), else 64."""
        if self.size >= 4:
            return self
        return s32 if self.signed else u32

    @property
    def is64(self) -> bool:
        """Whether operations need the 64-bit (ALU64, JMP) forms."""
        return self.size == 8

    def fits(self, value: int) -> bool:
        """Whether ``value`` is representable in this type."""
        return self.min <= value <= self.max

    def wrap(self, value: int) -> int:
        """``value`` converted to this type the way C converts integers."""
        value &= (1 << self.bits) - 1
        if self.signed and value > self.max:
            value -= 1 << self.bits
        return value

    def construct(self) -> construct.Construct:
        """Little-endian integer of this size and signedness."""
        return _FORMAT_FIELDS[self.size][self.signed]

    def __call__(self, value: Any) -> Any:
        return VALUES.convert(value, self)


_FORMAT_FIELDS = {
    1: {False: construct.Int8ul, True: construct.Int8sl},
    2: {False: construct.Int16ul, True: construct.Int16sl},
    4: {False: construct.Int32ul, True: construct.Int32sl},
    8: {False: construct.Int64ul, True: construct.Int64sl},
}

u8 = IntType("u8", 1, False)
u16 = IntType("u16", 2, False)
u32 = IntType("u32", 4, False)
u64 = IntType("u64", 8, False)
s8 = IntType("s8", 1, True)
s16 = IntType("s16", 2, True)
s32 = IntType("s32", 4, True)
s64 = IntType("s64", 8, True)
#: A byte of a string. Unsigned, as the kernel itself is built since Linux
#: 6.2 (``-funsigned-char``); ``char[N]`` parses to ``bytes`` in userspace.
char = IntType("char", 1, False)

INT_TYPES = {t.name: t for t in (u8, u16, u32, u64, s8, s16, s32, s64, char)}


class ArrayType(DSLType):
    """``count`` elements of ``elem``, no padding between them."""

    __slots__ = ("elem", "count")

    def __init__(self, elem: Any, count: int):
        elem = as_type(elem)
        if not isinstance(count, int) or count <= 0:
            raise TypeError("array length must be a positive int, not %r" % (count,))
        self.elem = elem
        self.count = count

    @property
    def size(self) -> int:
        """``count`` elements, without padding between them."""
        return self.elem.size * self.count

    @property
    def align(self) -> int:
        """The alignment of one element."""
        return self.elem.align

    @property
    def name(self) -> str:
        """The C spelling, ``elem[count]``, for messages."""
        return "%s[%d]" % (self.elem.name, self.count)

    @property
    def is_string(self) -> bool:
        """Whether this is a ``char[]`` that string helpers may fill."""
        return self.elem is char

    def __getitem__(self, count: int) -> "ArrayType":
        """``u16[2][3]`` is C's ``u16 x[2][3]``: two rows of three."""
        return ArrayType(self.elem[count], self.count)

    def construct(self) -> construct.Construct:
        """``bytes`` for ``char[N]``, else a list of elements."""
        if self.elem is char:
            return construct.Bytes(self.count)
        return construct.Array(self.count, self.elem.construct())

    def text_construct(self) -> "construct.Construct":
        """A :class:`CStr` for ``char[N]``, else a list of elements read as text."""
        if self.elem is char:
            return CString(self.count)
        return construct.Array(self.count, self.elem.text_construct())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrayType) and other.elem == self.elem \
            and other.count == self.count

    def __hash__(self) -> int:
        return hash((self.elem, self.count))


class CStr(str):
    """A ``char[N]`` as userspace reads it: the text before the first NUL
    (UTF-8; bytes that do not decode are shown as U+FFFD), with the N bytes
    the field holds in ``raw``, so that nothing the kernel wrote is lost
    (``ev.filename.raw.split(b"\\0")[0]`` for a path that is not UTF-8).
    Building a field from a ``CStr`` writes back ``raw``."""

    raw: bytes

    def __new__(cls, raw: bytes) -> "CStr":
        end = raw.find(b"\0")
        text = str.__new__(cls, (raw if end < 0 else raw[:end]).decode("utf-8", "replace"))
        text.raw = raw
        return text


class CString(construct.Adapter):
    """``char[N]`` as a :class:`CStr`; built from ``str`` (UTF-8) or
    ``bytes``, padded with NULs to N.

    ``flat_decode`` is what :mod:`pybpf.kernel.records` calls on the
    ``bytes`` its fast decoder unpacks, so strings cost one call per field
    there instead of sending the whole record through ``construct``.
    """

    flat_decode = CStr

    def __init__(self, length: int):
        super().__init__(construct.Bytes(length))
        self.length = length

    def _decode(self, obj: bytes, context: Any, path: str) -> CStr:
        return CStr(obj)

    def _encode(self, obj: Any, context: Any, path: str) -> bytes:
        if isinstance(obj, CStr):
            obj = obj.raw
        elif isinstance(obj, str):
            obj = obj.encode()
        if len(obj) > self.length:
            raise construct.StringError("%r is %d bytes, longer than char[%d]"
                                        % (obj, len(obj), self.length), path=path)
        return bytes(obj).ljust(self.length, b"\0")


class PointerType(DSLType):
    """A 64-bit address of a ``target``.

    ``space`` says where it points and so how it may be read: ``"mem"`` is
    memory the program may load from directly (stack, map value, ring
    buffer record, context) after the verifier's checks; ``"user"`` and
    ``"kernel"`` are addresses only the probe-read helpers may read (a
    syscall's ``const char *filename`` is ``"user"``). A typed kernel
    pointer is where BTF-driven field chains (``task->files->fdt``) plug in:
    they read each link with ``bpf_probe_read_kernel``.
    """

    __slots__ = ("target", "space")
    size = 8
    align = 8

    def __init__(self, target: Any, space: str = "mem"):
        self.target = as_type(target)
        self.space = space

    @property
    def name(self) -> str:
        """The C spelling, with the address space unless plain memory."""
        prefix = "" if self.space == "mem" else self.space + " "
        return "%s%s *" % (prefix, self.target.name)

    @property
    def is_scalar(self) -> bool:
        """A pointer fits in a register."""
        return True

    def construct(self) -> construct.Construct:
        """An address: 64 bits, little-endian."""
        return construct.Int64ul

    def __call__(self, value: Any) -> Any:
        """``UserPtr(ctx.args[0])``: a 64-bit value seen as this pointer."""
        return self.view(VALUES.convert(value, self))

    def view(self, value: Any) -> Any:
        """What a program holds for ``value`` of this type: the value, but a
        kernel pointer is a view of the memory it points at, whose members
        read kernel memory (:mod:`pybpf.dsl.kernel_memory`)."""
        if self.space != "kernel":
            return value
        return VALUES.kernel_view(value, self.target)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PointerType) and other.target == self.target \
            and other.space == self.space

    def __hash__(self) -> int:
        return hash((self.target, self.space))


class _Bytes(DSLType):
    """Untyped memory (what ``void *`` points at): one byte per element."""

    name = "void"
    size = 1
    align = 1

    def construct(self) -> construct.Construct:
        return construct.Int8ul


void = _Bytes()


def Ptr(target: Any, space: str = "mem") -> PointerType:
    """A pointer type, for subprogram parameters: ``state: Ptr(State)``."""
    return PointerType(target, space)



class Field(NamedTuple):
    """One struct member: its name, type and byte offset."""
    name: str
    type: DSLType
    offset: int


class StructType(DSLType):
    """The layout of a :class:`Struct` declaration (``Event.layout``)."""

    def __init__(self, name: str, fields: Dict[str, Field], size: int, align: int):
        self.name = name
        self.fields = fields
        self.size = size
        self.align = align
        self._constructs: Dict[bool, construct.Struct] = {}

    def field(self, name: str) -> Field:
        """The member ``name`` (a build error listing the members when there is none)."""
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError("struct %s has no field %r (fields: %s)"
                           % (self.name, name, ", ".join(self.fields))) from None

    def construct(self) -> construct.Struct:
        """``construct.Struct`` with explicit padding, so that it parses and
        builds exactly ``size`` bytes. Built once."""
        return self._struct(text=False)

    def text_construct(self) -> "construct.Struct":
        """:meth:`construct` with its strings (also nested ones) read as :class:`CStr`."""
        return self._struct(text=True)

    def _struct(self, text: bool) -> "construct.Struct":
        built = self._constructs.get(text)
        if built is None:
            parts, position = [], 0
            for f in self.fields.values():
                if f.offset > position:
                    parts.append(construct.Padding(f.offset - position))
                parts.append(f.name / (f.type.text_construct() if text else f.type.construct()))
                position = f.offset + f.type.size
            if self.size > position:
                parts.append(construct.Padding(self.size - position))
            built = self._constructs[text] = construct.Struct(*parts)
        return built


#: Names a struct field may not take: they are the attributes of a pointer
#: to a struct (see :mod:`pybpf.dsl.memory`).
RESERVED_FIELD_NAMES = frozenset(("is_null",))


class Struct:
    """Base class of struct declarations. Fields are class annotations, in
    order; ``T[n]`` declares an array, another Struct nests.

    The class itself is the type: ``sizeof(Event)``, ``p.stack(Event)``,
    ``HashMap(key=u32, value=Event)``; ``Event.layout`` has the offsets and
    ``Event.construct()`` the userspace parser.
    """

    layout: StructType

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        annotations = cls.__dict__.get("__annotations__", {})
        module_globals = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
        declared = {}
        for name, annotation in annotations.items():
            if isinstance(annotation, str):  # ``from __future__ import annotations``
                annotation = eval(annotation, dict(module_globals), dict(vars(cls)))
            declared[name] = annotation
        cls.layout = struct_layout(cls.__name__, declared)

    @classmethod
    def construct(cls) -> construct.Struct:
        """The ``construct`` parser of the struct's bytes (``char[N]`` as ``bytes``)."""
        return cls.layout.construct()

    @classmethod
    def text_construct(cls) -> "construct.Struct":
        """The parser userspace reads records and map entries with: ``char[N]`` as :class:`CStr`."""
        return cls.layout.text_construct()

    def __class_getitem__(cls, count: int) -> ArrayType:
        return ArrayType(cls, count)


def struct_layout(name: str, declared: Dict[str, Any]) -> StructType:
    """Lay out ``declared`` (field name -> type) by the C rules."""
    fields: Dict[str, Field] = {}
    offset, align = 0, 1
    for field_name, declared_type in declared.items():
        if field_name in RESERVED_FIELD_NAMES or field_name.startswith("_"):
            raise TypeError("struct %s: field name %r is reserved (it names an attribute of "
                            "pointers); rename the field" % (name, field_name))
        try:
            ftype = as_type(declared_type)
        except TypeError as exc:
            raise TypeError("struct %s, field %r: %s" % (name, field_name, exc)) from None
        offset = _round_up(offset, ftype.align)
        fields[field_name] = Field(field_name, ftype, offset)
        offset += ftype.size
        align = max(align, ftype.align)
    if not fields:
        raise TypeError("struct %s has no fields" % name)
    return StructType(name, fields, _round_up(offset, align), align)


def _round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def as_type(declared: Any) -> DSLType:
    """The :class:`DSLType` behind a declaration: a type object, or a
    :class:`Struct` subclass."""
    if isinstance(declared, DSLType):
        return declared
    if isinstance(declared, type) and issubclass(declared, Struct) and declared is not Struct:
        return declared.layout
    raise TypeError("%r is not a DSL type (use u8..u64, s8..s64, char, T[n] or a Struct)"
                    % (declared,))


#: What a syscall tracepoint's ``const char *`` is: a user-space address.
UserPtr = PointerType(char, "user")


def sizeof(declared: Any) -> int:
    """Size of a type, or of a piece of program memory (C's ``sizeof(ev->comm)``)."""
    described = getattr(declared, "_type", None)   # a memory reference
    return (described if isinstance(described, DSLType) else as_type(declared)).size


def alignof(declared: Any) -> int:
    """Alignment of a type, by the C rules clang uses for BPF."""
    return as_type(declared).align


def offsetof(declared: Any, path: str) -> int:
    """Byte offset of a (possibly nested, dotted) field: ``offsetof(E, "hdr.pid")``."""
    current = as_type(declared)
    offset = 0
    for part in path.split("."):
        if not isinstance(current, StructType):
            raise TypeError("%s is not a struct; cannot take field %r" % (current.name, part))
        f = current.field(part)
        offset += f.offset
        current = f.type
    return offset


def c_int_type(ctype: str) -> Optional[IntType]:
    """The integer type of a C type name as the kernel's headers and
    tracepoint formats spell it (``"unsigned int"``, ``"__u64"``,
    ``"pid_t"``), or None when it is not a plain integer."""
    return _C_TYPES.get(" ".join(ctype.replace("const ", "").split()))


_C_TYPES: Dict[str, IntType] = {}
for _names, _type in (
        (("char", "unsigned char", "u8", "__u8", "uint8_t", "bool", "_Bool"), u8),
        (("signed char", "s8", "__s8", "int8_t"), s8),
        (("short", "signed short", "short int", "s16", "__s16", "int16_t"), s16),
        (("unsigned short", "unsigned short int", "u16", "__u16", "uint16_t", "umode_t"), u16),
        (("int", "signed int", "signed", "s32", "__s32", "int32_t", "pid_t"), s32),
        (("unsigned int", "unsigned", "u32", "__u32", "uint32_t", "uid_t", "gid_t", "dev_t"),
         u32),
        (("long", "long int", "signed long", "long long", "long long int", "s64", "__s64",
          "int64_t", "ssize_t", "loff_t", "off_t", "time64_t"), s64),
        (("unsigned long", "unsigned long int", "unsigned long long", "unsigned long long int",
          "u64", "__u64", "uint64_t", "size_t"), u64)):
    for _name in _names:
        _C_TYPES[_name] = _type
del _names, _type, _name

