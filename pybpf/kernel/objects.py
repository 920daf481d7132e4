"""Every program, map, link and BTF object in the running kernel.

Walks the kernel's id lists (``BPF_*_GET_NEXT_ID``), opens objects by id
(``BPF_*_GET_FD_BY_ID``) and reads their facts (``BPF_OBJ_GET_INFO_BY_FD``)
into small frozen records: the facts ``bpftool prog/map/link list`` shows.
The kernel's enum name tables it prints with live in :mod:`pybpf.consts`.
Creating and using objects is not done here: that is ``maps``, ``prog`` and
``link``.

>>> PROGS.ids()                                        # doctest: +SKIP
[3, 7, 12]
"""

import ctypes
import errno as _errno
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Type

from ..errors import NotFoundError
from .. import consts
from . import sys


# --- records ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ProgInfo:
    """Facts about one loaded program (``struct bpf_prog_info``).

    ``load_time`` is nanoseconds since boot, as the kernel reports it;
    ``loaded_at`` turns it into a Unix timestamp. Run statistics are zero
    unless ``kernel.bpf_stats_enabled`` (or BPF_ENABLE_STATS) is on.
    """
    id: int
    type: int
    type_name: str
    name: str
    tag: str
    map_ids: Tuple[int, ...]
    load_time: int
    created_by_uid: int
    xlated_len: int
    jited_len: int
    run_time_ns: int
    run_cnt: int
    recursion_misses: int
    verified_insns: int
    btf_id: int
    gpl_compatible: bool

    @property
    def loaded_at(self) -> float:
        """Load time as a Unix timestamp (the kernel counts from boot)."""
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME) - self.load_time / 1e9
        return time.time() - since_boot


@dataclass(frozen=True)
class MapInfo:
    """Facts about one map (``struct bpf_map_info``)."""
    id: int
    type: int
    type_name: str
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int


@dataclass(frozen=True)
class LinkInfo:
    """Facts about one link (``struct bpf_link_info``).

    ``detail`` holds the type-specific part under the kernel's field names
    (``tp_name``, ``ifindex``, ``attach_type``, ``cgroup_id``, ``netns_ino``,
    ``target_obj_id``, ...), with ``attach_type_name``/``perf_event_type_name``
    added where a number names an enum.
    """
    id: int
    type: int
    type_name: str
    prog_id: int
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tp_name(self) -> Optional[str]:
        """The tracepoint of a raw tracepoint link, else None."""
        return self.detail.get("tp_name")

    @property
    def ifindex(self) -> Optional[int]:
        """The network interface of a link attached to one (XDP, tcx), else None."""
        return self.detail.get("ifindex")


@dataclass(frozen=True)
class BTFInfo:
    """Facts about one BTF object (``struct bpf_btf_info``): ``vmlinux``,
    a module's, or one loaded with a program (those have no name)."""
    id: int
    name: str
    size: int
    kernel_btf: Optional[bool]    # None: the kernel does not say (before Linux 5.11)


# --- the type-specific part of bpf_link_info ---------------------------------------------
# Each mirrors one member of the anonymous union in `struct bpf_link_info`
# (include/uapi/linux/bpf.h) under the kernel's field names. The perf_event
# variants include the leading `type` word, renamed perf_event_type.

_u32, _s32, _u64 = ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64


class _RawTracepointLink(ctypes.Structure):
    _fields_ = [("tp_name", _u64), ("tp_name_len", _u32), ("cookie", _u64)]


class _TracingLink(ctypes.Structure):
    _fields_ = [("attach_type", _u32), ("target_obj_id", _u32), ("target_btf_id", _u32),
                ("cookie", _u64)]


class _CgroupLink(ctypes.Structure):
    _fields_ = [("cgroup_id", _u64), ("attach_type", _u32)]


class _IterLink(ctypes.Structure):
    _fields_ = [("target_name", _u64), ("target_name_len", _u32), ("map_id", _u32)]


class _NetnsLink(ctypes.Structure):
    _fields_ = [("netns_ino", _u32), ("attach_type", _u32)]


class _XdpLink(ctypes.Structure):
    _fields_ = [("ifindex", _u32)]


class _StructOpsLink(ctypes.Structure):
    _fields_ = [("map_id", _u32)]


class _NetfilterLink(ctypes.Structure):
    _fields_ = [("pf", _u32), ("hooknum", _u32), ("priority", _s32), ("flags", _u32)]


