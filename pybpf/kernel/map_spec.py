"""What a map type is, and how to ask the kernel for a new map.

The table of map types (which sizes each fixes, whether it is per-CPU,
indexed, keyless, deletable, and which Linux version added it), the
options object :class:`MapSpec`, and the translation of a spec into
``BPF_MAP_CREATE``'s attr, plus the error that explains a refusal. The
``Map`` that uses the result lives in ``maps``.
"""

import errno as _errno
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from ..errors import (ENOTSUPP, PRIVILEGE_HINT, BPFError, BPFPermissionError, UnsupportedFeature,
                      strerror)
from ..consts import (BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_F_NUMA_NODE, BPF_MAP_TYPE_ARENA,
                      BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_BLOOM_FILTER,
                      BPF_MAP_TYPE_CGROUP_ARRAY, BPF_MAP_TYPE_CGROUP_STORAGE,
                      BPF_MAP_TYPE_CGRP_STORAGE, BPF_MAP_TYPE_CPUMAP, BPF_MAP_TYPE_DEVMAP,
                      BPF_MAP_TYPE_DEVMAP_HASH, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_HASH_OF_MAPS,
                      BPF_MAP_TYPE_INODE_STORAGE, BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_LRU_HASH,
                      BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
                      BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE, BPF_MAP_TYPE_PERCPU_HASH,
                      BPF_MAP_TYPE_PERF_EVENT_ARRAY, BPF_MAP_TYPE_PROG_ARRAY, BPF_MAP_TYPE_QUEUE,
                      BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, BPF_MAP_TYPE_RINGBUF,
                      BPF_MAP_TYPE_SK_STORAGE, BPF_MAP_TYPE_SOCKHASH, BPF_MAP_TYPE_SOCKMAP,
                      BPF_MAP_TYPE_STACK, BPF_MAP_TYPE_STACK_TRACE, BPF_MAP_TYPE_STRUCT_OPS,
                      BPF_MAP_TYPE_TASK_STORAGE, BPF_MAP_TYPE_USER_RINGBUF, BPF_MAP_TYPE_XSKMAP,
                      MAP_TYPES)
from . import sys
from .feature_test import (ABSENT, BTF_INT, BTF_LONG, PRESENT, YES, Answer, FeatureTest, load_btf,
                           minimal_btf)
from .map_codecs import Codec, KeyType, possible_cpus
from .sys import FD

UNSUPPORTED_ERRNOS = (_errno.EINVAL, _errno.EOPNOTSUPP, ENOTSUPP)
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --- what each map type is --------------------------------------------------------------

@dataclass(frozen=True)
class MapKind:
    """What a map type allows, and the Linux version that added it.

    ``indexed``: keys are the u32 indexes 0..max_entries-1, always present;
    ``deletable``: delete works (false for plain arrays);
    ``keyless``: queue/stack/bloom filter: push, pop, peek, no keys;
    ``no_elements``: ring buffers: no element calls at all from userspace;
    ``fd_values``: values written are fds (read back as ids where readable).
    ``key_size``/``value_size``: sizes the type requires, when it fixes them.
    """
    since: str
    percpu: bool = False
    indexed: bool = False
    deletable: bool = True
    keyless: bool = False
    no_elements: bool = False
    fd_values: bool = False
    key_size: Optional[int] = None
    value_size: Optional[int] = None


_FD_ARRAY = dict(indexed=True, fd_values=True, key_size=4, value_size=4)
_RING = dict(no_elements=True, key_size=0, value_size=0)

