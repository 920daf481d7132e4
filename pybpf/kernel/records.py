"""Decoding event records: one ``construct`` declaration, two speeds.

An event struct is declared once, as a ``construct.Struct`` (the DSL builds
it). ``construct`` parses about 0.09 M records/s here, too slow for a busy
stream; ``struct.Struct.unpack_from`` does about 2.4 M/s. So
:func:`decoder_for` flattens the declaration into one ``struct`` format and
builds records as small tuple classes (:class:`StructDecoder`); an adapter
with a ``flat_decode`` function (the DSL's strings) is flattened to its
inner value passed through that function; whatever cannot be flattened (strings, enums, variable sizes, computed fields) keeps
``construct`` (:class:`ConstructDecoder`). Both decode a whole batch in
one call: a list of buffers (``decode_batch``), or offsets into one ring
buffer (``decode_from``, the readers' hot path, which needs no slice per
record). :func:`to_builtin` turns either result into plain dicts and lists,
which is how the tests prove they agree.

This module does not read rings; :mod:`pybpf.kernel.reader` hands it
buffers and offsets.

>>> import construct as c
>>> d = decoder_for(c.Struct("pid" / c.Int32ul, "comm" / c.Bytes(4)), "Event")
>>> d.decode(b"\\x2a\\x00\\x00\\x00bash")
Event(pid=42, comm=b'bash')
"""

import struct
import sys
from operator import itemgetter
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import construct

from ..errors import PyBPFError


class RecordDecodeError(PyBPFError, ValueError):
    """A record that does not decode with its declared struct."""


# --- record classes -----------------------------------------------------------------


def _record_repr(self) -> str:
    return "%s(%s)" % (type(self).__name__,
                       ", ".join("%s=%r" % pair for pair in zip(self._fields, self)))


def _record_asdict(self) -> Dict[str, Any]:
    return dict(zip(self._fields, self))


def record_class(name: str, fields: Sequence[str]) -> type:
    """A tuple subclass with one read-only attribute per field.

    Like ``collections.namedtuple`` but it accepts any field name a C struct
    may have (``__syscall_nr``), and it is built from an already made tuple
    with ``tuple.__new__(cls, values)``, the cheapest construction there is.
    """
    namespace: Dict[str, Any] = {
        "__slots__": (), "_fields": tuple(fields),
        "__repr__": _record_repr, "_asdict": _record_asdict,
    }
    for index, field in enumerate(fields):
        namespace[field] = property(itemgetter(index), doc="field %d" % index)
    return type(name, (tuple,), namespace)


def to_builtin(value: Any) -> Any:
    """Records, construct Containers and sequences as plain dicts and lists,
    without construct's private ``_io`` entry: a form both decoders agree on."""
    if isinstance(value, dict):
        return {k: to_builtin(v) for k, v in value.items() if k != "_io"}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {k: to_builtin(v) for k, v in zip(value._fields, value)}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    return value


# --- flattening a construct declaration into one struct format --------------------------


class CannotFlatten(Exception):
    """Raised inside the flattener for a construct it has no ``struct`` form for."""


_NATIVE = "<" if sys.byteorder == "little" else ">"
_FORMAT_CODES = set("bBhHiIlLqQefd?")
_FLAG = type(construct.Flag)  # construct exports these two as singletons
_PASS = type(construct.Pass)


