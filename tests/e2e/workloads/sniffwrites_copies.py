"""Data that reaches a file without a read or write of it, for a run under strace.

    python3 sniffwrites_copies.py WATCHED OUTSIDE

Phase 1 (before the monitor starts): makes the source files, prints
``ready`` and waits for a line on stdin. Phase 2: ``stat(WATCHED/.go)``
(strace's start marker), then coreutils ``cp`` (default: copy_file_range
here; ``--reflink=never``), ``shutil.copyfile`` (sendfile), ``os.sendfile``
with an offset, ``os.copy_file_range`` with offsets, ``os.splice`` from a
pipe into a watched file and from a watched file into a pipe,
``posix_fallocate`` and util-linux ``fallocate --punch-hole``, and the same
copies outside the watched directory. Prints ``done``.
"""

import os
import shutil
import subprocess
import sys

from sniffwrites_cases import ready_then_go

DATA = bytes(range(256)) * 64         # 16 KiB


def main(watched: str, outside: str) -> None:
    source = os.path.join(outside, "source.bin")
    with open(source, "wb") as f:
        f.write(DATA)
    inside = os.path.join(watched, "inside.bin")
    with open(inside, "wb") as f:
        f.write(DATA[:1000])

    ready_then_go(watched)

    # coreutils cp into the watched directory, and out of it
    subprocess.run(["cp", source, os.path.join(watched, "cp_default.bin")], check=True)
    subprocess.run(["cp", "--reflink=never", source, os.path.join(watched, "cp_never.bin")],
                   check=True)
    subprocess.run(["cp", inside, os.path.join(outside, "cp_out.bin")], check=True)

    # shutil.copyfile: sendfile, both ends watched
    shutil.copyfile(inside, os.path.join(watched, "shutil.bin"))

    # os.sendfile with an offset, from outside into the watched directory
    with open(source, "rb") as src, open(os.path.join(watched, "sent.bin"), "wb") as dst:
        os.sendfile(dst.fileno(), src.fileno(), 100, 500)

    # copy_file_range with both offsets given
    src = os.open(inside, os.O_RDONLY)
    dst = os.open(os.path.join(watched, "ranged.bin"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.copy_file_range(src, dst, 300, 10, 20)
    os.close(dst)

    # splice: a pipe into a watched file, a watched file into a pipe
    r, w = os.pipe()
    os.write(w, b"through a pipe")
    dst = os.open(os.path.join(watched, "spliced.bin"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.splice(r, dst, 14)
    os.close(dst)
    os.splice(src, w, 64, offset_src=5)
    os.read(r, 64)
    os.close(src)
    os.close(r)
    os.close(w)

    # space changes: posix_fallocate, then a punch hole by util-linux
    falloc = os.path.join(watched, "falloc.bin")
    fd = os.open(falloc, os.O_RDWR | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, 8192)
    os.close(fd)
    subprocess.run(["fallocate", "--punch-hole", "--offset", "0", "--length", "4096", falloc],
                   check=True)

    # the same outside: never reported
    shutil.copyfile(source, os.path.join(outside, "shutil_out.bin"))
    fd = os.open(os.path.join(outside, "falloc_out.bin"), os.O_RDWR | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, 4096)
    os.close(fd)
    print("done", flush=True)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