KINDS: Dict[int, MapKind] = {
    BPF_MAP_TYPE_HASH: MapKind("3.19"),
    BPF_MAP_TYPE_ARRAY: MapKind("3.19", indexed=True, deletable=False, key_size=4),
    BPF_MAP_TYPE_PROG_ARRAY: MapKind("4.2", **_FD_ARRAY),
    BPF_MAP_TYPE_PERF_EVENT_ARRAY: MapKind("4.3", **_FD_ARRAY),
    BPF_MAP_TYPE_PERCPU_HASH: MapKind("4.6", percpu=True),
    BPF_MAP_TYPE_PERCPU_ARRAY: MapKind("4.6", percpu=True, indexed=True, deletable=False,
                                       key_size=4),
    BPF_MAP_TYPE_STACK_TRACE: MapKind("4.6", key_size=4),
    BPF_MAP_TYPE_CGROUP_ARRAY: MapKind("4.8", **_FD_ARRAY),
    BPF_MAP_TYPE_LRU_HASH: MapKind("4.10"),
    BPF_MAP_TYPE_LRU_PERCPU_HASH: MapKind("4.10", percpu=True),
    BPF_MAP_TYPE_LPM_TRIE: MapKind("4.11"),
    BPF_MAP_TYPE_ARRAY_OF_MAPS: MapKind("4.12", **_FD_ARRAY),
    BPF_MAP_TYPE_HASH_OF_MAPS: MapKind("4.12", fd_values=True, value_size=4),
    BPF_MAP_TYPE_DEVMAP: MapKind("4.14", indexed=True, key_size=4),
    BPF_MAP_TYPE_SOCKMAP: MapKind("4.14", indexed=True, fd_values=True, key_size=4),
    BPF_MAP_TYPE_CPUMAP: MapKind("4.15", indexed=True, key_size=4),
    BPF_MAP_TYPE_XSKMAP: MapKind("4.18", indexed=True, fd_values=True, key_size=4),
    BPF_MAP_TYPE_SOCKHASH: MapKind("4.18", fd_values=True),
    BPF_MAP_TYPE_CGROUP_STORAGE: MapKind("4.19"),
    BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: MapKind("4.19", indexed=True, fd_values=True, key_size=4),
    BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE: MapKind("4.20", percpu=True),
    BPF_MAP_TYPE_QUEUE: MapKind("4.20", keyless=True, key_size=0),
    BPF_MAP_TYPE_STACK: MapKind("4.20", keyless=True, key_size=0),
    BPF_MAP_TYPE_SK_STORAGE: MapKind("5.2"),
    BPF_MAP_TYPE_DEVMAP_HASH: MapKind("5.4"),
    BPF_MAP_TYPE_STRUCT_OPS: MapKind("5.6"),
    BPF_MAP_TYPE_RINGBUF: MapKind("5.8", **_RING),
    BPF_MAP_TYPE_INODE_STORAGE: MapKind("5.10"),
    BPF_MAP_TYPE_TASK_STORAGE: MapKind("5.11"),
    BPF_MAP_TYPE_BLOOM_FILTER: MapKind("5.16", keyless=True, key_size=0),
    BPF_MAP_TYPE_USER_RINGBUF: MapKind("6.1", **_RING),
    BPF_MAP_TYPE_CGRP_STORAGE: MapKind("6.2"),
    BPF_MAP_TYPE_ARENA: MapKind("6.9", no_elements=True, key_size=0, value_size=0),
}
UNKNOWN_KIND = MapKind("?")

MAP_TYPE_SINCE: Dict[int, str] = {t: kind.since for t, kind in KINDS.items()}
"""Map type -> first Linux version that has it (for messages and feature probes)."""


# --- creating -------------------------------------------------------------------------------

