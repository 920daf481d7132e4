"""The file operations sniffwrites must get right, for a run under strace.

    python3 sniffwrites_cases.py WATCHED OUTSIDE

Phase 1 (before the monitor starts): creates the files and opens
``WATCHED/pre.txt``, then prints ``ready`` and waits for a line on stdin.
Phase 2: ``stat(WATCHED/.go)`` (a marker in strace's output: what follows
is compared), then every case, each with plain ``os`` calls so that each
call is exactly one syscall. Prints ``done``.
"""

import ctypes
import os
import sys

SYS_openat2 = 437


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def ready_then_go(watched: str) -> None:
    """Print ``ready``, wait for a line on stdin (the monitor is attached),
    then ``stat(WATCHED/.go)``: strace's start marker."""
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        os.stat(os.path.join(watched, ".go"))
    except FileNotFoundError:
        pass


def main(watched: str, outside: str) -> None:
    sub = os.path.join(watched, "sub")
    os.makedirs(sub, exist_ok=True)
    deep = watched
    for i in range(3):
        deep = os.path.join(deep, "%d" % i * 120)
        os.makedirs(deep, exist_ok=True)
    with open(os.path.join(sub, "target.txt"), "w") as f:
        f.write("target")
    link = os.path.join(outside, "link.txt")
    dirlink = os.path.join(outside, "dirlink")
    for path, target in ((link, os.path.join(sub, "target.txt")), (dirlink, watched)):
        if not os.path.islink(path):
            os.symlink(target, path)
    pre = os.open(os.path.join(watched, "pre.txt"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)

    ready_then_go(watched)

    # an fd opened before the monitor started
    os.write(pre, b"before")
    os.pread(pre, 6, 0)

    # relative opens after chdir
    os.chdir(sub)
    fd = os.open("rel.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"relative")
    os.close(fd)
    fd = os.open("../sub/rel.txt", os.O_RDONLY)
    os.read(fd, 100)
    os.close(fd)

    # openat with a dirfd (the directory itself is in the watched tree too)
    dirfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open("at.txt", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=dirfd)
    os.pwrite(fd, b"0123456789", 0)
    os.writev(fd, [b"ab", b"cd"])
    os.readv(fd, [bytearray(3), bytearray(4)])
    os.preadv(fd, [bytearray(5)], 2)
    os.ftruncate(fd, 4)
    os.close(fd)
    os.close(dirfd)

    # openat2
    how = OpenHow(flags=os.O_RDWR | os.O_CREAT, mode=0o600)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(SYS_openat2, -100, os.path.join(watched, "two.txt").encode(),
                      ctypes.byref(how), ctypes.sizeof(how))
    os.write(fd, b"openat2")
    os.close(fd)

    # through symlinks: to a file, and to the watched directory
    fd = os.open(link, os.O_RDWR)
    os.write(fd, b"via link")
    os.close(fd)
    fd = os.open(os.path.join(dirlink, "viadir.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"via dirlink")
    os.close(fd)

    # a path longer than 255 bytes
    fd = os.open(os.path.join(deep, "long.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"long")
    os.close(fd)

    # a child writing to an inherited fd
    fd = os.open(os.path.join(watched, "inherited.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    child = os.fork()
    if child == 0:
        os.write(fd, b"from the child")
        os._exit(0)
    os.waitpid(child, 0)
    os.write(fd, b"from the parent")
    os.close(fd)

    # dup2, also over an fd that was open
    fd = os.open(os.path.join(watched, "dup.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.dup2(fd, 50)
    os.write(50, b"via 50")
    over = os.open(os.path.join(watched, "over.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.dup2(fd, over)          # closes over.txt implicitly
    os.write(over, b"dup.txt now")
    os.close(50)
    os.close(over)
    os.close(fd)

    # close_range, then the same fd numbers on files outside
    first = os.open(os.path.join(watched, "range1.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    second = os.open(os.path.join(watched, "range2.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(second, b"r")
    os.closerange(first, second + 1)
    reuse = os.open(os.path.join(outside, "reuse.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    assert reuse == first, (reuse, first)
    os.write(reuse, b"outside: must not be reported")
    os.close(reuse)

    # I/O outside the watched directory: never reported
    out = os.open(os.path.join(outside, "o.txt"), os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(20):
        os.write(out, b"outside")
    os.lseek(out, 0, os.SEEK_SET)
    os.read(out, 100)
    os.close(out)
    r, w = os.pipe()
    os.write(w, b"pipe")
    os.read(r, 4)
    os.close(r)
    os.close(w)

    # path-based operations
    os.truncate(os.path.join(watched, "two.txt"), 3)
    os.rename(os.path.join(sub, "rel.txt"), os.path.join(sub, "renamed.txt"))
    os.rename("at.txt", "at2.txt")                      # relative to the cwd (sub)
    os.unlink(os.path.join(sub, "renamed.txt"))
    os.unlink("at2.txt")

    # a failed open (reported only with --failed)
    try:
        os.open(os.path.join(watched, "missing.txt"), os.O_RDONLY)
    except FileNotFoundError:
        pass

    os.close(pre)
    print("done", flush=True)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
