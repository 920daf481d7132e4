"""``sniffwrites`` as a user runs it: options, filters, formats, signals,
errors and clean exits, each against a small real workload."""

import json
import os
import pathlib
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kernel"))

from kernel_objects import assert_no_new_objects, snapshot  # noqa: E402
from pybpf.kernel import objects  # noqa: E402
from pybpf.kernel.maps import Map  # noqa: E402
from older_kernels import SNIFFWRITES_WITHOUT_BPF_LOOP  # noqa: E402


def cli(*args, bounded=False):
    """The command line; ``bounded``: as a kernel without bpf_loop builds it."""
    start = ["-c", SNIFFWRITES_WITHOUT_BPF_LOOP] if bounded else ["-m", "sniffwrites.cli"]
    return [sys.executable] + start + [str(a) for a in args]


class Running:
    """A monitor subprocess, attached (its ready file written)."""

    def __init__(self, tmp_path, *args, stdout=None, bounded=False):
        self.ready = str(tmp_path / ("ready-%d" % time.monotonic_ns()))
        self.output = str(tmp_path / ("out-%d.jsonl" % time.monotonic_ns()))
        extra = [] if "--output" in args or stdout is not None or "top" in args[:1] \
            else ["--output", self.output]
        self.proc = subprocess.Popen(cli(*args, "--ready-file", self.ready, *extra,
                                         bounded=bounded), cwd=REPO,
                                     stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.ready) or not os.path.getsize(self.ready):
            if self.proc.poll() is not None:
                raise AssertionError("monitor exited %d: %s" % (self.proc.returncode,
                                                               self.proc.stderr.read()))
            assert time.monotonic() < deadline, "monitor did not attach"
            time.sleep(0.01)

    def stop(self, signum=signal.SIGINT):
        time.sleep(0.2)
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=30)
        self.stdout, self.stderr = out, err
        return self.proc.returncode

    def records(self):
        with open(self.output) as f:
            return [json.loads(line) for line in f]

    def events(self):
        return [r for r in self.records() if r["type"] == "event"]


@pytest.fixture
def watched(tmp_path):
    path = tmp_path / "watched"
    path.mkdir()
    return path


def python(code, *args):
    return subprocess.run([sys.executable, "-c", code] + [str(a) for a in args], check=True,
                          capture_output=True, text=True)


WRITE_ONE = "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600); " \
            "os.write(fd, b'x' * int(sys.argv[2])); os.close(fd)"


# --- errors -------------------------------------------------------------------------------

SETPRIV = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           "--inh-caps=-all", "--bounding-set=-all"]