@dataclass
class MapSpec:
    """What to create (and, in a :class:`pybpf.spec.CollectionSpec`, what
    may be changed before loading: ``spec.maps["events"].max_entries = n``).
    ``map_type`` is a ``BPF_MAP_TYPE_*`` value or name (``"hash"``). Sizes the type fixes may be left out (arrays: key_size 4;
    perf event / prog arrays: 4 and 4, max_entries = possible CPUs for perf
    event arrays; queue/stack: key_size 0; ring buffers: 0 and 0). A
    construct key or value gives its size too. ``name`` is kept in full on the
    Python side; the kernel gets its first 15 valid bytes.

    LPM tries get ``BPF_F_NO_PREALLOC`` added: the kernel requires it.

    ``btf`` (anything with ``fileno()``, normally a loaded BTF object) and the
    key/value type ids in it describe keys and values to the kernel, so that
    ``bpftool map dump`` prints them as structs. The map keeps its own
    reference to the BTF: the caller may close it once the map exists.

    ``inner`` is the template of a map-of-maps' inner maps (a map like it is
    made for the create call and closed again); ``map_extra`` is
    ``BPF_MAP_CREATE``'s field of that name (a bloom filter's hash count).
    Used by :class:`pybpf.loader.Collection` only: ``contents``, the slots a
    map-of-maps or prog array starts with (``{index: name}`` of another map
    or a program of the collection), and ``pin_path``, where the map is
    pinned (an existing compatible pin there is reused instead, as libbpf
    does).
    """
    map_type: Union[int, str]
    key_size: Optional[int] = None
    value_size: Optional[int] = None
    max_entries: Optional[int] = None
    name: str = ""
    flags: int = 0
    key: KeyType = None
    value: KeyType = None
    numa_node: Optional[int] = None
    btf: Optional[Any] = None
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    inner: Optional["MapSpec"] = None
    map_extra: int = 0
    contents: Dict[int, str] = field(default_factory=dict)
    pin_path: Optional[str] = None

    @property
    def type_value(self) -> int:
        """``map_type`` as its ``BPF_MAP_TYPE_*`` value (``KeyError`` for an
        unknown name)."""
        if isinstance(self.map_type, str):
            return MAP_TYPES.value(self.map_type)
        return self.map_type


def _size(spec_size: Optional[int], fixed: Optional[int], codec: KeyType, role: str,
          type_name: str) -> int:
    if spec_size is None:
        spec_size = fixed
    if spec_size is None and hasattr(codec, "sizeof"):
        spec_size = codec.sizeof()
    if spec_size is None and isinstance(codec, Codec):
        spec_size = codec.size
    if spec_size is None:
        raise ValueError("%s needs %s_size (or a sized %s type)" % (type_name, role, role))
    if fixed is not None and spec_size != fixed:
        raise ValueError("%s requires %s_size %d, not %d" % (type_name, role, fixed, spec_size))
    return spec_size


def _check_ring_size(type_name: str, max_entries: int) -> None:
    if max_entries <= 0 or max_entries & (max_entries - 1) or max_entries % _PAGE_SIZE:
        raise ValueError("%s max_entries is the buffer size in bytes and must be a power of two "
                         "and a multiple of the page size (%d), e.g. %d; got %d"
                         % (type_name, _PAGE_SIZE, 64 * _PAGE_SIZE, max_entries))


def create_attr(spec: MapSpec, map_type: int) -> sys.MapCreateAttr:
    """``BPF_MAP_CREATE``'s attr for ``spec``, with the sizes the type fixes
    filled in; ``ValueError`` for a spec the type cannot have."""
    kind = KINDS.get(map_type, UNKNOWN_KIND)
    type_name = MAP_TYPES.name(map_type)
    key_size = _size(spec.key_size, kind.key_size, spec.key, "key", type_name)
    value_size = _size(spec.value_size, kind.value_size, spec.value, "value", type_name)
    max_entries = spec.max_entries
    if max_entries is None and map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY:
        max_entries = len(possible_cpus())
    if max_entries is None:
        raise ValueError("%s needs max_entries" % type_name)
    flags = spec.flags
    if map_type == BPF_MAP_TYPE_LPM_TRIE:
        flags |= BPF_F_NO_PREALLOC
    if kind.no_elements and map_type != BPF_MAP_TYPE_ARENA:
        _check_ring_size(type_name, max_entries)
    attr = sys.MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                             max_entries=max_entries, map_flags=flags,
                             map_name=sys.obj_name(spec.name), map_extra=spec.map_extra)
    if spec.numa_node is not None:
        attr.map_flags |= BPF_F_NUMA_NODE
        attr.numa_node = spec.numa_node
    if spec.btf is not None:
        if not spec.btf_value_type_id:
            raise ValueError("map %r: btf given without btf_value_type_id" % spec.name)
        attr.btf_fd = spec.btf.fileno()
        attr.btf_key_type_id = spec.btf_key_type_id
        attr.btf_value_type_id = spec.btf_value_type_id
    elif spec.btf_key_type_id or spec.btf_value_type_id:
        raise ValueError("map %r: BTF type ids given without btf" % spec.name)
    return attr


