"""Files a privileged process may trust: caches it loads code from, and
files it writes.

pybpf and sniffwrites run as root (or with CAP_BPF), so every path they take
from the environment or the command line is a way for another user to steer
them. Two rules, one per direction:

* **Reading what decides what root loads** (cached bytecode, cached BTF
  offsets) happens only from a *private directory*: it and every ancestor up
  to ``/`` are owned by the effective user or root and writable by neither
  group nor others (as sshd's StrictModes checks a home directory), and so is
  every file read from it. The directory is opened once, without following
  symlinks, and entries are read and written only through that descriptor,
  so nothing can be swapped in between the check and the use
  (:func:`open_private_dir`, :func:`read_private_file`,
  :func:`write_private_file`).
* **Writing an output file** (events, a ready file) resolves the path one
  component at a time, following a symlink only when it belongs to the
  effective user or root (never one planted by another user, in ``/tmp`` or
  anywhere: a subset of what ``fs.protected_symlinks=1`` follows), creates a
  new file with ``O_EXCL`` and mode 0600, and takes an existing one only if
  the opened descriptor is a regular file owned by the effective user with
  a single link (:func:`open_output_file`).

Anything else raises :class:`~pybpf.errors.UnsafePath` naming the path and
the reason.
"""

import os
import secrets
import stat
from typing import List, Optional

from .errors import UnsafePath

_DIR_FLAGS = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 40     # the kernel's MAXSYMLINKS
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def _trusted_owner(st: os.stat_result) -> bool:
    return st.st_uid in (os.geteuid(), 0)


def _closed_to_others(st: os.stat_result) -> bool:
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _check_private(path: str, st: os.stat_result, what: str) -> None:
    if not _trusted_owner(st):
        raise UnsafePath(path, "%s is owned by uid %d, not by uid %d or root"
                         % (what, st.st_uid, os.geteuid()))
    if not _closed_to_others(st):
        raise UnsafePath(path, "%s is writable by group or others (mode %04o)"
                         % (what, stat.S_IMODE(st.st_mode)))


# --- private directories (caches) -----------------------------------------------------------

def default_cache_dir(app: str) -> str:
    """Where ``app`` keeps its caches when no place is given: for root,
    ``/var/cache/<app>`` (never a home directory named by an environment a
    user may have passed through ``sudo -E``); for others,
    ``$XDG_CACHE_HOME/<app>``, else ``~/.cache/<app>``."""
    if os.geteuid() == 0:
        return os.path.join("/var/cache", app)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, app)