def test_not_root_is_one_line_and_exit_1():
    """As nobody, with every capability dropped (a copy of the packages
    nobody may read, and an interpreter nobody may run)."""
    import click
    import construct
    if shutil.which("setpriv") is None:
        pytest.skip("util-linux setpriv is needed to drop privileges")
    base = tempfile.mkdtemp(prefix="sniffwrites-unpriv-")
    top = pathlib.Path(base)
    # laid out as the wheel installs it: programs/ is pybpf.programs
    for source, target in ((os.path.join(REPO, "pybpf"), "pybpf"),
                           (os.path.join(REPO, "programs"), "pybpf/programs"),
                           (os.path.join(REPO, "sniffwrites"), "sniffwrites"),
                           (os.path.dirname(click.__file__), "click"),
                           (os.path.dirname(construct.__file__), "construct")):
        shutil.copytree(source, str(top / target), ignore=shutil.ignore_patterns("__pycache__"))
    for root, dirs, files in os.walk(base):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    interpreter = next((c for c in dict.fromkeys([sys.executable, "/usr/bin/python3"])
                        if subprocess.run(SETPRIV + [c, "-c", "pass"]).returncode == 0), None)
    if interpreter is None:
        pytest.skip("no Python interpreter uid 65534 may run")
    try:
        result = subprocess.run(SETPRIV + [interpreter, "-B", "-m", "sniffwrites.cli",
                                           "monitor", "-d", "/tmp"],
                                cwd="/", capture_output=True, text=True, timeout=60,
                                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": base})
    finally:
        shutil.rmtree(base)
    assert result.returncode == 1, result.stderr
    assert result.stderr == "sniffwrites: sniffwrites needs root (or CAP_BPF+CAP_PERFMON)\n"


def test_a_missing_directory_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(cli("monitor", "-d", tmp_path / "nope"), cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "sniffwrites: directory %s does not exist\n" % (tmp_path / "nope")


def test_dump_bytecode_prints_the_programs_and_loads_nothing(watched):
    before = snapshot()
    result = subprocess.run(cli("monitor", "-d", watched, "--dump-bytecode"), cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("sniff_sys_exit", "sniff_close", "sniff_exec", "sniff_proc_exit"):
        assert "; ---- %s:" % name in result.stdout
    assert "call bpf_probe_read_kernel" in result.stdout
    assert "sniffwrites/bpf/hooks.py:" in result.stdout      # source lines interleaved
    assert_no_new_objects(before)


# --- clean exits ------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_drains_prints_the_summary_and_leaves_nothing(tmp_path, watched, signum):
    before = snapshot()
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    python(WRITE_ONE, watched / "a", 10)
    assert monitor.stop(signum) == 0
    assert "Traceback" not in monitor.stderr
    records = monitor.records()
    assert [r["op"] for r in records if r["type"] == "event"] == ["open", "write", "close"]
    assert records[-1]["type"] == "summary" and records[-1]["events"] == 3
    assert stat.S_IMODE(os.stat(monitor.output).st_mode) == 0o600
    assert_no_new_objects(before)


def test_head_closing_the_pipe_is_a_quiet_exit(watched):
    before = snapshot()
    ready = str(watched.parent / "ready")
    proc = subprocess.Popen("%s | head -2" % " ".join(cli("monitor", "-d", watched,
                                                          "--ready-file", ready)),
                            shell=True, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(5):
        python(WRITE_ONE, watched / ("f%d" % i), 1)
        time.sleep(0.15)
    out, err = proc.communicate(timeout=30)
    assert len(out.splitlines()) == 2
    assert "Traceback" not in err and "Error" not in err
    assert_no_new_objects(before)


def test_sighup_reopens_the_output_file(tmp_path, watched):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    python(WRITE_ONE, watched / "first", 1)
    time.sleep(0.3)
    os.rename(monitor.output, monitor.output + ".1")
    monitor.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    python(WRITE_ONE, watched / "second", 1)
    assert monitor.stop() == 0
    with open(monitor.output + ".1") as f:
        rotated = [json.loads(line) for line in f]
    assert {r["path"] for r in rotated if r["type"] == "event"} == {str(watched / "first")}
    assert {r["path"] for r in monitor.events()} == {str(watched / "second")}
    assert stat.S_IMODE(os.stat(monitor.output).st_mode) == 0o600


# --- filters --------------------------------------------------------------------------------

def test_operation_and_process_name_filters(tmp_path, watched):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "-o", "write",
                      "-p", "python3-other")
    python(WRITE_ONE, watched / "a", 3)
    # the same under another process name
    python("import ctypes, os, sys\n"
           "ctypes.CDLL(None).prctl(15, b'python3-other', 0, 0, 0)\n" + WRITE_ONE.replace(
               "; ", "\n"), watched / "b", 4)
    assert monitor.stop() == 0
    assert [(r["op"], os.path.basename(r["path"]), r["bytes"], r["comm"])
            for r in monitor.events()] == [("write", "b", 4, "python3-other")]


def test_pid_filter_follows_children_with_follow(tmp_path, watched):
    parent = subprocess.Popen([sys.executable, "-c",
                               "import os, sys, time\n"
                               "sys.stdin.readline()\n"
                               "fd = os.open(sys.argv[1] + '/p', os.O_WRONLY | os.O_CREAT)\n"
                               "os.write(fd, b'p')\n"
                               "if os.fork() == 0:\n"
                               "    os.write(os.open(sys.argv[1] + '/c', os.O_WRONLY | "
                               "os.O_CREAT), b'cc')\n"
                               "    os._exit(0)\n"
                               "os.wait()\n", str(watched)], stdin=subprocess.PIPE, text=True)
    try:
        plain = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "--pid", parent.pid)
        follow = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "--pid", parent.pid,
                         "--follow")
        python(WRITE_ONE, watched / "other", 1)           # another process: never
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.wait(timeout=30) == 0
    finally:
        if parent.poll() is None:
            parent.kill()
    assert plain.stop() == 0 and follow.stop() == 0
    writes = lambda m: sorted(os.path.basename(r["path"]) for r in m.events()  # noqa: E731
                              if r["op"] == "write")
    assert writes(plain) == ["p"]
    assert writes(follow) == ["c", "p"]


def test_failed_calls_only_with_failed(tmp_path, watched):
    quiet = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    loud = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "--failed")
    python("import os, sys\ntry:\n    os.open(sys.argv[1], os.O_RDONLY)\nexcept OSError:\n"
           "    pass\n", watched / "missing")
    assert quiet.stop() == 0 and loud.stop() == 0
    assert quiet.events() == []
    (event,) = loud.events()
    assert event["op"] == "open" and event["errno"] == "ENOENT" and event["ret"] == -2
    assert event["path"] == str(watched / "missing")


