"""Raw kernel calls: bpf(2), perf_event_open(2), ioctl(2), through ctypes only.

One ``ctypes.Structure`` per ``union bpf_attr`` member we use, with the field
names of ``include/uapi/linux/bpf.h``; they must match it byte for byte (the
kernel rejects an attr whose bytes past what it knows are non-zero, so a
newer layout passed to an older kernel is fine as long as new fields are 0).

Every failure becomes a :class:`~pybpf.errors.BPFError` (or a child) carrying
errno, the command name and a hint. File descriptors are owned by
:class:`FD` objects that close exactly once. bpf(2) fds are close-on-exec by
default; perf fds are opened with ``PERF_FLAG_FD_CLOEXEC``.

This module is not for policy: retries, log growing and friendly types live
in ``maps``, ``prog`` and ``link``.
"""

import contextlib
import ctypes
import errno as _errno
import os
import platform
import resource
import threading
from typing import Iterator, Optional

from .. import errors as _errors
from ..errors import BPFError, BPFPermissionError

# --- syscall numbers --------------------------------------------------------------
_SYSCALLS = {
    "x86_64": {"bpf": 321, "perf_event_open": 298},
    "aarch64": {"bpf": 280, "perf_event_open": 241},
}
_MACHINE = platform.machine()
if _MACHINE not in _SYSCALLS:  # pragma: no cover - depends on the host
    raise ImportError("pybpf supports x86_64 and aarch64, not %s" % _MACHINE)
NR_bpf = _SYSCALLS[_MACHINE]["bpf"]
NR_perf_event_open = _SYSCALLS[_MACHINE]["perf_event_open"]

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_ioctl = _libc.ioctl
_ioctl.restype = ctypes.c_int
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)
_byref, _sizeof, _get_errno = ctypes.byref, ctypes.sizeof, ctypes.get_errno

# --- enum bpf_cmd -------------------------------------------------------------------
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_BTF_LOAD = 18
BPF_BTF_GET_FD_BY_ID = 19
BPF_TASK_FD_QUERY = 20
BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
BPF_MAP_FREEZE = 22
BPF_BTF_GET_NEXT_ID = 23
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
BPF_MAP_UPDATE_BATCH = 26
BPF_MAP_DELETE_BATCH = 27
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_ENABLE_STATS = 32
BPF_ITER_CREATE = 33
BPF_LINK_DETACH = 34
BPF_PROG_BIND_MAP = 35

BPF_CMD_NAMES = {value: name for name, value in globals().items()
                 if name.startswith("BPF_") and isinstance(value, int)}

# The kernel-internal errno 524 some commands leak; defined with the errors
# that name it (pybpf.errors), and here for the kernel layer.
ENOTSUPP = _errors.ENOTSUPP

BPF_OBJ_NAME_LEN = 16
BPF_STATS_RUN_TIME = 0


def _u64_fields(*names):
    return [(name, ctypes.c_uint64) for name in names]


class MapCreateAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_MAP_CREATE."""
    _fields_ = [
        ("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", ctypes.c_uint32), ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32), ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32), ("map_extra", ctypes.c_uint64),
    ]


class MapElemAttr(ctypes.Structure):
    """BPF_MAP_*_ELEM: ``value`` doubles as ``next_key`` for GET_NEXT_KEY."""
    _fields_ = [("map_fd", ctypes.c_uint32)] + _u64_fields("key", "value", "flags")


class MapBatchAttr(ctypes.Structure):
    """BPF_MAP_*_BATCH (``batch`` in the union)."""
    _fields_ = _u64_fields("in_batch", "out_batch", "keys", "values") + [
        ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
    ] + _u64_fields("elem_flags", "flags")


class ProgLoadAttr(ctypes.Structure):
    """BPF_PROG_LOAD, up to ``log_true_size`` (Linux 6.4; 0 before)."""
    _fields_ = [
        ("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64), ("func_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
        ("line_info_cnt", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32), ("core_relo_cnt", ctypes.c_uint32),
        ("fd_array", ctypes.c_uint64), ("core_relos", ctypes.c_uint64),
        ("core_relo_rec_size", ctypes.c_uint32), ("log_true_size", ctypes.c_uint32),
    ]


class ObjAttr(ctypes.Structure):
    """BPF_OBJ_PIN / BPF_OBJ_GET."""
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32),
                ("file_flags", ctypes.c_uint32)]


class TestRunAttr(ctypes.Structure):
    """BPF_PROG_TEST_RUN (``test`` in the union)."""
    _fields_ = [
        ("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32),
    ]


class GetIdAttr(ctypes.Structure):
    """BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID: ``start_id`` is also
    prog_id/map_id/btf_id/link_id."""
    _fields_ = [("start_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32)]


class InfoAttr(ctypes.Structure):
    """BPF_OBJ_GET_INFO_BY_FD (``info`` in the union)."""
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


class RawTracepointAttr(ctypes.Structure):
    """BPF_RAW_TRACEPOINT_OPEN."""
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32)]


class BTFLoadAttr(ctypes.Structure):
    """BPF_BTF_LOAD, up to ``btf_log_true_size`` (Linux 6.4)."""
    _fields_ = [
        ("btf", ctypes.c_uint64), ("btf_log_buf", ctypes.c_uint64),
        ("btf_size", ctypes.c_uint32), ("btf_log_size", ctypes.c_uint32),
        ("btf_log_level", ctypes.c_uint32), ("btf_log_true_size", ctypes.c_uint32),
    ]


class LinkCreateAttr(ctypes.Structure):
    """BPF_LINK_CREATE. ``target_fd`` is ``target_ifindex`` for XDP; the
    8 bytes of ``extra`` are ``perf_event.bpf_cookie`` for perf-event links
    or ``target_btf_id`` in their low half."""
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("extra", ctypes.c_uint64), ("extra2", ctypes.c_uint64)]


class LinkDetachAttr(ctypes.Structure):
    """``bpf_attr`` of BPF_LINK_DETACH."""
    _fields_ = [("link_fd", ctypes.c_uint32)]


class EnableStatsAttr(ctypes.Structure):
    """``bpf_attr`` of BPF_ENABLE_STATS."""
    _fields_ = [("type", ctypes.c_uint32)]


class ProgAttachAttr(ctypes.Structure):
    """BPF_PROG_ATTACH / BPF_PROG_DETACH."""
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("replace_bpf_fd", ctypes.c_uint32)]


# --- info structs (OBJ_GET_INFO_BY_FD) ---------------------------------------------------

class BPFProgInfo(ctypes.Structure):
    """``struct bpf_prog_info`` up to ``attach_btf_id``."""
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32, 1), ("_pad", ctypes.c_uint32, 31),
        ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32), ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64), ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64), ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64), ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32), ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32), ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64), ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64), ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
    ]


class BPFMapInfo(ctypes.Structure):
    """``struct bpf_map_info``."""
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32), ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32), ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32), ("btf_vmlinux_id", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class BPFLinkInfo(ctypes.Structure):
    """``struct bpf_link_info``: type, ids, and the per-type union as raw
    words (``raw_tracepoint``: tp_name pointer + length; ``xdp``: ifindex;
    ``perf_event``: type ...), decoded by ``kernel.objects``."""
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("prog_id", ctypes.c_uint32), ("_pad", ctypes.c_uint32),
                ("union", ctypes.c_uint64 * 8)]


class BPFBTFInfo(ctypes.Structure):
    """``struct bpf_btf_info``."""
    _fields_ = [("btf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32),
                ("id", ctypes.c_uint32), ("name", ctypes.c_uint64),
                ("name_len", ctypes.c_uint32), ("kernel_btf", ctypes.c_uint32)]


# --- perf_event_open --------------------------------------------------------------------

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_ATTR_SIZE_VER5 = 112

# bits of perf_event_attr.flags (the bitfield after read_format)
PERF_ATTR_FLAG_DISABLED = 1 << 0
PERF_ATTR_FLAG_WATERMARK = 1 << 14

# ioctls from <linux/perf_event.h>: _IO('$', n) and _IOW('$', 8, __u32)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` (PERF_ATTR_SIZE_VER5 layout). ``flags`` is
    the bitfield word (disabled, inherit, ..., watermark)."""
    _fields_ = [
        ("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32), ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64),
        ("branch_sample_type", ctypes.c_uint64), ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32), ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64), ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16), ("_reserved_2", ctypes.c_uint16),
    ]


assert ctypes.sizeof(PerfEventAttr) == PERF_ATTR_SIZE_VER5
assert ctypes.sizeof(BPFProgInfo) == 232


# --- file descriptors -----------------------------------------------------------------

