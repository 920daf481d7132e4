"""sniffwrites against strace: the same workload, seen by both.

``workloads/sniffwrites_cases.py`` runs under ``strace -f -y`` while
``sniffwrites monitor`` writes JSON Lines to a file. Every operation strace
saw on a file in the watched directory (after the workload's start marker)
must appear in the monitor's output exactly once, with the same pid, fd,
operation, absolute path and byte count; nothing outside the directory may
appear. strace's ``-y`` shows the kernel's path of every fd, which is the
truth the monitor's walk must match.
"""

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKLOAD = os.path.join(HERE, "workloads", "sniffwrites_cases.py")
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kernel"))

from older_kernels import SNIFFWRITES_WITHOUT_BPF_LOOP  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")

# strace syscall name -> sniffwrites operation
OPS = {
    "open": "open", "openat": "open", "openat2": "open", "creat": "open",
    "read": "read", "pread64": "read", "readv": "read", "preadv": "read", "preadv2": "read",
    "write": "write", "pwrite64": "write", "writev": "write", "pwritev": "write",
    "pwritev2": "write",
    "close": "close", "ftruncate": "truncate", "truncate": "truncate",
    "rename": "rename", "renameat": "rename", "renameat2": "rename",
    "unlink": "unlink", "unlinkat": "unlink", "rmdir": "unlink", "fallocate": "fallocate",
}
#: copies: strace syscall name -> (index of the source, of the destination) among its fd args
COPIES = {"copy_file_range": (0, 1), "splice": (0, 1), "sendfile": (1, 0)}
#: operations whose events carry a byte count (fallocate: its length)
COUNTED = ("read", "write", "fallocate")
LINE = re.compile(r"^(\d+) +(\w+)\((.*)\) += (-?\d+)(?:<(.*)>)?(?: \w+ \(.*\))?$")
FD_ARG = re.compile(r"^(-?\d+)<([^>]*)>")
FD_ARGS = re.compile(r"(?:^|, )(\d+)<([^>]*)>")
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def monitor_cmd(*args, bounded=False):
    """The monitor; ``bounded``: as a kernel without bpf_loop builds it."""
    start = ["-c", SNIFFWRITES_WITHOUT_BPF_LOOP] if bounded else ["-m", "sniffwrites.cli"]
    return [sys.executable] + start + ["monitor"] + [str(a) for a in args]


def wait_for(path, proc, timeout=100.0):
    """Until ``proc`` wrote ``path`` (a hang guard, not a speed check: a cold
    build in an emulated guest of tools/kernel_matrix.py takes ~35 s)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) or not os.path.getsize(path):
        if proc.poll() is not None:
            raise AssertionError("the monitor exited %d: %s" % (proc.returncode,
                                                                proc.stderr.read()))
        if time.monotonic() > deadline:
            raise AssertionError("the monitor did not attach in %.0f s" % timeout)
        time.sleep(0.01)


def merged_lines(text):
    """strace -f lines with <unfinished ...> / <... resumed> put back together."""
    pending = {}
    for line in text.splitlines():
        m = re.match(r"^(\d+) +(.*)$", line)
        if not m:
            continue
        pid, rest = m.groups()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[:-len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"^<\.\.\. \w+ resumed>(.*)$", rest)
        if resumed:
            rest = pending.pop(pid, "") + resumed.group(1)
        yield "%s %s" % (pid, rest)


def strace_events(text, watched, cwd):
    """(pid, op, fd, path, bytes) of every file operation in ``watched``
    after the workload's start marker."""
    events = []
    started = False
    cwds = {}
    for line in merged_lines(text):
        m = LINE.match(line)
        if not m:
            continue
        pid, name, args, ret, ret_path = m.groups()
        pid, ret = int(pid), int(ret)
        if not started:
            started = ".go" in args
            continue
        if name == "chdir" and ret == 0:
            cwds[pid] = os.path.join(cwds.get(pid, cwd), STRING.search(args).group(1))
            continue
        if name in COPIES and ret >= 0:
            ends = FD_ARGS.findall(args)
            source, target = (ends[i] for i in COPIES[name])
            for (fd, path), op in ((target, "write"), (source, "read")):
                if path == watched or path.startswith(watched + "/"):
                    events.append((pid, op, int(fd), path, ret))
            continue
        op = OPS.get(name)
        if op is None or ret < 0:
            continue
        fd_arg = FD_ARG.match(args)
        if op == "open":
            fd, path = ret, ret_path
        elif op in ("rename", "unlink") or name == "truncate":
            names = STRING.findall(args)
            base = cwds.get(pid, cwd)
            dirfd = FD_ARG.match(args)
            if dirfd and dirfd.group(1) != "-100":
                base = dirfd.group(2)
            path = os.path.normpath(os.path.join(base, names[0]))
            fd = -1
        else:
            fd, path = int(fd_arg.group(1)), fd_arg.group(2)
        if not (path == watched or path.startswith(watched + "/")):
            continue
        moved = ret if op in ("read", "write") else None
        if op == "fallocate":
            moved = int(args.rsplit(",", 1)[1])
        events.append((pid, op, fd, path, moved))
    assert started, "no start marker in strace's output"
    return events


@pytest.fixture(scope="module", params=["bpf_loop", "bounded"])
def traced_run(tmp_path_factory, request):
    """One traced workload per way the monitor can be built: with
    ``bpf_loop`` where this kernel has it, and with bounded loops."""
    return run_traced(tmp_path_factory.mktemp("sniffwrites-strace"), WORKLOAD,
                      request.param == "bounded")


