"""Each example in ``pybpf.examples`` loads, attaches, sees what the test
makes happen, and reports it; and runs as ``python3 -m pybpf.examples.NAME``."""

import os
import platform
import subprocess
import sys
from pathlib import Path

from packets import tcp4, udp4

from pybpf.dsl import collection_spec
from pybpf.examples import (count_by_comm, execsnoop, read_sizes, syscall_latency,
                            write_bytes, xdp_protocols)
from pybpf.loader import Collection

COMM = Path("/proc/self/comm").read_text().strip()
GETPPID = {"x86_64": 110, "aarch64": 173}[platform.machine()]


def attached(module):
    return Collection(collection_spec(module)).attach()


def test_write_bytes_counts_our_writes(no_leaks):
    with attached(write_bytes) as loaded, open("/dev/null", "wb", buffering=0) as sink:
        for _ in range(10):
            sink.write(b"x" * 1000)
        lines = write_bytes.report(loaded).splitlines()
    ours = [int(line.split()[-1]) for line in lines if line.split()[0] == COMM]
    assert ours and ours[0] >= 10000, lines


def test_read_sizes_histogram_has_our_reads(no_leaks):
    with attached(read_sizes) as loaded, open("/dev/zero", "rb", buffering=0) as source:
        for _ in range(20):
            source.read(100)
        text = read_sizes.report(loaded)
        buckets = dict(read_sizes.sizes.histogram(loaded.maps.sizes).items())
    assert text.startswith("@bytes: \n[")
    assert buckets[(64, 127)] >= 20
    assert any(line.startswith("[64, 128)") for line in text.splitlines())


def test_execsnoop_sees_an_exec(no_leaks):
    with attached(execsnoop) as loaded:
        reader = loaded.reader(execsnoop.execs, execsnoop.Exec)
        subprocess.run(["/bin/true"], check=True)
        seen = []
        while not any(line.split()[-1] == "/bin/true" for line in seen):
            assert reader.poll(lambda ev: seen.append(execsnoop.line(ev)), timeout=30), seen
    ours = [line for line in seen if line.split()[-1] == "/bin/true"][0].split()
    assert int(ours[1]) == os.getpid()                  # the parent is this test


def test_syscall_latency_counts_a_syscall(no_leaks):
    with attached(syscall_latency) as loaded:
        for _ in range(50):
            os.getppid()
        rows = syscall_latency.report(loaded).splitlines()
    assert rows[0].split() == ["SYSCALL", "CALLS", "TOTAL_US"]
    calls = {int(row.split()[0]): int(row.split()[1]) for row in rows[1:]}
    assert calls[GETPPID] >= 50


def test_xdp_protocols_counts_by_ip_protocol(no_leaks):
    with Collection(collection_spec(xdp_protocols)) as loaded:
        program = loaded.programs.count_protocols
        for frame in [udp4(53)] * 3 + [tcp4(80)] * 2:
            assert program.test_run(frame).retval == 2          # XDP_PASS
        assert xdp_protocols.report(loaded) == "tcp               2\nudp               3\n"


def test_count_by_comm_counts_our_syscalls(no_leaks):
    with attached(count_by_comm) as loaded:
        for _ in range(20):
            os.getppid()
        lines = count_by_comm.report(loaded).splitlines()
    ours = [line for line in lines if line.startswith("@[%s]: " % COMM)]
    assert ours and int(ours[0].split()[-1]) >= 20, lines


def test_examples_run_as_modules():
    for name in ("read_sizes", "count_by_comm", "execsnoop"):
        run = subprocess.run([sys.executable, "-m", "pybpf.examples." + name, "--duration",
                              "0.2"], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert "Tracing... Hit Ctrl-C to end." in run.stderr
    assert run.stdout.startswith("PID     PPID    COMM")
