"""Tracepoint format files -> context struct layouts.

A tracepoint program's context is the event record the kernel writes, whose
layout the kernel publishes in ``<tracefs>/events/<category>/<name>/format``.
This module finds tracefs (mounting it when absent, as on a fresh machine),
parses that file into a :class:`TracepointFormat` (field names, offsets,
sizes, signedness and the tracepoint id), and nothing else: it does not
attach programs (that is :mod:`pybpf.kernel.link`) and does not generate
code (the DSL reads these layouts for ``ctx.<field>`` access).

>>> fmt = parse_format('''name: sys_enter_getppid
... ID: 305
... format:
... \\tfield:unsigned short common_type;\\toffset:0;\\tsize:2;\\tsigned:0;
... \\tfield:int __syscall_nr;\\toffset:8;\\tsize:4;\\tsigned:1;
... ''', category="syscalls")
>>> fmt.id, fmt.field("__syscall_nr").offset, fmt.field("__syscall_nr").signed
(305, 8, True)
"""

import errno as _errno
import os
import re
from typing import Dict, Iterable, NamedTuple, Optional, Tuple

from ..errors import NotFoundError, PyBPFError
from . import mounts

TRACEFS_MOUNT_POINT = "/sys/kernel/tracing"
# Before Linux 4.1 tracefs lived only under debugfs; some systems still only
# mount it there.
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"


class FormatParseError(PyBPFError, ValueError):
    """A format file that does not read like the kernel's (line number and text)."""


class Field(NamedTuple):
    """One field of a tracepoint record, as the format file declares it.

    ``type`` is the C declaration without the name (``"char[16]"`` for an
    array, ``"__data_loc char[]"`` for a dynamic string). ``size`` is what
    the kernel stores and wins over the C type: syscall tracepoints declare
    ``int dfd`` but store 8 bytes.
    """

    name: str
    type: str
    offset: int
    size: int
    signed: bool
    array_len: Optional[int] = None  # N for ``name[N]``; None for scalars

    @property
    def is_dynamic(self) -> bool:
        """A ``__data_loc``/``__rel_loc`` field: a u32 (length << 16 | offset)
        pointing at variable-length data after the fixed part."""
        return self.type.startswith(("__data_loc", "__rel_loc"))

    @property
    def element_size(self) -> int:
        """The size of one element of an array field, else of the field."""
        return self.size // self.array_len if self.array_len else self.size