def run_traced(base, workload_path, bounded=False):
    """``workload_path WATCHED OUTSIDE`` under ``strace -f -y`` while the
    monitor watches ``base/watched``: what each saw."""
    watched = str(base / "watched")
    outside = str(base / "outside")
    os.makedirs(watched)
    os.makedirs(outside)
    trace = str(base / "strace.txt")
    output = str(base / "events.jsonl")
    ready = str(base / "ready")
    workload = subprocess.Popen(
        ["strace", "-f", "-y", "-qq", "-s", "64", "-e", "trace=%file,%desc", "-o", trace,
         sys.executable, workload_path, watched, outside],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(base))
    monitor = None
    try:
        assert workload.stdout.readline().strip() == "ready"
        monitor = subprocess.Popen(
            monitor_cmd("-d", watched, "-f", "json", "--output", output, "--ready-file", ready,
                        "-v", bounded=bounded), cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        wait_for(ready, monitor)
        workload.stdin.write("go\n")
        workload.stdin.flush()
        assert workload.stdout.readline().strip() == "done"
        assert workload.wait(timeout=60) == 0
        time.sleep(0.3)
        monitor.send_signal(signal.SIGINT)
        _, stderr = monitor.communicate(timeout=30)
        assert monitor.returncode == 0, stderr
    finally:
        for proc in (workload, monitor):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    with open(output) as f:
        records = [json.loads(line) for line in f]
    with open(trace) as f:
        expected = strace_events(f.read(), watched, str(base))
    return dict(watched=watched, outside=outside, records=records, expected=expected,
                stderr=stderr, workload_pid=workload.pid)


def observed(run):
    pids = {e[0] for e in run["expected"]}
    return [(r["pid"], r["op"], r["fd"], r["path"], r["bytes"] if r["op"] in COUNTED else None)
            for r in run["records"]
            if r["type"] == "event" and r["pid"] in pids and not r.get("implicit")]


def test_every_operation_strace_saw_appears_once(traced_run):
    expected = collections.Counter(traced_run["expected"])
    seen = collections.Counter(observed(traced_run))
    missing = expected - seen
    extra = seen - expected
    assert not missing, "strace saw, the monitor did not: %s" % sorted(missing)
    assert not extra, "the monitor reported what strace did not see: %s" % sorted(extra)
    assert sum(expected.values()) > 40


def test_nothing_outside_the_directory_is_reported(traced_run):
    watched = traced_run["watched"]
    for r in traced_run["records"]:
        if r["type"] == "event":
            assert r["path"] == watched or r["path"].startswith(watched + "/"), r


def test_cases_come_out_right(traced_run):
    run = traced_run
    watched = run["watched"]
    events = [r for r in run["records"] if r["type"] == "event"]
    by_path = collections.defaultdict(list)
    for r in events:
        by_path[os.path.relpath(r["path"], watched)].append(r)
    # the pre-opened fd: its reads and writes and close have its path
    assert [r["op"] for r in by_path["pre.txt"]] == ["write", "read", "close"]
    # via a symlink: the real file, with the path as given on the open
    target = by_path["sub/target.txt"]
    assert target[0]["op"] == "open" and target[0]["given_path"].endswith("/outside/link.txt")
    assert by_path["viadir.txt"][0]["given_path"].endswith("/outside/dirlink/viadir.txt")
    # the long path
    (long_path,) = [p for p in by_path if p.endswith("long.txt")]
    assert len(os.path.join(watched, long_path)) > 255
    assert not any(r.get("truncated") for r in by_path[long_path])
    # the child's write to an inherited fd: its own pid, the parent as ppid
    writes = [r for r in by_path["inherited.txt"] if r["op"] == "write"]
    child = [r for r in writes if r["bytes"] == len(b"from the child")]
    assert len(child) == 1 and child[0]["pid"] != child[0]["ppid"]
    parent = [r for r in writes if r["bytes"] == len(b"from the parent")][0]
    assert child[0]["ppid"] == parent["pid"]
    # dup2 over an open fd closes it implicitly; the new fd is the dup's file
    assert any(r["op"] == "close" and r.get("implicit") for r in by_path["over.txt"])
    assert [r["bytes"] for r in by_path["dup.txt"] if r["op"] == "write"] == [6, 11]
    # close_range: implicit closes, and the fd number reused outside is not reported
    assert any(r["op"] == "close" and r.get("implicit") for r in by_path["range2.txt"])
    assert not any("reuse" in r["path"] for r in events)
    # path operations
    renames = [r for r in events if r["op"] == "rename"]
    assert {(os.path.relpath(r["path"], watched), os.path.relpath(r["new_path"], watched))
            for r in renames} == {("sub/rel.txt", "sub/renamed.txt"),
                                  ("sub/at.txt", "sub/at2.txt")}
    truncates = [r for r in events if r["op"] == "truncate"]
    assert {(os.path.basename(r["path"]), r["bytes"]) for r in truncates} == \
        {("at.txt", 4), ("two.txt", 3)}
    # every event has process context
    for r in events:
        assert r["pid"] > 0 and r["tid"] > 0 and r["ppid"] > 0 and r["comm"]
        assert r["uid"] == os.getuid()


def test_the_exit_summary_counts_no_loss(traced_run):
    summary = [r for r in traced_run["records"] if r["type"] == "summary"]
    assert len(summary) == 1
    assert summary[0]["lost_records"] == 0 and summary[0]["map_full"] == 0
    assert not [r for r in traced_run["records"] if r["type"] == "lost"]
