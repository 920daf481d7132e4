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

:class:`Names` holds the strings of an operation (Text records) until its
Io record comes, and makes the absolute path of a path-based operation
from its name and the directory it starts from.

>>> pseudo_name(PIPEFS_MAGIC, 1234, b"")
b'pipe:[1234]'
>>> join_path(b"/w/sub", b"../x//y")
b'/w/x/y'
"""

import os
from typing import Any, Dict, NamedTuple, Optional, Tuple

from pybpf.programs.lib_paths import ANON_INODE_FS_MAGIC, PIPEFS_MAGIC, SOCKFS_MAGIC

from .bpf.records import FILE_DELETED, FILE_PSEUDO, FILE_TRUNCATED, TEXT_GIVEN

# include/uapi/linux/magic.h (the others are lib_paths')
NSFS_MAGIC = 0x6E736673

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
        #: look unknown ids up in /proc (not when reporting a recording: not our processes)
        self.proc_fallback = True

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
        path = proc_fd_path(pid, fd) if fd >= 0 and self.proc_fallback else None
        info = FileInfo(path if path is not None else UNKNOWN, 0, 0, 0, 0, 0, 0)
        if path is not None and file_id:
            self.files[file_id] = info
            self._refs[file_id] = 1
        return info, True

    def __len__(self) -> int:
        return len(self.files)


#: The strings of one thread's next operation: Text.which -> (text, truncated).
Texts = Dict[int, Tuple[bytes, bool]]


class Names:
    """The strings waiting for their operation, by thread."""

    def __init__(self, table: FileTable):
        self.table = table
        self._waiting: Dict[int, Texts] = {}

    def add(self, text: Any) -> None:
        """A Text record's view: a string for the next Io of its thread."""
        self._waiting.setdefault(text.tid, {})[text.which] = (text.text, bool(text.truncated))

    def take(self, tid: int) -> Texts:
        """The strings of ``tid``'s operation (now handled)."""
        return self._waiting.pop(tid, {})

    def given(self, tid: int) -> Optional[bytes]:
        """The path an open of ``tid`` was given (TEXT_GIVEN), if it came."""
        texts = self._waiting.pop(tid, None)
        return texts[TEXT_GIVEN][0] if texts and TEXT_GIVEN in texts else None

    def path_op_name(self, texts: Texts, dir_id: int,
                     which: int) -> Tuple[Optional[bytes], Optional[bytes], bool]:
        """(absolute path, name as given, truncated) of one name of a
        path-based operation: the name joined to the walked start directory
        (``dir_id``, a one-use file id; 0: none)."""
        name, cut = texts.get(which, (None, False))
        if name is None:
            return None, None, False
        directory = self.table.pop(dir_id) if dir_id else None
        if name.startswith(b"/"):
            return join_path(b"/", name), name, cut
        if directory is None:
            return None, name, cut
        return join_path(directory.path, name), name, cut or directory.truncated
