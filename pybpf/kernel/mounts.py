"""Find and, when absent, mount the pseudo file systems we need (tracefs, bpffs).

A fresh machine has neither ``/sys/kernel/tracing`` nor ``/sys/fs/bpf``
mounted. Like bpftrace, we mount what we need, and say clearly when we
cannot (not root, or the kernel lacks the file system).
"""

import ctypes
import errno as _errno
import os
from typing import Dict, Optional

from ..errors import BPFError, BPFPermissionError, UnsupportedFeature

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p)


def mounted_filesystems() -> Dict[str, str]:
    """Mount point -> file system type, from /proc/self/mounts."""
    table: Dict[str, str] = {}
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) >= 3:
                table[fields[1].replace("\\040", " ")] = fields[2]
    return table


def find_mount(fstype: str) -> Optional[str]:
    """The first mount point of ``fstype``, or None."""
    for path, kind in mounted_filesystems().items():
        if kind == fstype:
            return path
    return None


def ensure_mounted(fstype: str, target: str) -> str:
    """Make sure ``fstype`` is mounted at ``target`` and return ``target``.

    Raises a :class:`BPFPermissionError` when not allowed to mount, and
    :class:`UnsupportedFeature` when the kernel does not know ``fstype``.
    """
    if mounted_filesystems().get(target) == fstype:
        return target
    if not os.path.isdir(target):
        try:
            os.makedirs(target, exist_ok=True)
        except OSError as exc:
            raise BPFError(exc.errno or _errno.EIO, "mount %s" % fstype,
                           "cannot create mount point %s: %s" % (target, exc.strerror)) from None
    ret = _libc.mount(fstype.encode(), target.encode(), fstype.encode(), 0, None)
    if ret != 0:
        err = ctypes.get_errno()
        if err == _errno.EBUSY and mounted_filesystems().get(target) == fstype:
            return target  # raced with another mounter
        if err in (_errno.EPERM, _errno.EACCES):
            raise BPFPermissionError(err, "mount %s" % fstype,
                                     "%s is not mounted at %s and mounting it needs root "
                                     "(run: mount -t %s %s %s)" % (fstype, target, fstype,
                                                                  fstype, target))
        if err == _errno.ENODEV:
            raise UnsupportedFeature(fstype, op="mount %s" % fstype, err=err,
                                     detail="the kernel has no %s file system" % fstype)
        raise BPFError(err, "mount %s" % fstype, "mounting %s at %s failed: %s"
                       % (fstype, target, os.strerror(err)))
    return target