# --- the fd table: exec, threads -------------------------------------------------------------

def test_exec_closes_cloexec_fds_and_keeps_the_others(tmp_path, watched):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    python("import os, sys\n"
           "keep = os.open(sys.argv[1] + '/keep', os.O_WRONLY | os.O_CREAT)\n"
           "os.set_inheritable(keep, True)\n"
           "gone = os.open(sys.argv[1] + '/gone', os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)\n"
           "os.execv('/bin/sh', ['sh', '-c', 'echo kept >&%d' % keep])\n", watched)
    assert monitor.stop() == 0
    events = [(r["op"], os.path.basename(r["path"]), r["comm"], bool(r.get("implicit")))
              for r in monitor.events()]
    assert ("close", "gone", "sh", True) in events
    assert ("write", "keep", "sh", False) in events
    assert ("close", "keep", "sh", True) in events          # at exit


def test_threads_report_the_process_and_the_thread(tmp_path, watched):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    python("import os, sys, threading\n"
           "fd = os.open(sys.argv[1] + '/t', os.O_WRONLY | os.O_CREAT)\n"
           "t = threading.Thread(target=os.write, args=(fd, b'thread'))\n"
           "t.start(); t.join()\n", watched)
    assert monitor.stop() == 0
    (write,) = [r for r in monitor.events() if r["op"] == "write"]
    assert write["pid"] != write["tid"] and write["bytes"] == 6


def test_a_chrooted_process_gets_paths_from_its_root(tmp_path, watched):
    jail = watched / "jail"
    jail.mkdir()
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    python("import os, sys\n"
           "os.chroot(sys.argv[1]); os.chdir('/')\n"
           "os.write(os.open('/inside', os.O_WRONLY | os.O_CREAT), b'x')\n", jail)
    assert monitor.stop() == 0
    (write,) = [r for r in monitor.events() if r["op"] == "write"]
    assert write["path"] == "/inside"


def test_deleted_files_are_marked(tmp_path, watched):
    """A file unlinked before it was walked (here: by a child, which walks
    its inherited fd anew) is marked deleted, with the name it had."""
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    python("import os, sys\n"
           "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
           "os.unlink(sys.argv[1])\n"
           "if os.fork() == 0:\n"
           "    os.write(fd, b'x')\n"
           "    os._exit(0)\n"
           "os.wait()\n", watched / "doomed")
    assert monitor.stop() == 0
    (write,) = [r for r in monitor.events() if r["op"] == "write"]
    assert write["path"] == str(watched / "doomed") and write["deleted"] is True


# --- modes ----------------------------------------------------------------------------------

def test_aggregate_counts_in_the_kernel(tmp_path, watched):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "--aggregate")
    python("import os, sys\n"
           "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
           "for _ in range(5000):\n    os.write(fd, b'ab')\n"
           "os.lseek(fd, 0, 0)\n"
           "for _ in range(1000):\n    os.read(fd, 3)\n"
           "os.close(fd)\n", watched / "counted")
    assert monitor.stop() == 0
    records = monitor.records()
    (agg,) = [r for r in records if r["type"] == "aggregate" and r["closed"]]
    assert (agg["writes"], agg["write_bytes"], agg["reads"], agg["read_bytes"]) == \
        (5000, 10000, 1000, 3000)
    assert not [r for r in records if r["type"] == "event"]


