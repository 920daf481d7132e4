"""Where each type record of a BTF blob starts, and which types carry which
name, found in one pass and kept in an on-disk cache.

BTF records have variable length, so type id N can only be found by walking
records 1..N-1. The kernel's BTF holds ~130,000 types; decoding them all into
Python objects takes far longer than a program's start-up can afford, while
the walk alone (one ``struct.unpack_from`` per record) takes ~35 ms. The walk
yields flat ``array('I')`` columns that load from the cache in about a
millisecond: record offsets by type id, and the named types sorted by name,
so a name is found by bisection (scanning the 2 MB string section for it
would cost a millisecond per look-up).

The cache is keyed by the SHA-256 of the BTF bytes (and of its base, for
split BTF), so a new kernel or module never meets a stale index. A cache file
that is unreadable, truncated or fails its CRC is ignored and rewritten;
writes go to a temporary file renamed into place, so readers never see half
a file. The offsets it leads to decide what root loads into the kernel, so a
cache is used only from a directory private to the effective user or root
(:mod:`pybpf.safe_files`); as root the default is ``/var/cache/pybpf``.
Nothing here decodes types: that is :mod:`pybpf.kernel.btf`.
"""

import logging
import os
import zlib
from array import array
from typing import Callable, NamedTuple, Optional

from construct import Bytes, ConstructError, Int32un, Struct

from .. import safe_files
from .btf_format import RECORD_SIZES, TYPE_STRUCT, BTFParseError, btf_info_kind, btf_info_vlen

log = logging.getLogger(__name__)

INDEX_CACHE_VERSION = 1
_INDEX_CACHE_MAGIC = b"PYBPFIDX"

# Cache file: this header, then the columns of TypeIndex (u32, native order):
# offsets (count items), name_offs and name_ids (named items each). crc32
# covers the columns.
index_cache_header = Struct(
    "magic" / Bytes(8),
    "version" / Int32un,
    "count" / Int32un,
    "named" / Int32un,
    "crc32" / Int32un,
    "digest" / Bytes(32),        # SHA-256 of the BTF (see BTF.digest)
)


class TypeIndex(NamedTuple):
    """Columns over a BTF's own types; position i is type id ``start_id + i``."""

    offsets: array      # byte offset of each record in the type section
    name_offs: array    # name offsets of the named types, sorted by the names' bytes
    name_ids: array     # position (as above) of the type named by name_offs[j]


def build_index(types: memoryview, str_end: int, name_bytes: Callable[[int], bytes],
                types_file_off: int, start_id: int, source: str) -> TypeIndex:
    """Walk the type section once, checking what the walk depends on.

    Each record's kind must be defined (its length depends on it), its name
    offset must fall inside the string section (``str_end`` bytes, counting a
    base BTF's strings; ``name_bytes`` reads a name there), and the last
    record must end exactly at the end of the section. Errors name the byte
    offset in the file.
    """
    offsets = array("I")
    names = array("I")
    add_offset, add_name = offsets.append, names.append
    unpack = TYPE_STRUCT.unpack_from
    header_size = TYPE_STRUCT.size
    sizes = RECORD_SIZES
    end = len(types)
    off = 0
    while off < end:
        if off + header_size > end:
            raise BTFParseError(source, types_file_off + off,
                                "type id %d: btf_type record is cut short (%d of %d bytes)"
                                % (start_id + len(offsets), end - off, header_size))
        name_off, info, _ = unpack(types, off)
        record = sizes[btf_info_kind(info)]
        if record is None:
            raise BTFParseError(source, types_file_off + off, "type id %d: unknown kind %d"
                                % (start_id + len(offsets), btf_info_kind(info)))
        if name_off >= str_end:
            raise BTFParseError(source, types_file_off + off,
                                "type id %d: name offset %d is beyond the string section "
                                "(%d bytes)" % (start_id + len(offsets), name_off, str_end))
        add_offset(off)
        add_name(name_off)
        off += record[0] + btf_info_vlen(info) * record[1]
    if off != end:
        last = offsets[-1]
        raise BTFParseError(source, types_file_off + last,
                            "type id %d: record of %d bytes runs %d bytes past the end of the "
                            "type section" % (start_id + len(offsets) - 1, off - last, off - end))
    order = sorted((i for i in range(len(names)) if names[i]),
                   key=lambda i: name_bytes(names[i]))
    return TypeIndex(offsets, array("I", [names[i] for i in order]), array("I", order))


def default_cache_dir() -> str:
    """``/var/cache/pybpf`` for root, else ``$XDG_CACHE_HOME/pybpf`` or
    ``~/.cache/pybpf`` (see :func:`pybpf.safe_files.default_cache_dir`)."""
    return safe_files.default_cache_dir("pybpf")


def _cache_name(digest: bytes) -> str:
    return "btf-%s.idx" % digest.hex()


def load_cached(cache_dir: str, digest: bytes) -> Optional[TypeIndex]:
    """The index stored for the BTF with this digest, or None when there is
    none, the file is not one we wrote whole, or the directory or file is
    not private to us or root (the offsets decide what root loads)."""
    try:
        dir_fd = safe_files.open_private_dir(cache_dir)
    except OSError as exc:
        log.debug("not using the BTF index cache %s: %s", cache_dir, exc)
        return None
    try:
        blob = safe_files.read_private_file(dir_fd, _cache_name(digest))
    except OSError as exc:
        log.debug("ignoring the BTF index cache in %s: %s", cache_dir, exc)
        return None
    finally:
        os.close(dir_fd)
    if blob is None:
        return None
    try:
        head = index_cache_header.parse(blob)
    except ConstructError:
        head = None
    size = index_cache_header.sizeof()
    if (head is None or head.magic != _INDEX_CACHE_MAGIC or head.version != INDEX_CACHE_VERSION
            or head.digest != digest or len(blob) != size + 4 * (head.count + 2 * head.named)
            or zlib.crc32(memoryview(blob)[size:]) != head.crc32):
        log.debug("ignoring invalid BTF index cache %s", _cache_name(digest))
        return None
    columns = []
    start = size
    for length in (head.count, head.named, head.named):
        column = array("I")
        column.frombytes(blob[start:start + 4 * length])
        columns.append(column)
        start += 4 * length
    return TypeIndex(*columns)


def store_cached(cache_dir: str, digest: bytes, index: TypeIndex) -> None:
    """Write the index atomically into the private directory ``cache_dir``
    (made 0700 if missing); failing to write only costs speed, so errors
    are logged, not raised."""
    payload = b"".join(column.tobytes() for column in index)
    head = index_cache_header.build(dict(
        magic=_INDEX_CACHE_MAGIC, version=INDEX_CACHE_VERSION, count=len(index.offsets),
        named=len(index.name_ids), crc32=zlib.crc32(payload), digest=digest))
    try:
        dir_fd = safe_files.open_private_dir(cache_dir, create=True)
    except OSError as exc:
        log.debug("not writing the BTF index cache in %s: %s", cache_dir, exc)
        return
    try:
        safe_files.write_private_file(dir_fd, _cache_name(digest), head + payload)
    except OSError as exc:
        log.debug("cannot write BTF index cache in %s: %s", cache_dir, exc)
    finally:
        os.close(dir_fd)