def open_private_dir(path: str, create: bool = False) -> int:
    """An fd of directory ``path`` after checking it and every ancestor
    (see the module docstring); missing components are made with mode 0700
    when ``create``. The caller closes the fd. Raises ``UnsafePath`` for a
    directory another user could change, ``OSError`` for the rest (missing,
    not a directory, a symlink on the way)."""
    absolute = os.path.abspath(path)
    fd = os.open("/", os.O_RDONLY | _DIR_FLAGS)
    try:
        _check_private("/", os.fstat(fd), "/")
        walked = ""
        for name in [part for part in absolute.split("/") if part]:
            walked += "/" + name
            try:
                child = os.open(name, os.O_RDONLY | _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, PRIVATE_DIR_MODE, dir_fd=fd)
                child = os.open(name, os.O_RDONLY | _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            _check_private(walked, os.fstat(fd), "directory %s" % walked)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_private_file(dir_fd: int, name: str) -> Optional[bytes]:
    """The bytes of ``name`` in the private directory ``dir_fd``, or None if
    there is no such file; ``UnsafePath`` unless it is a regular file owned
    by the effective user or root and closed to others."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(name, "not a regular file")
        _check_private(name, st, "file %s" % name)
        return f.read()


def write_private_file(dir_fd: int, name: str, data: bytes) -> None:
    """Replace ``name`` in the private directory ``dir_fd`` with ``data``
    atomically (a new 0600 file renamed over it): readers see the old file
    or the new one, never half of one."""
    temp = ".%s.%s.tmp" % (name, secrets.token_hex(8))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 PRIVATE_FILE_MODE, dir_fd=dir_fd)
    try:
        with open(fd, "wb") as f:
            f.write(data)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def prune_private_files(dir_fd: int, suffix: str, keep: int) -> None:
    """Delete all but the ``keep`` newest entries ending in ``suffix``
    (cache entries of other sources or kernels), through the directory fd."""
    entries = []
    for name in os.listdir(dir_fd):
        if name.endswith(suffix):
            try:
                entries.append((os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mtime_ns,
                                name))
            except OSError:
                pass
    for _, name in sorted(entries, reverse=True)[keep:]:
        try:
            os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass


# --- output files ---------------------------------------------------------------------------

def open_output_file(path: str, *, truncate: bool = False) -> int:
    """An fd open for writing (appending, unless ``truncate``) on ``path``,
    resolved so that no other user can redirect it (see the module
    docstring). A new file gets mode 0600. The caller closes the fd."""
    parts: List[str] = path.split("/")
    fd = os.open("/" if path.startswith("/") else ".", os.O_PATH | _DIR_FLAGS)
    followed = 0
    try:
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            last = not any(part not in ("", ".") for part in parts)
            if last:
                out = _open_last(fd, name, path, truncate)
                if out is not None:
                    return out
            else:
                try:
                    child = os.open(name, os.O_PATH | _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if not _is_symlink(fd, name):
                        raise OSError(exc.errno, exc.strerror, path) from None
                else:
                    os.close(fd)
                    fd = child
                    continue
            # ``name`` is a symlink: follow it only if it is to be trusted.
            followed += 1
            if followed > _MAX_SYMLINKS:
                raise OSError(40, "too many levels of symbolic links", path)
            target = _trusted_link_target(fd, name, path)
            parts[:0] = target.split("/")
            if target.startswith("/"):
                os.close(fd)
                fd = os.open("/", os.O_PATH | _DIR_FLAGS)
        raise IsADirectoryError(21, "is a directory", path)
    finally:
        os.close(fd)


def _open_last(dir_fd: int, name: str, path: str, truncate: bool) -> Optional[int]:
    """Create ``name`` (O_EXCL, 0600) or open the existing file and check it;
    None when it is a symlink, which the caller resolves."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE, dir_fd=dir_fd)
    except FileExistsError:
        pass
    try:   # O_NONBLOCK: a FIFO planted here must not hang us before the check
        fd = os.open(name, flags | os.O_APPEND | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if _is_symlink(dir_fd, name):
            return None
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(path, "not a regular file")
        if st.st_uid != os.geteuid():
            raise UnsafePath(path, "the file is owned by uid %d, not by uid %d: remove it or "
                             "name another file" % (st.st_uid, os.geteuid()))
        if st.st_nlink != 1:
            raise UnsafePath(path, "the file has %d hard links: another name could make it "
                             "any file" % st.st_nlink)
        os.set_blocking(fd, True)
        os.fchmod(fd, PRIVATE_FILE_MODE)
        if truncate:
            os.ftruncate(fd, 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _trusted_link_target(dir_fd: int, name: str, path: str) -> str:
    """The target of symlink ``name``, read from the link we checked (an
    O_PATH fd of the link itself, so it cannot be swapped in between);
    ``UnsafePath`` unless the link belongs to the effective user or root."""
    link = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(link)
        if not stat.S_ISLNK(st.st_mode):     # replaced since we looked: try again
            raise UnsafePath(path, "%s changed while it was being resolved" % name)
        if not _trusted_owner(st):
            raise UnsafePath(path, "symlink %s is owned by uid %d: a link another user made "
                             "is never followed" % (name, st.st_uid))
        return os.readlink("", dir_fd=link)
    finally:
        os.close(link)