class _Flattener:
    """Walks a construct tree and collects a ``struct`` format plus, for
    every value, a Python expression that builds it from the unpacked tuple
    ``t``. Values of the other byte order than the format's are unpacked as
    bytes and converted with ``int.from_bytes``."""

    def __init__(self, order: str):
        self.order = order
        self.codes: List[str] = []
        self.count = 0                     # values unpacked so far
        self.classes: Dict[str, type] = {}  # record classes the expressions name
        self.functions: Dict[str, Callable[[Any], Any]] = {}  # adapters' flat_decode, by name
        self._class_names: Dict[int, str] = {}

    def _value(self, code: str) -> str:
        self.codes.append(code)
        self.count += 1
        return "t[%d]" % (self.count - 1)

    def _int_bytes(self, length: int, little: bool, signed: bool) -> str:
        raw = self._value("%ds" % length)
        return "_from_bytes(%s, %r, signed=%r)" % (raw, "little" if little else "big", signed)

    def flatten(self, con: construct.Construct, name: str) -> str:
        if isinstance(con, construct.Renamed):
            return self.flatten(con.subcon, name)
        if isinstance(con, construct.FormatField):
            order, code = con.fmtstr[0], con.fmtstr[1:]
            order = _NATIVE if order in "=@" else order
            if code not in _FORMAT_CODES:
                raise CannotFlatten(con.fmtstr)
            if order == self.order or con.length == 1:
                return self._value(code)
            if code in "efd":
                raise CannotFlatten("float of the other byte order")
            return self._int_bytes(con.length, order == "<", code.islower())
        if isinstance(con, construct.BytesInteger):
            if not isinstance(con.length, int) or not isinstance(con.swapped, bool):
                raise CannotFlatten("BytesInteger with a computed length or order")
            return self._int_bytes(con.length, con.swapped, bool(con.signed))
        if isinstance(con, _FLAG):
            return self._value("?")
        if isinstance(con, construct.Bytes):
            if not isinstance(con.length, int):
                raise CannotFlatten("Bytes with a computed length")
            return self._value("%ds" % con.length)
        if isinstance(con, construct.Array):
            if not isinstance(con.count, int) or con.discard:
                raise CannotFlatten("Array with a computed count")
            first = self.count
            items = [self.flatten(con.subcon, name) for _ in range(con.count)]
            if items == ["t[%d]" % i for i in range(first, self.count)]:
                return "list(t[%d:%d])" % (first, self.count)
            return "[%s]" % ", ".join(items)
        if isinstance(con, construct.Padded):
            if not isinstance(con.length, int):
                raise CannotFlatten("Padded with a computed length")
            inner = self.flatten(con.subcon, name)
            pad = con.length - con.subcon.sizeof()
            if pad < 0:
                raise CannotFlatten("Padded smaller than its content")
            if pad:
                self.codes.append("%dx" % pad)
            return inner
        if isinstance(con, _PASS):
            return "None"
        if isinstance(con, construct.Adapter) and callable(getattr(con, "flat_decode", None)):
            function = "_f%d" % len(self.functions)
            self.functions[function] = con.flat_decode
            return "%s(%s)" % (function, self.flatten(con.subcon, name))
        if isinstance(con, construct.Struct):
            return self._struct(con, name)
        raise CannotFlatten(type(con).__name__)

    def _struct(self, con: construct.Struct, name: str) -> str:
        # one class per declaration, shared by the elements of an array of structs
        class_name = self._class_names.get(id(con))
        if class_name is None:
            class_name = self._class_names[id(con)] = "_R%d" % len(self._class_names)
        names, values = [], []
        for sub in con.subcons:
            if sub.name is None:
                # parsed and thrown away by construct: skip its bytes
                self.codes.append("%dx" % sub.sizeof())
                continue
            names.append(sub.name)
            values.append(self.flatten(sub, sub.name))
        self.classes.setdefault(class_name, record_class(name, names))
        return "_new(%s, (%s))" % (class_name, "".join(v + ", " for v in values))


def _byte_order(con: construct.Construct) -> str:
    """"<" unless every multi-byte field of ``con`` is big-endian."""
    orders = set()

    def visit(node):
        if isinstance(node, construct.FormatField) and node.length > 1:
            orders.add(_NATIVE if node.fmtstr[0] in "=@" else node.fmtstr[0])
        for child in getattr(node, "subcons", ()):
            visit(child)
        if hasattr(node, "subcon"):
            visit(node.subcon)

    visit(con)
    return ">" if orders == {">"} else "<"


# --- decoders -----------------------------------------------------------------------------


class RecordDecoder:
    """Turns record buffers into Python objects.

    ``size`` is the least number of bytes a record needs; readers count a
    shorter record as a drop instead of decoding it.
    """

    size: int
    fields: Tuple[str, ...]          # top-level field names, in order
    record_type: Optional[type] = None

    def decode(self, buffer) -> Any:
        """One record from ``buffer`` (at least :attr:`size` bytes)."""
        raise NotImplementedError

    def decode_batch(self, buffers: Iterable) -> List[Any]:
        """Every record of ``buffers``, in order; subclasses make this faster."""
        return [self.decode(buffer) for buffer in buffers]

    def decode_from(self, buffer, offsets: List[int],
                    payloads: Callable[[Any, List[int]], List[memoryview]]) -> List[Any]:
        """Decode the records whose payloads start at ``offsets`` in
        ``buffer`` (a ring); ``payloads(buffer, offsets)`` cuts them out for
        a decoder that needs each record's exact length."""
        return self.decode_batch(payloads(buffer, offsets))