def test_capture_is_opt_in_and_escaped(tmp_path, watched):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "--capture", "8")
    python("import os, sys\n"
           "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\n"
           "os.write(fd, b'\\x1b[31mred\\nline and more')\n", watched / "c")
    assert monitor.stop() == 0
    (write,) = [r for r in monitor.events() if r["op"] == "write"]
    assert write["data"] == "\\x1b[31mred" and write["bytes"] == 22


def test_debug_shows_everything_with_raw_details(tmp_path, watched):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "--debug", "-o",
                      "read")
    python(WRITE_ONE, tmp_path / "elsewhere", 2)
    assert monitor.stop() == 0
    events = monitor.events()
    elsewhere = [r for r in events if r["path"] == str(tmp_path / "elsewhere")]
    assert {r["op"] for r in elsewhere} >= {"open", "write", "close"}
    assert all("file_id=" in r["debug"] for r in elsewhere)
    assert any("in_dirs=no" in r["debug"] for r in elsewhere)
    assert any(r["path"].startswith(("pipe:[", "socket:[", "anon_inode:"))
               or r["path"].startswith("/") for r in events)


def test_text_and_table_formats(tmp_path, watched):
    for fmt in ("text", "table"):
        monitor = Running(tmp_path, "monitor", "-d", watched, "-f", fmt,
                          stdout=subprocess.PIPE)
        python(WRITE_ONE, watched / ("x-" + fmt), 5)
        assert monitor.stop() == 0
        lines = monitor.stdout.splitlines()
        assert any(("x-" + fmt) in line and "write" in line for line in lines), lines
        if fmt == "table":
            assert lines[0].split()[:3] == ["TIME", "OP", "PID"]
        assert "3 events (open 1, write 1, close 1); lost records 0, map full 0" in monitor.stderr


def test_top_prints_a_table_per_interval_when_not_a_tty(tmp_path, watched):
    monitor = Running(tmp_path, "top", "-d", watched, "--interval", "0.3",
                      stdout=subprocess.PIPE)
    done = threading.Event()

    def busy():
        python("import os, sys, time\n"
               "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\n"
               "end = time.time() + 1.2\n"
               "while time.time() < end:\n    os.write(fd, b'x' * 100)\n", watched / "hot")
        done.set()
    worker = threading.Thread(target=busy)
    worker.start()
    worker.join()
    assert monitor.stop() == 0
    assert "\x1b" not in monitor.stdout
    tables = [t for t in monitor.stdout.split("sniffwrites top") if t.strip()]
    assert len(tables) >= 2
    assert any("hot" in t for t in tables)


# --- loss is never silent -----------------------------------------------------------------

# Opens, 1-byte writes and closes of 500 files, then 3000 quick opens and
# closes: every kind of record (Text, FileRec, Io, Agg) in both modes, far
# faster than a 4 KiB ring is drained (--aggregate sends no Io per write).
BURST = ("import os, sys\n"
         "for i in range(500):\n"
         "    fd = os.open(os.path.join(sys.argv[1], 'f%d' % (i % 50)), os.O_WRONLY | os.O_CREAT)\n"
         "    for _ in range(40):\n        os.write(fd, b'x')\n"
         "    os.close(fd)\n"
         "for i in range(3000):\n"
         "    os.close(os.open(os.path.join(sys.argv[1], 'f%d' % (i % 50)), os.O_RDONLY))\n")


