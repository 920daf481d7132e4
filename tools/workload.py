#!/usr/bin/env python3
"""The fixed workload every monitor benchmark runs.

Phases, each timed on its own:

* ``cycles``: open/write/read/close of small files in the target directory;
* ``read_inside``: 1-byte reads of a file inside the target directory;
* ``read_outside``: the same on a file outside it (must cost next to nothing
  under a monitor that filters in the kernel);
* ``getppid``: a syscall that is not file I/O. A hook on every syscall (raw
  ``sys_enter``/``sys_exit``) charges it too, so that design choice shows.

It prints one JSON object: the counts it performed and the time per
operation of each phase, so the harness can compare runs and check that the
monitor saw exactly what was done.

    python3 tools/workload.py --dir /tmp/watched --reads 100000
"""

import argparse
import json
import os
import sys
import tempfile
import time

READ_FILE_SIZE = 1 << 20
PHASES = ("cycles", "read_inside", "read_outside", "getppid")


def _prepare(path: str) -> None:
    with open(path, "wb") as out:
        out.write(b"x" * READ_FILE_SIZE)


def cycles(directory: str, count: int) -> float:
    start = time.perf_counter_ns()
    for i in range(count):
        path = os.path.join(directory, "cycle-%d.dat" % (i % 16))
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
        os.write(fd, b"0123456789abcdef")
        os.lseek(fd, 0, os.SEEK_SET)
        os.read(fd, 16)
        os.close(fd)
    return time.perf_counter_ns() - start


def read_loop(path: str, count: int) -> float:
    """``count`` 1-byte reads; rewinds at EOF (a read of 0 bytes still counts)."""
    fd = os.open(path, os.O_RDONLY)
    read = os.read
    try:
        start = time.perf_counter_ns()
        remaining = count
        while remaining:
            chunk = min(remaining, READ_FILE_SIZE)
            for _ in range(chunk):
                read(fd, 1)
            remaining -= chunk
            os.lseek(fd, 0, os.SEEK_SET)
        return time.perf_counter_ns() - start
    finally:
        os.close(fd)


def getppid_loop(count: int) -> float:
    getppid = os.getppid
    start = time.perf_counter_ns()
    for _ in range(count):
        getppid()
    return time.perf_counter_ns() - start


def run(directory: str, outside_dir: str, n_cycles: int, reads: int, syscalls: int,
        phases=PHASES) -> dict:
    inside = os.path.join(directory, "inside.dat")
    outside = os.path.join(outside_dir, "outside.dat")
    _prepare(inside)
    _prepare(outside)
    runners = {
        "cycles": (n_cycles, lambda: cycles(directory, n_cycles)),
        "read_inside": (reads, lambda: read_loop(inside, reads)),
        "read_outside": (reads, lambda: read_loop(outside, reads)),
        "getppid": (syscalls, lambda: getppid_loop(syscalls)),
    }
    result = {"pid": os.getpid(), "directory": os.path.abspath(directory), "phases": {}}
    for name in phases:
        count, fn = runners[name]
        elapsed = fn()
        result["phases"][name] = {"count": count, "ns_total": elapsed,
                                  "ns_per_op": elapsed / count if count else 0.0}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="the watched directory")
    parser.add_argument("--outside", help="a directory that is not watched (default: a temp dir)")
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=100000)
    parser.add_argument("--syscalls", type=int, default=100000)
    parser.add_argument("--phase", action="append", choices=PHASES)
    args = parser.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="workload-outside-") as default_outside:
        outside = args.outside or default_outside
        result = run(args.dir, outside, args.cycles, args.reads, args.syscalls,
                     tuple(args.phase or PHASES))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