def create_error(err: int, op: str, attr: sys.MapCreateAttr) -> BPFError:
    """The exception for a refused ``BPF_MAP_CREATE``: a type the kernel
    lacks (asked of :data:`map_type_answer`), a privilege problem, or the
    parameters it refused."""
    type_name = MAP_TYPES.name(attr.map_type)
    since = MAP_TYPE_SINCE.get(attr.map_type)
    if err in UNSUPPORTED_ERRNOS:
        if since is None:
            return UnsupportedFeature(type_name, op=op, err=err,
                                      detail="map type %d is unknown to pybpf" % attr.map_type)
        # Ask the kernel, not its version number: can it create this type at all?
        answer = map_type_answer(attr.map_type)
        if answer.state == ABSENT:
            return UnsupportedFeature(type_name, since, op=op, err=err, detail=answer.detail)
    if err in (_errno.EPERM, _errno.EACCES):
        return BPFPermissionError(err, op, "the kernel refused to create a %s map: %s; %s"
                                  % (type_name, strerror(err), PRIVILEGE_HINT))
    return sys.error_for(err, op, "the kernel refused %s key_size=%d value_size=%d "
                                  "max_entries=%d map_flags=%#x: %s"
                         % (type_name, attr.key_size, attr.value_size, attr.max_entries,
                            attr.map_flags, strerror(err)))


# --- the map type feature test ------------------------------------------------------------


#: (key_size, value_size, max_entries, map_flags) that every kernel with the type accepts.
PROBE_PARAMS: Dict[str, Tuple[int, int, int, int]] = {
    "HASH": (4, 8, 1, 0), "ARRAY": (4, 8, 1, 0), "PROG_ARRAY": (4, 4, 1, 0),
    "PERF_EVENT_ARRAY": (4, 4, 1, 0), "PERCPU_HASH": (4, 8, 1, 0), "PERCPU_ARRAY": (4, 8, 1, 0),
    "STACK_TRACE": (4, 8, 1, 0), "CGROUP_ARRAY": (4, 4, 1, 0), "LRU_HASH": (4, 8, 1, 0),
    "LRU_PERCPU_HASH": (4, 8, 1, 0), "LPM_TRIE": (8, 8, 1, BPF_F_NO_PREALLOC),
    "ARRAY_OF_MAPS": (4, 4, 1, 0), "HASH_OF_MAPS": (4, 4, 1, 0), "DEVMAP": (4, 4, 1, 0),
    "SOCKMAP": (4, 4, 1, 0), "CPUMAP": (4, 4, 1, 0), "XSKMAP": (4, 4, 1, 0),
    "SOCKHASH": (4, 4, 1, 0), "CGROUP_STORAGE": (8, 8, 0, 0),
    "REUSEPORT_SOCKARRAY": (4, 4, 1, 0), "PERCPU_CGROUP_STORAGE": (8, 8, 0, 0),
    "QUEUE": (0, 4, 1, 0), "STACK": (0, 4, 1, 0), "SK_STORAGE": (4, 8, 0, BPF_F_NO_PREALLOC),
    "DEVMAP_HASH": (4, 4, 1, 0), "STRUCT_OPS": (4, 4, 1, 0),
    "RINGBUF": (0, 0, _PAGE_SIZE, 0), "INODE_STORAGE": (4, 8, 0, BPF_F_NO_PREALLOC),
    "TASK_STORAGE": (4, 8, 0, BPF_F_NO_PREALLOC), "BLOOM_FILTER": (0, 4, 1, 0),
    "USER_RINGBUF": (0, 0, _PAGE_SIZE, 0), "CGRP_STORAGE": (4, 8, 0, BPF_F_NO_PREALLOC),
    "ARENA": (0, 0, 1, BPF_F_MMAPABLE),
}
# Local storage maps must describe key and value with BTF: types of minimal_btf().
_NEEDS_BTF = {"SK_STORAGE", "INODE_STORAGE", "TASK_STORAGE", "CGRP_STORAGE"}
_NEEDS_INNER_MAP = {"ARRAY_OF_MAPS", "HASH_OF_MAPS"}