@pytest.mark.parametrize("mode", [[], ["--aggregate"]], ids=["per-event", "aggregate"])
def test_a_full_ring_is_counted_exactly_by_kind_in_the_stream_and_the_summary(
        tmp_path, watched, mode):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "--ring-size", 4096,
                      "--interval", "0.2", *mode)
    python(BURST, watched)
    assert monitor.stop() == 0
    records = monitor.records()
    lost = [r for r in records if r["type"] == "lost"]
    summary = records[-1]
    assert lost and sum(r["ring"] for r in lost) == summary["lost_records"] > 0
    # The kernel's account: every record emitted was received or dropped.
    assert summary["unaccounted"] == 0
    assert summary["received"] + summary["dropped"] == summary["emitted"]
    assert summary["dropped"] == summary["lost_records"]
    for kind in ("io", "file", "text", "aggregate"):
        assert summary["received_" + kind] + summary["dropped_" + kind] == \
            summary["emitted_" + kind], kind
    assert summary["emitted_file"] >= 50 and summary["emitted_aggregate"] >= 3500
    if not mode:
        writes = [r for r in records if r["type"] == "event" and r["op"] == "write"]
        assert summary["emitted_io"] >= 20000 + 500
        assert len(writes) <= summary["received_io"]
    # The text summary says the same on stderr.
    text = Running(tmp_path, "monitor", "-d", watched, "--ring-size", 4096, *mode)
    python(BURST, watched)
    assert text.stop() == 0
    line = [l for l in text.stderr.splitlines() if "records emitted" in l][-1]
    assert "UNACCOUNTED" not in line
    emitted, received, dropped = map(int, re.search(
        r"records emitted (\d+) = received (\d+) \+ dropped (\d+)", line).groups())
    assert received + dropped == emitted and dropped > 0


def test_a_full_fd_cache_is_counted_and_costs_walks_not_events(tmp_path, watched):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "--fd-cache-size", 4)
    python("import os, sys\n"
           "fds = [os.open('%s/f%d' % (sys.argv[1], i), os.O_WRONLY | os.O_CREAT)\n"
           "       for i in range(12)]\n"
           "for fd in fds:\n    os.write(fd, b'abc')\n", watched)
    assert monitor.stop() == 0
    records = monitor.records()
    writes = [r for r in records if r["type"] == "event" and r["op"] == "write"]
    assert sorted(os.path.basename(r["path"]) for r in writes) == \
        sorted("f%d" % i for i in range(12))
    assert records[-1]["map_full"] > 0
    assert any(r["type"] == "lost" and r["map_full"] > 0 for r in records)


def cached_tgids():
    """The tgids in sniffwrites' fd cache (the map named ``fds``), read as
    bpftool would, by id: an 8-byte key, ``struct {u32 tgid; u32 fd;}``,
    comes as a little-endian integer."""
    newest = max(m.id for m in objects.MAPS.infos() if m.name == "fds")
    with Map.from_id(newest) as fds:
        return {key & 0xFFFFFFFF for key in fds.keys()}