class FD:
    """An owned file descriptor: closed by ``close()``, by ``with``, or as a
    last resort when garbage-collected. Closing twice is harmless."""

    __slots__ = ("_fd", "__weakref__")

    def __init__(self, fd: int):
        self._fd = fd

    def fileno(self) -> int:
        """The descriptor's number (``ValueError`` once closed)."""
        if self._fd < 0:
            raise ValueError("file descriptor is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran (the number is -1 from then on)."""
        return self._fd < 0

    def close(self) -> None:
        """Close the descriptor; closing twice is harmless."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def dup(self) -> "FD":
        """A new descriptor for the same object."""
        return FD(os.dup(self.fileno()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        return "FD(%d)" % self._fd


@contextlib.contextmanager
def closed_on_error(fd: FD) -> Iterator[FD]:
    """``with closed_on_error(fd): ...`` closes ``fd`` when the block fails:
    for constructors that take over an fd and then ask the kernel about it,
    so that one failing half-way leaks nothing."""
    try:
        yield fd
    except BaseException:
        fd.close()
        raise


def fileno_of(fd) -> int:
    """The number of ``fd``: an int, or anything with ``fileno()`` (an
    :class:`FD`, a map, a program)."""
    return fd if isinstance(fd, int) else fd.fileno()


def dup_fd(fd: int) -> FD:
    """A new owned descriptor for the object behind ``fd`` (close-on-exec,
    like every fd we make); the caller keeps, and closes, its own."""
    return FD(os.dup(fd))


class FDOwner:
    """What every object owning one kernel object through ``self._fd`` (an
    :class:`FD`) offers: ``fileno()``, ``closed``, ``close()`` and ``with``.
    Maps, programs and BTF objects build on it."""

    _fd: FD

    def fileno(self) -> int:
        """The number of the fd this object owns."""
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        """Whether the object's fd is closed."""
        return self._fd.closed

    def close(self) -> None:
        """Drop our fd; the kernel frees the object once nothing else (a
        link, a pin, another fd, a map or program using it) holds it.
        Closing twice is harmless."""
        self._fd.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- calls ----------------------------------------------------------------------------------

def error_for(err: int, op: str, message: str = "") -> BPFError:
    """The exception for a failed call: privilege errors get their hint."""
    if err in (_errno.EPERM, _errno.EACCES):
        return BPFPermissionError(err, op, message)
    return BPFError(err, op, message)


def bpf(cmd: int, attr: ctypes.Structure, op: Optional[str] = None) -> int:
    """Call bpf(2); return its non-negative result or raise ``BPFError``."""
    ret = bpf_errno(cmd, attr)
    if ret < 0:
        raise error_for(-ret, op or BPF_CMD_NAMES.get(cmd, "bpf cmd %d" % cmd))
    return ret


# Commands that charge kernel memory. Before Linux 5.11 the charge goes to
# RLIMIT_MEMLOCK (64 KiB by default before 5.16), so even root fails with EPERM
# after a few maps. Like libbpf, lift the limit on the first such EPERM (the
# kernel's answer decides, not its version) and retry once.
_CHARGED = frozenset((BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_BTF_LOAD))
_memlock_lock = threading.Lock()
_memlock_tried = False


def raise_memlock_limit() -> bool:
    """Lift RLIMIT_MEMLOCK to unlimited (else to the hard limit), once per
    process; True when it was raised now, so that a retry may succeed."""
    global _memlock_tried
    with _memlock_lock:
        if _memlock_tried:
            return False
        _memlock_tried = True
        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        if soft == resource.RLIM_INFINITY:
            return False
        for wanted in ((resource.RLIM_INFINITY, resource.RLIM_INFINITY), (hard, hard)):
            try:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, wanted)
                return wanted[0] != soft
            except (ValueError, OSError):
                continue
        return False


def bpf_errno(cmd: int, attr: ctypes.Structure) -> int:
    """Call bpf(2) and return ``-errno`` instead of raising (for hot paths and
    for callers that treat ENOENT as an answer, like map lookups).

    ``cmd`` and the size go in as plain ints, which ctypes passes as C ints
    (what ``int cmd`` and ``unsigned int size`` need) without building a
    ``c_int``/``c_uint`` per call: that halves the call's Python overhead,
    about 0.2 us of a 1.4 us map lookup."""
    ret = _syscall(NR_bpf, cmd, _byref(attr), _sizeof(attr))
    if ret < 0:
        err = _get_errno()
        if err == _errno.EPERM and cmd in _CHARGED and raise_memlock_limit():
            return bpf_errno(cmd, attr)
        return -err
    return ret


def bpf_fd(cmd: int, attr: ctypes.Structure, op: Optional[str] = None) -> FD:
    """A bpf(2) command that returns a new file descriptor."""
    return FD(bpf(cmd, attr, op))


def perf_event_open(attr: PerfEventAttr, pid: int, cpu: int, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC) -> FD:
    """``perf_event_open(2)``: an owned fd, or the error as an exception."""
    attr.size = ctypes.sizeof(attr)
    ret = _syscall(NR_perf_event_open, ctypes.byref(attr), ctypes.c_int(pid), ctypes.c_int(cpu),
                   ctypes.c_int(group_fd), ctypes.c_ulong(flags))
    if ret < 0:
        raise error_for(ctypes.get_errno(), "perf_event_open")
    return FD(ret)


def ioctl(fd: int, request: int, arg: int = 0, op: str = "ioctl") -> int:
    """``ioctl(2)`` on ``fd``; the error as an exception naming ``op``."""
    ret = _ioctl(fd, request, arg)
    if ret < 0:
        raise error_for(ctypes.get_errno(), op)
    return ret


def address(buffer) -> int:
    """The address of a ctypes object, for the ``__aligned_u64`` pointer fields."""
    return ctypes.addressof(buffer)


def obj_name(name: str) -> bytes:
    """A name for ``map_name``/``prog_name``. The kernel refuses with EINVAL
    any name but [A-Za-z0-9_.] of at most 15 bytes, so, as libbpf does, other
    characters become ``_`` and the name is cut to 15 bytes; callers keep
    the full name on the Python side (``Map.name``, ``Program.name``)."""
    cleaned = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "_." else "_"
                      for ch in name)
    return cleaned.encode("ascii", "replace")[:BPF_OBJ_NAME_LEN - 1]