class StructDecoder(RecordDecoder):
    """The fast path: one ``struct.Struct`` for the whole record.

    A flat record is made with a single ``tuple.__new__`` per record; nested
    structs, arrays and foreign-endian integers go through a small generated
    function. Buffers may be longer than ``size`` (perf pads raw samples).
    """

    def __init__(self, fmt: struct.Struct, record_type: type,
                 build: Optional[Callable[[tuple], Any]] = None, source: str = ""):
        self.format = fmt
        self.size = fmt.size
        self.record_type = record_type
        self.fields = record_type._fields
        self._build = build          # None when the unpacked tuple is the record
        self.source = source         # the generated builder, for debugging

    def decode(self, buffer) -> Any:
        """One record; a short buffer raises :class:`RecordDecodeError`."""
        try:
            values = self.format.unpack_from(buffer)
        except struct.error as exc:
            raise RecordDecodeError("%s record of %d bytes needs %d: %s"
                                    % (self.record_type.__name__, len(buffer), self.size,
                                       exc)) from None
        if self._build is None:
            return tuple.__new__(self.record_type, values)
        return self._build(values)

    def decode_batch(self, buffers: Iterable) -> List[Any]:
        """Every record, in one tight loop (the hot path of a ring reader)."""
        unpack = self.format.unpack_from
        try:
            if self._build is None:
                new, cls = tuple.__new__, self.record_type
                return [new(cls, unpack(buffer)) for buffer in buffers]
            build = self._build
            return [build(unpack(buffer)) for buffer in buffers]
        except struct.error:
            # find the culprit for the message (cold path)
            for buffer in buffers:
                self.decode(buffer)
            raise

    def decode_from(self, buffer, offsets: List[int],
                    payloads: Callable[[Any, List[int]], List[memoryview]]) -> List[Any]:
        """The hot path: no per-record slice, only ``unpack_from`` at each
        offset (the reader checked that each record is long enough)."""
        unpack = self.format.unpack_from
        if self._build is None:
            new, cls = tuple.__new__, self.record_type
            return [new(cls, unpack(buffer, offset)) for offset in offsets]
        build = self._build
        return [build(unpack(buffer, offset)) for offset in offsets]


class ConstructDecoder(RecordDecoder):
    """The slow path: ``construct`` itself, compiled when it can be."""

    def __init__(self, con: construct.Construct, reason: str = ""):
        self.construct = con
        self.reason = reason         # why the fast path was not possible
        self.fields = tuple(sub.name for sub in getattr(con, "subcons", ()) if sub.name)
        try:
            self.size = con.sizeof()
        except construct.SizeofError:
            self.size = 0
        try:
            self._parse = con.compile().parse
        except Exception:  # construct raises many types for what it cannot compile
            self._parse = con.parse

    def decode(self, buffer) -> Any:
        """One record, parsed by the construct declaration."""
        try:
            return self._parse(bytes(buffer))
        except construct.ConstructError as exc:
            raise RecordDecodeError("record of %d bytes: %s" % (len(buffer), exc)) from None


def struct_decoder(con: construct.Struct, name: str = "Record") -> StructDecoder:
    """The fast decoder for ``con``; raises :class:`CannotFlatten` when some
    field has no ``struct`` equivalent."""
    if not isinstance(con, construct.Struct):
        raise CannotFlatten("not a Struct: %s" % type(con).__name__)
    flat = _Flattener(_byte_order(con))
    expr = flat._struct(con, name)
    fmt = struct.Struct(flat.order + "".join(flat.codes))
    if fmt.size != con.sizeof():
        raise CannotFlatten("struct size %d differs from construct's %d"
                            % (fmt.size, con.sizeof()))
    record_type = flat.classes["_R0"]
    plain = "_new(_R0, (%s))" % "".join("t[%d], " % i for i in range(flat.count))
    if expr == plain:
        return StructDecoder(fmt, record_type)
    source = "def build(t):\n    return %s\n" % expr
    namespace: Dict[str, Any] = dict(flat.classes, **flat.functions, _new=tuple.__new__,
                                     _from_bytes=int.from_bytes)
    exec(compile(source, "<decoder %s>" % name, "exec"), namespace)
    return StructDecoder(fmt, record_type, namespace["build"], source)


def decoder_for(con: construct.Construct, name: str = "Record") -> RecordDecoder:
    """The fastest decoder that gives the same values as ``con.parse``."""
    try:
        return struct_decoder(con, name)
    except (CannotFlatten, construct.SizeofError) as exc:
        return ConstructDecoder(con, reason=str(exc))

