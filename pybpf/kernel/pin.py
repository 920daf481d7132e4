"""Pinning BPF objects in the BPF file system (bpffs).

A pinned object outlives the process that made it: a path under a bpffs
mount holds a reference until it is unlinked. This module mounts bpffs when
needed, pins, opens and unpins. It does not know what kind of object it pins;
``Map.pin``/``Map.from_pin`` in ``maps`` add the typed layer.
"""

import ctypes
import errno as _errno
import os
from typing import Any, Optional

from ..errors import BPFError, NotFoundError
from . import mounts, sys

BPFFS_PATH = "/sys/fs/bpf"


def bpffs_mount_of(path: str) -> Optional[str]:
    """The bpffs mount point that ``path`` lies under, or None."""
    path = os.path.realpath(path) if os.path.exists(path) else os.path.abspath(path)
    best = None
    for mount_point, fstype in mounts.mounted_filesystems().items():
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) > len(best[0])):
            best = (mount_point, fstype)
    return best[0] if best and best[1] == "bpf" else None


def ensure_bpffs(path: str = BPFFS_PATH) -> str:
    """Make ``path`` a directory on a bpffs and return it.

    A path inside an existing bpffs mount is created if missing; any other
    path gets a bpffs mounted on it (needs root). Raises
    ``BPFPermissionError`` or ``UnsupportedFeature`` (from ``mounts``) when
    that cannot be done.
    """
    if bpffs_mount_of(path) is None:
        return mounts.ensure_mounted("bpf", path)
    os.makedirs(path, exist_ok=True)
    return path


def _path_buffer(path: str) -> ctypes.Array:
    return ctypes.create_string_buffer(os.fsencode(path))


def _not_bpffs(err: int, op: str, path: str) -> BPFError:
    return BPFError(err, op, "%s is not on a bpf file system (mount one with "
                    "pin.ensure_bpffs(), or pin under %s)" % (path, BPFFS_PATH))


def pin(fd: Any, path: str) -> None:
    """Pin the object behind ``fd`` (int or anything with ``fileno()``) at ``path``.

    The parent directory must exist on a bpffs (``ensure_bpffs``).
    """
    buffer = _path_buffer(path)
    attr = sys.ObjAttr(pathname=sys.address(buffer),
                       bpf_fd=sys.fileno_of(fd))
    ret = sys.bpf_errno(sys.BPF_OBJ_PIN, attr)
    if ret >= 0:
        return
    err, op = -ret, "BPF_OBJ_PIN"
    if err == _errno.EEXIST:
        raise BPFError(err, op, "%s already exists: unpin it first" % path)
    if err == _errno.ENOENT:
        raise NotFoundError(err, op, "the directory of %s does not exist (create it with "
                            "ensure_bpffs(%r))" % (path, os.path.dirname(path)))
    if err == _errno.EPERM and bpffs_mount_of(path) is None:
        raise _not_bpffs(err, op, path)
    raise sys.error_for(err, op)


def open_pinned(path: str, flags: int = 0) -> sys.FD:
    """A new fd for the object pinned at ``path``. ``flags`` may be
    ``consts.BPF_F_RDONLY`` or ``consts.BPF_F_WRONLY`` (for maps)."""
    buffer = _path_buffer(path)
    ret = sys.bpf_errno(sys.BPF_OBJ_GET, sys.ObjAttr(pathname=sys.address(buffer),
                                                     file_flags=flags))
    if ret >= 0:
        return sys.FD(ret)
    err, op = -ret, "BPF_OBJ_GET"
    if err == _errno.ENOENT:
        raise NotFoundError(err, op, "nothing is pinned at %s" % path)
    if err in (_errno.EACCES, _errno.EPERM) and bpffs_mount_of(path) is None:
        raise _not_bpffs(err, op, path)
    if err == _errno.EACCES and os.path.exists(path):
        raise BPFError(err, op, "%s is not a pinned BPF object" % path)
    raise sys.error_for(err, op)


def unpin(path: str) -> None:
    """Remove the pin at ``path``; the object lives on while other
    references (fds, links, other pins) hold it."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        raise NotFoundError(_errno.ENOENT, "unpin", "nothing is pinned at %s" % path) from None