class _KprobeMultiLink(ctypes.Structure):
    _fields_ = [("addrs", _u64), ("count", _u32), ("flags", _u32), ("missed", _u64),
                ("cookies", _u64)]


class _UprobeMultiLink(ctypes.Structure):
    _fields_ = [("path", _u64), ("offsets", _u64), ("ref_ctr_offsets", _u64), ("cookies", _u64),
                ("path_size", _u32), ("count", _u32), ("flags", _u32), ("pid", _u32)]


class _DeviceLink(ctypes.Structure):
    """``tcx`` and ``netkit``."""
    _fields_ = [("ifindex", _u32), ("attach_type", _u32)]


class _SockmapLink(ctypes.Structure):
    _fields_ = [("map_id", _u32), ("attach_type", _u32)]


class _PerfEventLink(ctypes.Structure):
    _fields_ = [("perf_event_type", _u32)]


class _PerfUprobeLink(ctypes.Structure):
    _fields_ = [("perf_event_type", _u32), ("file_name", _u64), ("name_len", _u32),
                ("offset", _u32), ("cookie", _u64), ("ref_ctr_offset", _u64)]


class _PerfKprobeLink(ctypes.Structure):
    _fields_ = [("perf_event_type", _u32), ("func_name", _u64), ("name_len", _u32),
                ("offset", _u32), ("addr", _u64), ("missed", _u64), ("cookie", _u64)]


class _PerfTracepointLink(ctypes.Structure):
    _fields_ = [("perf_event_type", _u32), ("tp_name", _u64), ("name_len", _u32),
                ("cookie", _u64)]


class _PerfEventEventLink(ctypes.Structure):
    _fields_ = [("perf_event_type", _u32), ("config", _u64), ("event_type", _u32),
                ("cookie", _u64)]


@dataclass(frozen=True)
class _Detail:
    """How to read one union member: its layout, and optionally the
    (pointer, length) pair of a string the kernel copies out on request."""
    layout: Type[ctypes.Structure]
    string: Optional[Tuple[str, str]] = None
    pointers: Tuple[str, ...] = ()   # arrays we do not fetch; left out of ``detail``


_LINK_DETAILS: Dict[int, _Detail] = {
    consts.BPF_LINK_TYPE_RAW_TRACEPOINT: _Detail(_RawTracepointLink, ("tp_name", "tp_name_len")),
    consts.BPF_LINK_TYPE_TRACING: _Detail(_TracingLink),
    consts.BPF_LINK_TYPE_CGROUP: _Detail(_CgroupLink),
    consts.BPF_LINK_TYPE_ITER: _Detail(_IterLink, ("target_name", "target_name_len")),
    consts.BPF_LINK_TYPE_NETNS: _Detail(_NetnsLink),
    consts.BPF_LINK_TYPE_XDP: _Detail(_XdpLink),
    consts.BPF_LINK_TYPE_STRUCT_OPS: _Detail(_StructOpsLink),
    consts.BPF_LINK_TYPE_NETFILTER: _Detail(_NetfilterLink),
    consts.BPF_LINK_TYPE_KPROBE_MULTI: _Detail(_KprobeMultiLink, pointers=("addrs", "cookies")),
    consts.BPF_LINK_TYPE_UPROBE_MULTI: _Detail(_UprobeMultiLink, ("path", "path_size"),
                                        pointers=("offsets", "ref_ctr_offsets", "cookies")),
    consts.BPF_LINK_TYPE_TCX: _Detail(_DeviceLink),
    consts.BPF_LINK_TYPE_NETKIT: _Detail(_DeviceLink),
    consts.BPF_LINK_TYPE_SOCKMAP: _Detail(_SockmapLink),
}

_PERF_EVENT_DETAILS: Dict[int, _Detail] = {
    consts.BPF_PERF_EVENT_UPROBE: _Detail(_PerfUprobeLink, ("file_name", "name_len")),
    consts.BPF_PERF_EVENT_URETPROBE: _Detail(_PerfUprobeLink, ("file_name", "name_len")),
    consts.BPF_PERF_EVENT_KPROBE: _Detail(_PerfKprobeLink, ("func_name", "name_len")),
    consts.BPF_PERF_EVENT_KRETPROBE: _Detail(_PerfKprobeLink, ("func_name", "name_len")),
    consts.BPF_PERF_EVENT_TRACEPOINT: _Detail(_PerfTracepointLink, ("tp_name", "name_len")),
    consts.BPF_PERF_EVENT_EVENT: _Detail(_PerfEventEventLink),
}