def test_a_sweep_cut_short_is_counted_and_its_entries_purged(tmp_path, watched):
    """Without bpf_loop an exit sweep stops after MAX_SWEEP_BOUNDED fds: it is
    counted, and the monitor drops what the kernel left of the process."""
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json", "--interval", 0.2,
                      bounded=True)
    child = subprocess.Popen([sys.executable, "-c",
                              "import os, sys\n"
                              "fds = [os.open('%s/f%d' % (sys.argv[1], i), os.O_RDWR | os.O_CREAT)\n"
                              "       for i in range(400)]\n"
                              "print('open', flush=True)\n"
                              "sys.stdin.readline()\n", str(watched)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "open\n"
        time.sleep(0.3)
        assert child.pid in cached_tgids()
        child.communicate("exit\n", timeout=30)         # exits with 400 fds open
        deadline = time.monotonic() + 10
        while child.pid in cached_tgids():
            assert time.monotonic() < deadline, "the dead process's entries stayed"
            time.sleep(0.1)
    finally:
        child.kill()
        assert monitor.stop() == 0
    summary = monitor.records()[-1]
    assert summary["type"] == "summary" and summary["sweep_incomplete"] >= 1
    closes = [r["fd"] for r in monitor.events() if r["op"] == "close" and r["pid"] == child.pid]
    # the sweep looked at fds 0..255 (MAX_SWEEP_BOUNDED): those of the files there closed
    assert len(closes) > 200 and max(closes) == 255


# --- paths ------------------------------------------------------------------------------------

def test_across_mounts_and_several_directories(tmp_path, watched):
    shm = tempfile.mkdtemp(prefix="sniffwrites-", dir="/dev/shm")
    try:
        monitor = Running(tmp_path, "monitor", "-d", watched, "-d", shm, "-f", "json")
        python(WRITE_ONE, os.path.join(shm, "on-tmpfs"), 2)
        python(WRITE_ONE, watched / "on-tmp", 3)
        python(WRITE_ONE, tmp_path / "not-watched", 4)
        assert monitor.stop() == 0
    finally:
        shutil.rmtree(shm)
    writes = {r["path"]: r["bytes"] for r in monitor.events() if r["op"] == "write"}
    assert writes == {os.path.join(shm, "on-tmpfs"): 2, str(watched / "on-tmp"): 3}


def test_a_path_longer_than_path_max_is_marked_truncated(tmp_path, watched):
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    python("import os, sys\n"
           "os.chdir(sys.argv[1])\n"
           "for i in range(20):\n"
           "    os.mkdir('d' * 250); os.chdir('d' * 250)\n"
           "fd = os.open('deep.txt', os.O_WRONLY | os.O_CREAT)\n"
           "os.write(fd, b'x')\n", watched)
    assert monitor.stop() == 0
    (write,) = [r for r in monitor.events() if r["op"] == "write"]
    assert write["truncated"] is True
    assert write["path"].endswith("/" + "/".join(["d" * 250] * 3) + "/deep.txt")
    assert len(write["path"].encode()) < 4096


def test_pipes_and_sockets_are_named_like_proc(tmp_path):
    code = ("import os, socket, sys\n"
            "sys.stdin.readline()\n"
            "r, w = os.pipe()\n"
            "a, b = socket.socketpair()\n"
            "os.write(w, b'pipe')\n"
            "os.write(a.fileno(), b'sock')\n"
            "print(os.readlink('/proc/self/fd/%d' % w), os.readlink('/proc/self/fd/%d' % "
            "a.fileno()), flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        monitor = Running(tmp_path, "monitor", "--pid", proc.pid, "-o", "write", "-f", "json")
        out, _ = proc.communicate("go\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert monitor.stop() == 0
    pipe_name, socket_name = out.split()
    paths = {r["path"] for r in monitor.events()}
    assert {pipe_name, socket_name} <= paths, (out, paths)


def test_open_and_creat_where_the_architecture_has_them(tmp_path, watched):
    if os.uname().machine != "x86_64":
        pytest.skip("open(2) and creat(2) exist on x86_64")
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    python("import ctypes, os, sys\n"
           "libc = ctypes.CDLL(None)\n"
           "fd = libc.syscall(85, (sys.argv[1] + '/created').encode(), 0o600)\n"   # creat
           "os.close(fd)\n"
           "fd = libc.syscall(2, (sys.argv[1] + '/created').encode(), os.O_RDONLY)\n"  # open
           "os.close(fd)\n", watched)
    assert monitor.stop() == 0
    opens = [r for r in monitor.events() if r["op"] == "open"]
    assert [r["syscall"] for r in opens] == ["creat", "open"]
    assert opens[0]["flags"] & os.O_CREAT and all(r["path"] == str(watched / "created")
                                                  for r in opens)


def test_a_kernel_refusal_is_one_line(tmp_path, watched, monkeypatch, capsys):
    """What the CLI does with an error from the kernel side (here a missing
    feature, raised by a stand-in monitor): one line, exit 1."""
    from pybpf.errors import UnsupportedFeature
    from sniffwrites import cli as cli_module
    from sniffwrites.config import Config

    class Refused:
        def __init__(self, cfg, sink):
            self.sink = sink

        def install_signals(self):
            pass

        def start(self):
            raise UnsupportedFeature("bpf_loop", "5.17")

        def close(self):
            self.sink.close()

    monkeypatch.setattr(cli_module, "missing_feature", lambda: None)
    with pytest.raises(SystemExit) as exit:
        cli_module.run_monitor(Config.make(dirs=[str(watched)], output=str(tmp_path / "o")),
                               Refused)
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bpf_loop" in err and "5.17" in err