class TracepointFormat(NamedTuple):
    """The layout of one tracepoint's record."""

    category: str
    name: str
    id: int
    fields: Tuple[Field, ...]

    @property
    def size(self) -> int:
        """Bytes of the fixed part of the record (dynamic data follows it)."""
        return max((f.offset + f.size for f in self.fields), default=0)

    @property
    def event_fields(self) -> Tuple[Field, ...]:
        """The fields of this event, without the ``common_*`` header every event has."""
        return tuple(f for f in self.fields if not f.name.startswith("common_"))

    def field(self, name: str) -> Field:
        """The field ``name`` of the record (``KeyError`` naming the fields when absent)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError("tracepoint %s/%s has no field %r (fields: %s)"
                       % (self.category, self.name, name,
                          ", ".join(f.name for f in self.fields)))

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.fields)


# "field:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;"
_FIELD_LINE = re.compile(r"field:(?P<decl>[^;]*);\s*offset:(?P<offset>\d+);\s*"
                         r"size:(?P<size>\d+);(?:\s*signed:(?P<signed>\d+);)?")
# the name is the last identifier of the declaration, possibly with [N] after it
_DECL = re.compile(r"^(?P<type>.*?)\s*\b(?P<name>[A-Za-z_]\w*)\s*(?:\[(?P<len>\w*)\])?\s*$")


def parse_field(decl: str, offset: int, size: int, signed: bool) -> Field:
    """A :class:`Field` from the declaration part of a ``field:`` line."""
    match = _DECL.match(decl.strip())
    if not match or not match.group("type"):
        raise ValueError("cannot find a type and a name in %r" % decl)
    ftype, name, length = match.group("type", "name", "len")
    array_len = None
    if length is not None:
        ftype += "[%s]" % length
        # "[]" (dynamic) or a symbolic bound has no usable element count.
        array_len = int(length, 0) if length[:1].isdigit() else None
    return Field(name, ftype, offset, size, signed, array_len)


def parse_format(text: str, category: str = "", name: str = "") -> TracepointFormat:
    """Parse the text of a tracepoint ``format`` file.

    ``category`` is not in the file; ``name`` is taken from the file when
    not given. Unknown lines (``print fmt:``) are ignored.
    """
    tp_id: Optional[int] = None
    fields = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        try:
            if stripped.startswith("name:") and not name:
                name = stripped[5:].strip()
            elif stripped.startswith("ID:"):
                tp_id = int(stripped[3:].strip())
            elif stripped.startswith("field:"):
                match = _FIELD_LINE.match(stripped)
                if not match:
                    raise ValueError("not a field line")
                fields.append(parse_field(match.group("decl"), int(match.group("offset")),
                                          int(match.group("size")),
                                          match.group("signed") == "1"))
        except ValueError as exc:
            raise FormatParseError("format of tracepoint %s/%s, line %d: %s (in %r)"
                                   % (category, name, lineno, exc, stripped)) from None
    if tp_id is None:
        raise FormatParseError("format of tracepoint %s/%s has no ID line" % (category, name))
    return TracepointFormat(category, name, tp_id, tuple(fields))


def tracefs_root(mount: bool = True, candidates: Iterable[str] = (TRACEFS_MOUNT_POINT,
                                                                   DEBUGFS_TRACING)) -> str:
    """The directory where tracefs is mounted.

    Looks for a mounted tracefs (wherever it is), then for one of the
    ``candidates`` that has ``events/``; failing both and when ``mount`` is
    true, mounts tracefs at ``/sys/kernel/tracing``. Raises
    :class:`NotFoundError` (or the mount's own error) otherwise.
    """
    mounted = mounts.find_mount("tracefs")
    if mounted and os.path.isdir(os.path.join(mounted, "events")):
        return mounted
    for path in candidates:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    if mount:
        return mounts.ensure_mounted("tracefs", TRACEFS_MOUNT_POINT)
    raise NotFoundError(_errno.ENOENT, "find tracefs",
                        "tracefs is not mounted (looked in %s); mount it with: "
                        "mount -t tracefs tracefs %s"
                        % (", ".join(candidates), TRACEFS_MOUNT_POINT))


def split_name(tracepoint: str) -> Tuple[str, str]:
    """``"syscalls/sys_enter_openat"`` (or ``"syscalls:sys_enter_openat"``,
    perf's spelling) -> ``("syscalls", "sys_enter_openat")``."""
    category, sep, name = tracepoint.replace(":", "/").partition("/")
    if not sep or not category or not name or "/" in name:
        raise ValueError("a tracepoint is named 'category/name', not %r" % tracepoint)
    return category, name


_cache: Dict[Tuple[str, str, str], TracepointFormat] = {}


def tracepoint_format(category: str, name: str, root: Optional[str] = None) -> TracepointFormat:
    """The parsed format of ``category/name`` (cached: formats do not change
    while the kernel runs, except for modules, which we do not trace).

    A missing tracepoint raises :class:`NotFoundError` naming it and where
    it was looked for.
    """
    root = root or tracefs_root()
    key = (root, category, name)
    if key not in _cache:
        path = os.path.join(root, "events", category, name, "format")
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            hint = ""
            if not os.path.isdir(os.path.join(root, "events", category)):
                hint = " (there is no category %r)" % category
            raise NotFoundError(_errno.ENOENT, "find tracepoint",
                                "tracepoint %s/%s does not exist: no %s%s"
                                % (category, name, path, hint)) from None
        _cache[key] = parse_format(text, category, name)
    return _cache[key]


def tracepoint_id(category: str, name: str, root: Optional[str] = None) -> int:
    """The id that ``perf_event_open(PERF_TYPE_TRACEPOINT)`` takes as ``config``."""
    return tracepoint_format(category, name, root).id