_NAMED_ENUMS = {"attach_type": consts.ATTACH_TYPES, "perf_event_type": consts.PERF_EVENT_TYPES}
_UNSIZED_STRING = 4096   # when a kernel reports no length for a string it would copy


# --- info by fd -------------------------------------------------------------------------

Fileno = Any   # an int fd, a sys.FD, or anything with fileno()


def get_info(fd: Fileno, info: ctypes.Structure) -> ctypes.Structure:
    """Fill ``info`` (a ``bpf_*_info`` struct, with any pointers and counts
    of what to copy out set) by BPF_OBJ_GET_INFO_BY_FD; returns it."""
    attr = sys.InfoAttr(bpf_fd=sys.fileno_of(fd), info_len=ctypes.sizeof(info),
                        info=sys.address(info))
    sys.bpf(sys.BPF_OBJ_GET_INFO_BY_FD, attr)
    return info


def _prog_info_array(fd: Fileno, count_field: str, pointer_field: str, item_size: int,
                     rec_size_field: Optional[str] = None) -> bytes:
    """An array the kernel copies out of ``bpf_prog_info`` on a second call
    (size first; asks again if it grew in between, e.g. BPF_PROG_BIND_MAP).
    ``rec_size_field`` names the field that must state ``item_size`` for
    arrays of records (the kernel refuses another record size)."""
    count = getattr(get_info(fd, sys.BPFProgInfo()), count_field)
    while True:
        buffer = ctypes.create_string_buffer(max(count * item_size, 1))
        info = sys.BPFProgInfo()
        setattr(info, count_field, count)
        setattr(info, pointer_field, sys.address(buffer) if count else 0)
        if rec_size_field is not None:
            setattr(info, rec_size_field, item_size)
        got = getattr(get_info(fd, info), count_field)
        if got <= count:
            return buffer.raw[:got * item_size]
        count = got


def _prog_info_numbers(fd: Fileno, count_field: str, pointer_field: str,
                       code: str) -> Tuple[int, ...]:
    """An array of ``bpf_prog_info`` whose items are one ``struct`` ``code``
    each (``I``: __u32, ``Q``: __u64), as ints."""
    raw = _prog_info_array(fd, count_field, pointer_field, struct.calcsize("=" + code))
    return tuple(number for (number,) in struct.iter_unpack("=" + code, raw))


def prog_xlated(fd: Fileno) -> bytes:
    """The program as the verifier rewrote it (what ``bpftool prog dump xlated`` shows)."""
    return _prog_info_array(fd, "xlated_prog_len", "xlated_prog_insns", 1)


def prog_jited(fd: Fileno) -> bytes:
    """The program's machine code (empty when the JIT is off)."""
    return _prog_info_array(fd, "jited_prog_len", "jited_prog_insns", 1)


def prog_map_ids(fd: Fileno) -> Tuple[int, ...]:
    """The ids of the maps a loaded program uses."""
    return _prog_info_numbers(fd, "nr_map_ids", "map_ids", "I")


def prog_jited_ksyms(fd: Fileno) -> Tuple[int, ...]:
    """The kernel address of each JIT-compiled function of the program: the
    main program first, then its bpf-to-bpf functions in the order of
    :func:`prog_func_info`. Empty with the JIT off; all zero where the
    kernel hides addresses (no CAP_SYSLOG, ``kernel.kptr_restrict``)."""
    return _prog_info_numbers(fd, "nr_jited_ksyms", "jited_ksyms", "Q")


def prog_jited_func_lens(fd: Fileno) -> Tuple[int, ...]:
    """Bytes of machine code of each JIT-compiled function, in the order of
    :func:`prog_jited_ksyms`; together they make :func:`prog_jited`."""
    return _prog_info_numbers(fd, "nr_jited_func_lens", "jited_func_lens", "I")




