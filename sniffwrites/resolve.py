"""File ids -> paths: the userspace end of "send a file's path once".

The kernel walks an fd once and sends a ``FileRec`` (path, inode facts,
flags) with a file id; every later record about that file carries only the
id. :class:`FileTable` keeps the id's :class:`FileInfo` while some fd
refers to it (opens and dups add a reference, closes drop one), so memory
follows the open files, not the history.

It also names what has no path: pipes, sockets and anonymous inodes are
named as ``/proc/PID/fd`` shows them (``pipe:[1234]``,
``socket:[5678]``, ``anon_inode:[eventfd]``), from the superblock magic and
inode number the kernel sent. When an id is unknown (its FileRec was lost
with a full ring), ``/proc/PID/fd/FD`` is the fallback, counted, and marked.

>>> pseudo_name(PIPEFS_MAGIC, 1234, b"")
b'pipe:[1234]'
>>> join_path(b"/w/sub", b"../x//y")
b'/w/x/y'
"""

import os
from typing import Dict, NamedTuple, Optional, Tuple

# include/uapi/linux/magic.h
PIPEFS_MAGIC = 0x50495045
SOCKFS_MAGIC = 0x534F434B
ANON_INODE_FS_MAGIC = 0x09041934
NSFS_MAGIC = 0x6E736673

# FileRec.flags (programs/lib_sniffwrites_walk.py)
FILE_WATCHED, FILE_TRUNCATED, FILE_DELETED, FILE_PSEUDO, FILE_DIRECTORY, FILE_UNCACHED = \
    1, 2, 4, 8, 16, 64

UNKNOWN = b"?"


class FileInfo(NamedTuple):
    path: bytes          # absolute canonical path, or the kernel's name for pseudo files
    flags: int           # FILE_*
    dev: int             # kernel s_dev
    ino: int
    magic: int
    mode: int
    watched: int         # index + 1 of the watched directory, 0 if none

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FILE_TRUNCATED)

    @property
    def deleted(self) -> bool:
        return bool(self.flags & FILE_DELETED)


def pseudo_name(magic: int, ino: int, name: bytes) -> bytes:
    """What ``readlink /proc/PID/fd/N`` says for a file without a path."""
    if magic == PIPEFS_MAGIC:
        return b"pipe:[%d]" % ino
    if magic == SOCKFS_MAGIC:
        return b"socket:[%d]" % ino
    if magic == ANON_INODE_FS_MAGIC:
        return b"anon_inode:" + (name or b"[%d]" % ino)
    if name:
        return name if magic == NSFS_MAGIC else b"/" + name
    return b"anon:[%x:%d]" % (magic, ino)


def join_path(directory: bytes, name: bytes) -> bytes:
    """``name`` (absolute, or relative to ``directory``), normalised the way
    the kernel resolves ``.`` and ``..`` (lexically: ``directory`` is
    already canonical)."""
    path = name if name.startswith(b"/") else directory.rstrip(b"/") + b"/" + name
    normal = os.path.normpath(path)
    return b"/" + normal.lstrip(b"/") if normal.startswith(b"//") else normal


def proc_fd_path(pid: int, fd: int) -> Optional[bytes]:
    """``readlink /proc/PID/fd/FD`` (the fallback), or None."""
    try:
        return os.readlink(b"/proc/%d/fd/%d" % (pid, fd))
    except OSError:
        return None


class FileTable:
    """file id -> :class:`FileInfo`, with a reference count per id."""

    def __init__(self):
        self.files: Dict[int, FileInfo] = {}
        self._refs: Dict[int, int] = {}
        self.unresolved = 0       # ids we never got a FileRec for (resolved via /proc, or not)

    def add(self, file_id: int, flags: int, dev: int, ino: int, magic: int, mode: int,
            watched: int, path: bytes) -> FileInfo:
        if flags & FILE_PSEUDO:
            path = pseudo_name(magic, ino, path[1:] if path.startswith(b"/") else path)
        info = FileInfo(path, flags, dev, ino, magic, mode, watched)
        self.files[file_id] = info
        self._refs[file_id] = self._refs.get(file_id, 0) + 1
        return info

    def ref(self, file_id: int) -> None:
        """Another fd refers to ``file_id`` (dup)."""
        if file_id in self.files:
            self._refs[file_id] = self._refs.get(file_id, 0) + 1

    def release(self, file_id: int) -> None:
        """An fd of ``file_id`` was closed: forget it with its last fd."""
        refs = self._refs.get(file_id)
        if refs is None:
            return
        if refs <= 1:
            del self._refs[file_id]
            self.files.pop(file_id, None)
        else:
            self._refs[file_id] = refs - 1

    def pop(self, file_id: int) -> Optional[FileInfo]:
        """A one-use id (the start directory of a path operation)."""
        self._refs.pop(file_id, None)
        return self.files.pop(file_id, None)

    def lookup(self, file_id: int, pid: int, fd: int) -> Tuple[FileInfo, bool]:
        """The file for ``file_id``; when unknown, from ``/proc`` (second
        item True: not from the kernel)."""
        info = self.files.get(file_id)
        if info is not None:
            return info, False
        self.unresolved += 1
        path = proc_fd_path(pid, fd) if fd >= 0 else None
        info = FileInfo(path if path is not None else UNKNOWN, 0, 0, 0, 0, 0, 0)
        if path is not None and file_id:
            self.files[file_id] = info
            self._refs[file_id] = 1
        return info, True

    def __len__(self) -> int:
        return len(self.files)
