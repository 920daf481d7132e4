"""One monitor under test, as a subprocess: started as a user starts it,
timed until it is attached, watched through ``/proc`` (memory, CPU, the BPF
programs it holds), stopped with SIGINT, and what it reported parsed back
into operations and losses.

Part of ``tools/bench_monitor.py``: it knows how to run and read each monitor
(sniffwrites per event, sniffwrites ``--aggregate``, bpftrace), not what the
benchmark measures with them.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
BPFTRACE_SCRIPT = os.path.join(TOOLS, "sniffwrites.bt")

UNTRACED = "untraced"
SNIFF = "sniffwrites"
SNIFF_AGG = "sniffwrites --aggregate"
BPFTRACE = "bpftrace"
MONITORS = (SNIFF, SNIFF_AGG, BPFTRACE)
OPS = ("open", "read", "write", "close")


# --- what /proc says about a process ------------------------------------------------------

def _status_kib(pid: int, field: str) -> Optional[int]:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _fdinfos(pid: int) -> Iterator[Dict[str, str]]:
    """The fields of ``/proc/PID/fdinfo/FD`` for each fd of ``pid`` still open."""
    base = "/proc/%d/fdinfo" % pid
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        fields: Dict[str, str] = {}
        try:
            with open(os.path.join(base, name)) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    fields[key.strip()] = value.strip()
        except OSError:
            continue
        yield fields


def _prog_ids_of(pid: int) -> List[int]:
    """Ids of the BPF programs process ``pid`` holds (prog fds and links)."""
    ids = set()
    for fields in _fdinfos(pid):
        if "prog_id" in fields:
            try:
                ids.add(int(fields["prog_id"]))
            except ValueError:
                pass
    return sorted(ids)


def _attach_points(pid: int) -> Dict[int, str]:
    """prog id -> tracepoint name, from the ``tp_name`` of the links ``pid`` holds."""
    points: Dict[int, str] = {}
    for fields in _fdinfos(pid):
        if "prog_id" in fields and "tp_name" in fields:
            try:
                points[int(fields["prog_id"])] = fields["tp_name"]
            except ValueError:
                pass
    return points


def _cpu_ns(pid: int) -> Optional[int]:
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_idle(pid: int, timeout: float = 120.0, window: float = 0.1,
              busy_ns: float = 5e6) -> float:
    """Wait until process ``pid`` has used less than ``busy_ns`` of CPU in
    the last ``window`` seconds (a monitor that has drained its backlog);
    return how long that took."""
    start = time.monotonic()
    last = _cpu_ns(pid)
    while last is not None and time.monotonic() - start < timeout:
        time.sleep(window)
        now = _cpu_ns(pid)
        if now is None or now - last < busy_ns:
            break
        last = now
    return time.monotonic() - start


# --- parsing what the monitors wrote ------------------------------------------------------

_OTHER_LINE = re.compile(rb'^(?!\{"type": "event").+$', re.MULTILINE)
_BPFTRACE_LOST = re.compile(rb"Lost (\d+) events")


def _chunks(path: str, size: int = 8 << 20) -> Iterator[bytes]:
    """Whole lines of ``path``, several MiB at a time."""
    with open(path, "rb") as f:
        rest = b""
        while True:
            data = f.read(size)
            if not data:
                if rest:
                    yield rest
                return
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            yield data[:cut]


def parse_sniffwrites(path: str) -> Dict[str, object]:
    """Operations reported in a ``-f json`` output (events, or the counts of
    closed-file ``aggregate`` records), losses and the exit summary."""
    ops = dict.fromkeys(OPS, 0)
    lost_lines = 0
    summary: Optional[dict] = None
    aggregates = 0
    for chunk in _chunks(path):
        for op in OPS:
            ops[op] += chunk.count(b'"op": "' + op.encode() + b'"')
        for match in _OTHER_LINE.finditer(chunk):
            try:
                record = json.loads(match.group(0))
            except ValueError:
                continue
            kind = record.get("type")
            if kind == "lost":
                lost_lines += int(record.get("ring", 0))
            elif kind == "summary":
                summary = record
            elif kind == "aggregate" and record.get("closed"):
                aggregates += 1
                ops["open"] += 1
                ops["close"] += 1
                ops["read"] += int(record.get("reads", 0))
                ops["write"] += int(record.get("writes", 0))
    lost = int(summary.get("lost_records", lost_lines)) if summary else lost_lines
    return {"ops": ops, "lost": lost, "summary": summary, "aggregates": aggregates}


def parse_bpftrace(path: str, stderr_path: str) -> Dict[str, object]:
    """Lines of ``tools/sniffwrites.bt`` by operation, and the ``Lost N
    events`` bpftrace printed (to stdout, or stderr: looked for in both)."""
    ops = dict.fromkeys(OPS, 0)
    lost = 0
    for name in (path, stderr_path):
        for chunk in _chunks(name):
            if name == path:
                for op in OPS:
                    ops[op] += chunk.count(b" " + op.encode() + b" ")
            lost += sum(int(n) for n in _BPFTRACE_LOST.findall(chunk))
    return {"ops": ops, "lost": lost, "summary": None, "aggregates": 0}


# --- one monitor, started and stopped ------------------------------------------------------

class Monitor:
    """One monitor subprocess, started and attached (``startup_s`` is the
    time from spawning it to attached)."""

    def __init__(self, kind: str, watched: str, workdir: str, extra: Sequence[str] = (),
                 timeout: float = 120.0):
        self.kind = kind
        tag = "%s-%d" % (kind.replace(" ", "").replace("-", ""), time.monotonic_ns())
        self.output = os.path.join(workdir, tag + ".out")
        self.stderr_path = os.path.join(workdir, tag + ".err")
        self.ready = os.path.join(workdir, tag + ".ready")
        self._stderr = open(self.stderr_path, "wb")
        self._stdout = None
        if kind == BPFTRACE:
            prefix = watched.rstrip("/") + "/"
            argv = ["bpftrace", BPFTRACE_SCRIPT, prefix, str(len(prefix.encode()))]
            self._stdout = open(self.output, "wb")
            stdout = self._stdout
        else:
            argv = [sys.executable, "-m", "sniffwrites.cli", "monitor", "-d", watched,
                    "-f", "json", "--output", self.output, "--ready-file", self.ready]
            if kind == SNIFF_AGG:
                argv.append("--aggregate")
            argv += list(extra)
            stdout = subprocess.DEVNULL
        start = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=self._stderr)
        try:
            self.pid = self._wait_attached(timeout)
        except BaseException:
            self.kill()
            raise
        self.startup_s = time.perf_counter() - start
        self.attached_at = time.monotonic()
        self.stopped = False

    def _attached_pid(self) -> Optional[int]:
        if self.kind == BPFTRACE:
            try:
                with open(self.output, "rb") as f:
                    head = f.read(4096)
            except OSError:
                return None
            return self.proc.pid if b"attached\n" in head else None
        try:
            with open(self.ready) as f:
                text = f.read().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _wait_attached(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            pid = self._attached_pid()
            if pid is not None:
                return pid
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited %d before it attached: %s" % (
                    self.kind, self.proc.returncode, self.stderr_tail()))
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not attach within %.0f s: %s" % (
                    self.kind, timeout, self.stderr_tail()))
            time.sleep(0.002)

    def stderr_tail(self, size: int = 2000) -> str:
        try:
            if not self._stderr.closed:
                self._stderr.flush()
            with open(self.stderr_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.stderr_path) - size))
                return f.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def memory_kib(self) -> Tuple[Optional[int], Optional[int]]:
        return _status_kib(self.pid, "VmRSS"), _status_kib(self.pid, "VmHWM")

    def prog_ids(self) -> List[int]:
        return _prog_ids_of(self.pid)

    def attach_points(self) -> Dict[int, str]:
        return _attach_points(self.pid)

    def stop(self, timeout: float = 120.0) -> Dict[str, object]:
        """SIGINT, wait for a clean exit, and parse what it reported."""
        # sniffwrites writes its ready file a moment before it installs its
        # SIGINT handler; a SIGINT in between ends it with "Aborted!", exit 1
        time.sleep(max(0.0, self.attached_at + 0.3 - time.monotonic()))
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("%s did not exit within %.0f s of SIGINT: %s" % (
                self.kind, timeout, self.stderr_tail()))
        self._close_files()
        self.stopped = True
        # bpftrace exits with 0 on SIGINT; so does sniffwrites (documented clean stop)
        if self.proc.returncode not in (0, -signal.SIGINT):
            raise RuntimeError("%s exited %d after SIGINT: %s" % (
                self.kind, self.proc.returncode, self.stderr_tail()))
        if self.kind == BPFTRACE:
            return parse_bpftrace(self.output, self.stderr_path)
        return parse_sniffwrites(self.output)

    def _close_files(self) -> None:
        for f in (self._stdout, self._stderr):
            if f is not None and not f.closed:
                f.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_files()

    def cleanup(self) -> None:
        if not getattr(self, "stopped", False):
            self.kill()
        for path in (self.output, self.stderr_path, self.ready):
            try:
                os.unlink(path)
            except OSError:
                pass