def prog_func_info(fd: Fileno) -> Tuple[Tuple[int, int], ...]:
    """``(insn_off, type_id)`` per function: the slot where it starts in the
    translated code and its BTF FUNC type in the program's BTF object
    (``ProgInfo.btf_id``). Empty for a program loaded without func_info."""
    raw = _prog_info_array(fd, "nr_func_info", "func_info", consts.BPF_FUNC_INFO.size,
                           "func_info_rec_size")
    return tuple(consts.BPF_FUNC_INFO.iter_unpack(raw))


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _decode_prog(fd: Fileno, info: sys.BPFProgInfo) -> ProgInfo:
    return ProgInfo(
        id=info.id, type=info.type, type_name=consts.PROG_TYPES.short(info.type),
        name=_text(info.name), tag=bytes(info.tag).hex(),
        map_ids=prog_map_ids(fd) if info.nr_map_ids else (),
        load_time=info.load_time, created_by_uid=info.created_by_uid,
        xlated_len=info.xlated_prog_len, jited_len=info.jited_prog_len,
        run_time_ns=info.run_time_ns, run_cnt=info.run_cnt,
        recursion_misses=info.recursion_misses, verified_insns=info.verified_insns,
        btf_id=info.btf_id, gpl_compatible=bool(info.gpl_compatible))


def _decode_map(fd: Fileno, info: sys.BPFMapInfo) -> MapInfo:
    return MapInfo(
        id=info.id, type=info.type, type_name=consts.MAP_TYPES.short(info.type),
        name=_text(info.name), key_size=info.key_size, value_size=info.value_size,
        max_entries=info.max_entries, flags=info.map_flags, btf_id=info.btf_id,
        btf_key_type_id=info.btf_key_type_id, btf_value_type_id=info.btf_value_type_id)


def _link_detail(fd: Fileno, info: sys.BPFLinkInfo) -> Dict[str, Any]:
    detail = _LINK_DETAILS.get(info.type)
    if info.type == consts.BPF_LINK_TYPE_PERF_EVENT:
        perf_type = _PerfEventLink.from_buffer(info.union).perf_event_type
        detail = _PERF_EVENT_DETAILS.get(perf_type, _Detail(_PerfEventLink))
    if detail is None:
        return {}
    union = detail.layout.from_buffer(info.union)
    values: Dict[str, Any] = {}
    if detail.string:
        pointer, length = detail.string
        size = getattr(union, length) or _UNSIZED_STRING
        buffer = ctypes.create_string_buffer(size)
        again = sys.BPFLinkInfo()
        asked = detail.layout.from_buffer(again.union)
        setattr(asked, pointer, sys.address(buffer))
        setattr(asked, length, size)
        try:
            get_info(fd, again)
        except OSError as exc:
            if exc.errno != _errno.ENOSPC:   # ENOSPC: it grew; keep the truncated copy
                raise
        values[pointer] = _text(buffer.raw)
        skip = {pointer, length}
    else:
        skip = set()
    skip.update(detail.pointers)
    for name, _ in detail.layout._fields_:
        if name not in skip:
            values[name] = getattr(union, name)
            if name in _NAMED_ENUMS:
                values[name + "_name"] = _NAMED_ENUMS[name].short(values[name])
    return values


def _decode_link(fd: Fileno, info: sys.BPFLinkInfo) -> LinkInfo:
    return LinkInfo(id=info.id, type=info.type, type_name=consts.LINK_TYPES.short(info.type),
                    prog_id=info.prog_id, detail=_link_detail(fd, info))


def _decode_btf(fd: Fileno, info: sys.BPFBTFInfo) -> BTFInfo:
    # Names are short (a module's, "vmlinux", or none): one call with room to spare.
    buffer = ctypes.create_string_buffer(256)
    try:
        named = get_info(fd, sys.BPFBTFInfo(name=sys.address(buffer), name_len=len(buffer)))
    except OSError as exc:
        # E2BIG: this kernel's bpf_btf_info ends before name (Linux < 5.11),
        # and it refuses the non-zero fields it does not know. Its BTF objects
        # are all loaded ones then: vmlinux and modules got ids in 5.11.
        if exc.errno != _errno.E2BIG:
            raise
        return BTFInfo(id=info.id, name="", size=info.btf_size, kernel_btf=None)
    return BTFInfo(id=info.id, name=_text(buffer.raw), size=named.btf_size,
                   kernel_btf=bool(named.kernel_btf))


# --- the four kinds of objects ------------------------------------------------------------

