"""Decoding the kernel side's records, from the same declarations it writes.

Records are told apart by their first byte (``REC_*`` in
:mod:`pybpf.programs.lib_sniffwrites_records`). Fixed-size records (``Io``,
``Agg``) use the fast struct decoder of :mod:`pybpf.kernel.records`; the
variable-size ones (``FileRec``, ``Text``) decode their fixed header the
same way and take the string after it by the length in the header.

The hot path (:class:`sniffwrites.process.Processor`) uses the plain
``struct.Struct`` of each decoder: a tuple per record, fields by position
(``IO_FIELDS`` names them), which is cheaper than a record object.
"""

import struct
from typing import Any, Dict, Tuple

import construct

from pybpf.kernel.records import decoder_for
from sniffwrites.bpf import records


def header_struct(layout: Any, stop: str) -> struct.Struct:
    """The ``struct`` format of ``layout``'s fields before ``stop`` (the
    variable-length tail), with the same padding."""
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
    decoder = decoder_for(construct.Struct(*parts), layout.name + "Header")
    fmt = getattr(decoder, "format", None)
    if fmt is None or fmt.size != tail:
        raise TypeError("%s header does not flatten to a struct format" % layout.name)
    return fmt


def _fixed(cls: Any) -> Tuple[struct.Struct, Tuple[str, ...]]:
    decoder = decoder_for(cls.construct(), cls.__name__)
    fmt = getattr(decoder, "format", None)
    if fmt is None or decoder.size != cls.layout.size:
        raise TypeError("%s does not flatten to a struct format" % cls.__name__)
    return fmt, decoder.fields


IO_STRUCT, IO_FIELDS = _fixed(records.Io)
AGG_STRUCT, AGG_FIELDS = _fixed(records.Agg)
FILE_STRUCT = header_struct(records.FileRec.layout, "path")
FILE_FIELDS = tuple(n for n in records.FileRec.layout.fields if n != "path")
TEXT_STRUCT = header_struct(records.Text.layout, "text")
TEXT_FIELDS = tuple(n for n in records.Text.layout.fields if n != "text")

#: Positions in the IO tuple, by name (``t[IO.fd]``).
IO: Any = type("IOIndex", (), {name: i for i, name in enumerate(IO_FIELDS)})
AGG: Any = type("AggIndex", (), {name: i for i, name in enumerate(AGG_FIELDS)})
FILE: Any = type("FileIndex", (), {name: i for i, name in enumerate(FILE_FIELDS)})
TEXT: Any = type("TextIndex", (), {name: i for i, name in enumerate(TEXT_FIELDS)})


def decode(view: Any) -> Dict[str, Any]:
    """One record as a dict (for tests and ``--debug``; not the hot path)."""
    kind = view[0]
    if kind == records.REC_IO:
        out = dict(zip(IO_FIELDS, IO_STRUCT.unpack_from(view)))
        if out["cap_len"]:
            start = IO_STRUCT.size
            out["data"] = bytes(view[start:start + out["cap_len"]])
        return out
    if kind == records.REC_AGG:
        return dict(zip(AGG_FIELDS, AGG_STRUCT.unpack_from(view)))
    if kind == records.REC_FILE:
        out = dict(zip(FILE_FIELDS, FILE_STRUCT.unpack_from(view)))
        start = FILE_STRUCT.size
        out["path"] = bytes(view[start:start + out["path_len"]])
        return out
    if kind == records.REC_TEXT:
        out = dict(zip(TEXT_FIELDS, TEXT_STRUCT.unpack_from(view)))
        start = TEXT_STRUCT.size
        out["text"] = bytes(view[start:start + max(out["length"] - 1, 0)])
        return out
    raise ValueError("unknown record kind %d" % kind)


def comm_of(raw: bytes) -> bytes:
    """A ``char[16]`` comm without its NUL padding."""
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]
