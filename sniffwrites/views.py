"""The kernel's records as userspace reads them: one view per kind, from the one declaration.

Records are told apart by their first byte (``REC_*`` in
:mod:`sniffwrites.bpf.records`). Each kind has one view class, a tuple with
a named field per field of its declaration (made by
:func:`pybpf.kernel.records.decoder_for` from the same ``Struct`` the
kernel side stores to), read in place from the ring with one
``unpack_from``: :func:`io_view`, :func:`agg_view`, :func:`extent_view`
(an Io's fields, then its Extent's), and for the
variable-size kinds :func:`file_view` (the header, then ``path`` by
``path_len``) and :func:`text_view` (``text`` by ``length``). ``IoView``
also names the meanings of ``Io.aux`` (``io.open_flags``, ``io.length``,
...: :data:`~sniffwrites.bpf.records.IO_AUX_MEANINGS`).

:data:`IO_HOT` is the same Io layout cut for the hot path of
:mod:`sniffwrites.pipeline`: (bytes before ``ts``, ``ts``, ``ret``, bytes
after ``ret``).
"""

import struct
from operator import itemgetter
from typing import Any, Dict, Optional, Tuple

import construct

from pybpf.kernel.records import StructDecoder, decoder_for

from .bpf.records import (FILE_HEADER, IO_AUX_MEANINGS, REC_AGG, REC_EXTENT, REC_FILE, REC_IO,
                          REC_TEXT, TEXT_HEADER, Agg, Extent, FileRec, Io, IoExtent, Text)

_new = tuple.__new__


def _decoder(con: Any, name: str, size: int) -> StructDecoder:
    decoder = decoder_for(con, name)
    if not isinstance(decoder, StructDecoder) or decoder.size != size \
            or decoder.source:      # a view is the unpacked tuple itself
        raise TypeError("%s does not flatten to a struct format of %d bytes" % (name, size))
    return decoder


def _header(layout: Any, stop: str) -> construct.Struct:
    """``layout``'s fields before ``stop`` (the variable-length tail), with
    the same padding, as a construct."""
    parts = []
    position = 0
    for name, f in layout.fields.items():
        if name == stop:
            break
        if f.offset > position:
            parts.append(construct.Padding(f.offset - position))
        parts.append(name / f.type.construct())
        position = f.offset + f.type.size
    tail = layout.fields[stop].offset
    if tail > position:
        parts.append(construct.Padding(tail - position))
    return construct.Struct(*parts)


def _view_class(name: str, base: type, extra: Tuple[str, ...] = (),
                aliases: Optional[Dict[str, str]] = None) -> type:
    """A view class: ``base``'s named fields, ``extra`` ones after them,
    and ``aliases`` (another name for a field)."""
    fields = base._fields + extra
    namespace: Dict[str, Any] = {"__slots__": (), "_fields": fields}
    for index, field in enumerate(extra, len(base._fields)):
        namespace[field] = property(itemgetter(index))
    for alias, field in (aliases or {}).items():
        namespace[alias] = property(itemgetter(fields.index(field)))
    return type(name, (base,), namespace)


_IO = _decoder(Io.construct(), "Io", Io.layout.size)
_AGG = _decoder(Agg.construct(), "Agg", Agg.layout.size)
_FILE = _decoder(_header(FileRec.layout, "path"), "FileRec", FILE_HEADER)
_TEXT = _decoder(_header(Text.layout, "text"), "Text", TEXT_HEADER)
_EXTENT = _decoder(Extent.construct(), "Extent", Extent.layout.size)
if IoExtent.layout.fields["extent"].offset != Io.layout.size:
    raise TypeError("IoExtent: its Extent does not follow the Io directly")

IoView = _view_class("IoView", _IO.record_type,
                     aliases={meaning: "aux" for meaning in IO_AUX_MEANINGS.values()})
AggView = _AGG.record_type
IoExtentView = _view_class("IoExtentView", IoView, _EXTENT.fields)
FileView = _view_class("FileView", _FILE.record_type, ("path",))
TextView = _view_class("TextView", _TEXT.record_type, ("text",))

#: The ``struct`` formats of the records (of the fixed part, for the
#: variable-size ones), in the order of the declarations' fields.
IO_FORMAT, AGG_FORMAT = _IO.format, _AGG.format
FILE_HEADER_FORMAT, TEXT_HEADER_FORMAT = _FILE.format, _TEXT.format
IO_SIZE = _IO.size
#: The shortest record of any kind (a Text header): what the reader checks.
MIN_RECORD_SIZE = min(_IO.size, _AGG.size, _FILE.size, _TEXT.size)

_io = IO_FORMAT.unpack_from
_agg = AGG_FORMAT.unpack_from
_file = FILE_HEADER_FORMAT.unpack_from
_text = TEXT_HEADER_FORMAT.unpack_from
_extent = _EXTENT.format.unpack_from
_PATH_LEN = _FILE.fields.index("path_len")
_TEXT_LENGTH = _TEXT.fields.index("length")


def io_view(buffer: Any, at: int) -> Any:
    return _new(IoView, _io(buffer, at))


def agg_view(buffer: Any, at: int) -> Any:
    return _new(AggView, _agg(buffer, at))


def extent_view(buffer: Any, at: int) -> Any:
    return _new(IoExtentView, _io(buffer, at) + _extent(buffer, at + IO_SIZE))


def file_view(buffer: Any, at: int) -> Any:
    header = _file(buffer, at)
    start = at + FILE_HEADER
    return _new(FileView, header + (bytes(buffer[start:start + header[_PATH_LEN]]),))


def text_view(buffer: Any, at: int) -> Any:
    """The string without its NUL (``length`` counts it)."""
    header = _text(buffer, at)
    start = at + TEXT_HEADER
    text = bytes(buffer[start:start + max(header[_TEXT_LENGTH] - 1, 0)])
    return _new(TextView, header + (text,))


def captured(buffer: Any, at: int, io: Any) -> bytes:
    """The data a ``--capture`` Io record carries after itself."""
    start = at + IO_SIZE
    return bytes(buffer[start:start + io.cap_len])


def _hot_format() -> struct.Struct:
    """Io as (bytes before ts, ts, ret, bytes after ret), from the declaration."""
    fields = Io.layout.fields
    ts, ret = fields["ts"], fields["ret"]
    if ret.offset != ts.offset + ts.type.size:
        raise TypeError("Io.ts and Io.ret are not adjacent: the hot path needs them so")
    end = ret.offset + ret.type.size
    con = construct.Struct("head" / construct.Bytes(ts.offset), "ts" / ts.type.construct(),
                           "ret" / ret.type.construct(),
                           "tail" / construct.Bytes(Io.layout.size - end))
    return _decoder(con, "IoHot", Io.layout.size).format


IO_HOT = _hot_format()

_VIEWS = {REC_IO: io_view, REC_AGG: agg_view, REC_FILE: file_view, REC_TEXT: text_view,
          REC_EXTENT: extent_view}


def view(buffer: Any, at: int = 0) -> Any:
    """The record at ``at`` in ``buffer`` as its kind's view (``--debug``
    and tests; the pipeline calls the one it needs)."""
    try:
        return _VIEWS[buffer[at]](buffer, at)
    except KeyError:
        raise ValueError("unknown record kind %d" % buffer[at]) from None


def comm_of(raw: bytes) -> bytes:
    """A ``char[16]`` comm without its NUL padding."""
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]