class ObjectKind:
    """Enumerate, open and describe every object of one kind.

    The module-level ``PROGS``, ``MAPS``, ``LINKS`` and ``BTFS`` are the
    instances; ``prog_info``/``map_info``/... are their ``info`` methods.
    """

    def __init__(self, noun: str, anon_inodes: Tuple[str, ...], next_id_cmd: int,
                 fd_by_id_cmd: int, info_struct: Type[ctypes.Structure],
                 decode: Callable[[Fileno, Any], Any]):
        self.noun = noun
        self._anon_inodes = anon_inodes
        self._next_id_cmd = next_id_cmd
        self._fd_by_id_cmd = fd_by_id_cmd
        self._info_struct = info_struct
        self._decode = decode

    def ids(self) -> List[int]:
        """Every id of this kind now in the kernel, ascending."""
        found: List[int] = []
        attr = sys.GetIdAttr()
        while True:
            ret = sys.bpf_errno(self._next_id_cmd, attr)
            if ret == -_errno.ENOENT:
                return found
            if ret < 0:
                raise sys.error_for(-ret, sys.BPF_CMD_NAMES[self._next_id_cmd])
            found.append(attr.next_id)
            attr.start_id = attr.next_id

    def open(self, object_id: int) -> sys.FD:
        """A new fd for the object with this id; ``NotFoundError`` if it is gone."""
        attr = sys.GetIdAttr(start_id=object_id)
        ret = sys.bpf_errno(self._fd_by_id_cmd, attr)
        if ret < 0:
            op = sys.BPF_CMD_NAMES[self._fd_by_id_cmd]
            if ret == -_errno.ENOENT:
                raise NotFoundError(_errno.ENOENT, op, "no %s with id %d" % (self.noun, object_id))
            raise sys.error_for(-ret, "%s (%s id %d)" % (op, self.noun, object_id))
        return sys.FD(ret)

    def info(self, fd: Fileno):
        """The record for an open object (int fd, ``FD``, or anything with
        ``fileno()``). ``ValueError`` if the fd is not one of this kind: the
        kernel would answer with another kind's info struct."""
        number = sys.fileno_of(fd)
        try:
            target = os.readlink("/proc/self/fd/%d" % number)
        except OSError:
            target = "a closed fd"
        # Tolerate an anon inode name we do not know (a future kernel's).
        if target not in self._anon_inodes and (target in _BPF_ANON_INODES
                                                or not target.startswith("anon_inode:")):
            raise ValueError("fd %d is %s, not a BPF %s" % (number, target, self.noun))
        return self._decode(fd, get_info(fd, self._info_struct()))

    def info_by_id(self, object_id: int):
        """The facts of the object with ``object_id``."""
        with self.open(object_id) as fd:
            return self.info(fd)

    def infos(self) -> Iterator[Any]:
        """The record of every object of this kind; objects that vanish
        while we walk the list are skipped."""
        for object_id in self.ids():
            try:
                fd = self.open(object_id)
            except NotFoundError:
                continue
            with fd:
                yield self.info(fd)


# What /proc/self/fd shows for each kind (anon_inode_getfile() names in kernel/bpf/);
# links are "bpf_link" or, for some types, "bpf-link".
PROGS = ObjectKind("program", ("anon_inode:bpf-prog",), sys.BPF_PROG_GET_NEXT_ID,
                   sys.BPF_PROG_GET_FD_BY_ID, sys.BPFProgInfo, _decode_prog)
MAPS = ObjectKind("map", ("anon_inode:bpf-map",), sys.BPF_MAP_GET_NEXT_ID,
                  sys.BPF_MAP_GET_FD_BY_ID, sys.BPFMapInfo, _decode_map)
LINKS = ObjectKind("link", ("anon_inode:bpf_link", "anon_inode:bpf-link"),
                   sys.BPF_LINK_GET_NEXT_ID, sys.BPF_LINK_GET_FD_BY_ID, sys.BPFLinkInfo,
                   _decode_link)
BTFS = ObjectKind("BTF object", ("anon_inode:btf",), sys.BPF_BTF_GET_NEXT_ID,
                  sys.BPF_BTF_GET_FD_BY_ID, sys.BPFBTFInfo, _decode_btf)
_BPF_ANON_INODES = frozenset(name for kind in (PROGS, MAPS, LINKS, BTFS)
                             for name in kind._anon_inodes)

prog_info: Callable[[Fileno], ProgInfo] = PROGS.info
map_info: Callable[[Fileno], MapInfo] = MAPS.info
link_info: Callable[[Fileno], LinkInfo] = LINKS.info
btf_info: Callable[[Fileno], BTFInfo] = BTFS.info