def _create_map(map_type: int, key_size: int, value_size: int, max_entries: int,
                map_flags: int = 0, **extra: int) -> int:
    attr = sys.MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                              max_entries=max_entries, map_flags=map_flags, **extra)
    return sys.bpf_errno(sys.BPF_MAP_CREATE, attr)


def _probe_map_type(short: str, btf_fd: Optional[FD], inner_fd: Optional[FD]) -> Answer:
    """Whether this kernel creates a map of type ``short`` (``btf_fd``: the
    key and value types of storage maps; ``inner_fd``: the inner map of a
    map of maps)."""
    key_size, value_size, max_entries, flags = PROBE_PARAMS[short]
    extra: Dict[str, int] = {}
    if short in _NEEDS_BTF:
        if btf_fd is None:
            return Answer(ABSENT, "not probed: needs BTF, which this kernel cannot load")
        extra = dict(btf_fd=btf_fd.fileno(), btf_key_type_id=BTF_INT,
                     btf_value_type_id=BTF_LONG)
    elif short in _NEEDS_INNER_MAP:
        if inner_fd is None:
            return Answer(ABSENT, "not probed: no inner array map")
        extra = dict(inner_map_fd=inner_fd.fileno())
    elif short == "STRUCT_OPS":
        # No struct_ops type has BTF id 1 in vmlinux: a kernel that has
        # struct_ops maps looks it up and answers ENOTSUPP (as libbpf probes).
        extra = dict(btf_vmlinux_value_type_id=1)
    ret = _create_map(MAP_TYPES.value(short), key_size, value_size, max_entries, flags, **extra)
    if ret >= 0:
        FD(ret).close()
        return YES
    if short == "STRUCT_OPS" and -ret == ENOTSUPP:
        return Answer(PRESENT, "known; creating one needs a struct_ops type")
    return Answer.from_errno(-ret)


def _probe_one_map_type(map_type: int) -> Answer:
    """The map type test, with what the type needs made for it and closed."""
    short = MAP_TYPES.short(map_type).upper()
    if short not in PROBE_PARAMS:
        return Answer(ABSENT, "map type %d is unknown to pybpf" % map_type)
    btf_fd: Optional[FD] = None
    inner_fd: Optional[FD] = None
    try:
        if short in _NEEDS_BTF:
            btf_fd, _ = load_btf(minimal_btf())
        elif short in _NEEDS_INNER_MAP:
            ret = _create_map(BPF_MAP_TYPE_ARRAY, 4, 4, 1)
            inner_fd = FD(ret) if ret >= 0 else None
        return _probe_map_type(short, btf_fd, inner_fd)
    finally:
        for fd in (btf_fd, inner_fd):
            if fd is not None:
                fd.close()


#: Whether this kernel creates maps of a type (probed on first use, then
#: cached; ``features.probe()`` asks for every type it knows).
map_type_answer: FeatureTest[int] = FeatureTest(_probe_one_map_type)
