"""BTF objects in the kernel: load a blob (``BPF_BTF_LOAD``), open one by id,
and read a loaded object's bytes back for :class:`pybpf.kernel.btf.BTF`.

A map created with a BTF object's fd and the type ids of its key and value
carries their types, so ``bpftool map dump`` prints entries as structs; a
program's func and line info refer to one the same way. Blobs come from
:mod:`pybpf.kernel.btf_writer`; listing every BTF object in the kernel is
:data:`pybpf.kernel.objects.BTFS`.

>>> from pybpf.kernel.btf import BTF
>>> from pybpf.kernel.btf_writer import BTFBuilder
>>> b = BTFBuilder(); u32 = b.int("u32", 4)
>>> with load_btf(b.encode()) as btf:                 # doctest: +SKIP
...     BTF(fetch_btf(btf.id)).type(u32).name
'u32'
"""

import ctypes
import errno as _errno
import os
from typing import Tuple

from ..errors import BPFError
from . import sys
from .log_buffer import attempt_with_log
from .objects import BTFS, BTFInfo, Fileno, btf_info, get_info

__all__ = ["LoadedBTF", "BTFLoadError", "complaint", "load_btf", "btf_from_id", "btf_info",
           "btf_data", "fetch_btf", "BTFInfo"]

# With a log the kernel writes a line per type even for good BTF, so the
# log is only asked for after a failure, as libbpf does.
BTF_LOG_LEVEL = 1


class BTFLoadError(BPFError):
    """The kernel refused a BTF blob. ``log`` is the kernel's whole BTF
    log (header fields, one line per type checked, the complaint last);
    the message quotes the complaint and the type it is about."""

    def __init__(self, err: int, log: str, blob_size: int):
        self.log = log
        self.blob_size = blob_size
        super().__init__(err, "BPF_BTF_LOAD", "kernel rejected BTF (%d bytes): %s"
                         % (blob_size, complaint(log) or "no log; " + os.strerror(err)))


def complaint(log: str) -> str:
    """The kernel's reason from a BTF log: its last line, and for a member
    (an indented line) the ``[id] KIND name`` line of its type before it.

    >>> complaint("[1] INT u32 size=4\\n[2] STRUCT ev size=8 vlen=1\\n\\tx type_id=9 Invalid\\n")
    '[2] STRUCT ev size=8 vlen=1: member x type_id=9 Invalid'
    """
    lines = [line for line in log.splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    if not last.startswith("\t"):
        return last.strip()
    owner = next((line for line in reversed(lines) if line.startswith("[")), None)
    member = "member " + last.strip()
    return "%s: %s" % (owner.strip(), member) if owner else member


class LoadedBTF(sys.FDOwner):
    """A BTF object in the kernel, owning one fd to it (``fileno()`` is what
    ``btf_fd`` of BPF_MAP_CREATE and BPF_PROG_LOAD takes). The object lives
    while any fd or map or program refers to it; ``close()`` drops ours."""

    def __init__(self, fd: sys.FD):
        """Take ownership of ``fd`` (closed again if it is not BTF)."""
        with sys.closed_on_error(fd):
            info = btf_info(fd)
        self._fd = fd
        self.id = info.id
        self.size = info.size

    def info(self) -> BTFInfo:
        """What the kernel reports about this BTF object."""
        return btf_info(self._fd)

    def data(self) -> bytes:
        """The blob as the kernel holds it."""
        return btf_data(self._fd)

    def __repr__(self) -> str:
        return "LoadedBTF(id=%d, size=%d, %s)" % (self.id, self.size,
                                                   "closed" if self.closed else self._fd)


def load_btf(blob: bytes) -> LoadedBTF:
    """Load ``blob`` into the kernel.

    On failure the load is repeated with the kernel's BTF log (grown until
    it fits, see :mod:`pybpf.kernel.log_buffer`), and :class:`BTFLoadError`
    carries it; privilege errors raise
    :class:`~pybpf.errors.BPFPermissionError` at once.
    """
    data = ctypes.create_string_buffer(bytes(blob), len(blob))

    def attempt(log_size: int) -> Tuple[int, str, int]:
        log = ctypes.create_string_buffer(log_size) if log_size else None
        attr = sys.BTFLoadAttr(btf=sys.address(data), btf_size=len(data))
        if log is not None:
            attr.btf_log_buf = sys.address(log)
            attr.btf_log_size = log_size
            attr.btf_log_level = BTF_LOG_LEVEL
        ret = sys.bpf_errno(sys.BPF_BTF_LOAD, attr)
        return ret, log.value.decode("utf-8", "replace") if log else "", attr.btf_log_true_size

    ret, _, _ = attempt(0)
    if ret < 0 and -ret not in (_errno.EPERM, _errno.EACCES):
        # Keep the first errno: the kernel's reason (a retry may say ENOSPC
        # for a log that was cut).
        retried, log, _truncated = attempt_with_log(attempt)
        if retried < 0:
            raise BTFLoadError(-ret, log, len(data))
        ret = retried   # refused, then accepted: nothing left to explain
    if ret < 0:
        raise sys.error_for(-ret, "BPF_BTF_LOAD")
    return LoadedBTF(sys.FD(ret))


def btf_from_id(btf_id: int) -> sys.FD:
    """A new fd for the BTF object with this id (``BPF_BTF_GET_FD_BY_ID``);
    :class:`~pybpf.errors.NotFoundError` if there is none."""
    return BTFS.open(btf_id)


def btf_data(fd: Fileno) -> bytes:
    """The bytes of a loaded BTF object (an int fd, ``FD`` or ``LoadedBTF``):
    ``BPF_OBJ_GET_INFO_BY_FD`` for the size (:func:`btf_info`, which also
    refuses an fd that is not BTF), then once more with a buffer; BTF
    objects never change. A module's BTF is split BTF: parse it with
    ``base=vmlinux()``."""
    size = btf_info(fd).size
    buffer = ctypes.create_string_buffer(size)
    get_info(fd, sys.BPFBTFInfo(btf=sys.address(buffer), btf_size=size))
    return buffer.raw


def fetch_btf(btf_id: int) -> bytes:
    """The bytes of the BTF object with this id (for ``BTF(fetch_btf(id))``)."""
    with btf_from_id(btf_id) as fd:
        return btf_data(fd)
