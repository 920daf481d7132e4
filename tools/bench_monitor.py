"""What watching costs: ``sniffwrites`` against no monitor and against bpftrace.

Called by ``tools/bench.py monitor`` (root). The fixed workload of
``tools/workload.py`` (phases ``cycles``, ``read_inside``, ``read_outside``,
``getppid``) runs under each monitor, in a rotating order in every
repetition:

* ``sniffwrites``: per-event, ``-f json --output`` to a file on tmpfs;
* ``sniffwrites --aggregate``: counts kept in the kernel, one record per file;
* ``bpftrace``: ``tools/sniffwrites.bt``, the same monitor in bpftrace, its
  lines going to a file on tmpfs (skipped, with a note, when bpftrace is not
  installed).

Each monitored run is paired with an untraced run of the same phases taken
just before it, and compared with that one only, so that a change in the
machine's load between configurations (these machines are shared) does not
become an overhead. Monitors are subprocesses, run as a user runs them.
Each phase is its own ``workload.py`` run, started once the monitor is idle
again (a per-event monitor still draining the backlog of ``read_inside``
would compete for the two CPUs and charge the next phase for it). The short
phases run as bursts (5 x 2000 cycles, 10 x 100k reads outside, 10 x 100k
getppid) and count their fastest burst, as noise only ever adds time;
``read_inside`` runs 1M reads, the figure the targets are set for (fastest
of 3 under ``--aggregate`` and its baseline; once under the per-event
monitors, whose runs take seconds).
A row on the CPU other processes used during the benchmark says how quiet
the machine was. Reported:

* start-up: from spawning the monitor until it is attached (its
  ``--ready-file`` holds its pid; bpftrace printed ``attached``). One untimed
  start of each comes first (not with ``--quick``), so build and page
  caches are warm;
* per phase: ns/op untraced; extra ns/op and the ratio to untraced of each
  monitor (against its paired baseline); and sniffwrites' extra time over
  bpftrace's (per-event and ``--aggregate``), per repetition;
* loss: file operations the workload did in the watched directory (opens,
  reads, writes, closes) against what the monitor reported (events, or the
  counts of ``--aggregate``'s closed-file records, each standing for its open
  and close too), and the losses it reported itself (the exit summary's
  ``lost_records``; bpftrace's ``Lost N events``);
* memory: VmRSS (and the peak, VmHWM) of the monitor after the workload;
* BPF run time: separate repetitions with BPF_ENABLE_STATS held by this
  process (statistics cost ~50-60 ns per program run, so they are off in the
  timed repetitions and included in these figures). Per program (the
  ``prog_id``\ s in ``/proc/PID/fdinfo``, named with the tracepoint of their
  link when there is one) ``run_time_ns / run_cnt`` over the whole workload,
  and per phase all programs' time divided by the phase's operations. Hooks
  on every syscall also run for other processes (and the monitor itself), so
  "per op" is an upper bound;
* the highest sustained per-event rate: a writer process does 1-byte writes
  into a watched file at a set rate for a few seconds, under a fresh
  ``sniffwrites -f json --output FILE`` each step. A step "keeps up" when the
  output caught up within ``0.1 * duration + 0.1 s`` of the writer's end
  (the 16 MiB ring holds ~190k events of backlog, so "no loss" alone would
  not mean "keeps up") and at most 0.01% was lost; it has "zero loss" when,
  besides, every write was reported and nothing lost. The search doubles the
  rate while it keeps up (or until the writer cannot go faster), then
  bisects; bounded to ~50 s. Reported: the highest zero-loss step, the
  highest step kept up, and how many steps lost a few records although the
  ring had room.

Run alone: ``python3 tools/bench_monitor.py [--quick]`` prints the rows.
"""

import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

_TOOLS = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_TOOLS)
for _path in (_TOOLS, _ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import workload  # noqa: E402

PHASES = workload.PHASES
BPFTRACE_SCRIPT = os.path.join(_TOOLS, "sniffwrites.bt")
SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None

UNTRACED = "untraced"
SNIFF = "sniffwrites"
SNIFF_AGG = "sniffwrites --aggregate"
BPFTRACE = "bpftrace"
MONITORS = (SNIFF, SNIFF_AGG, BPFTRACE)
OPS = ("open", "read", "write", "close")

Row = Dict[str, object]


# --- small helpers ------------------------------------------------------------------------

def _row(values: Sequence[float], unit: str) -> Row:
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "unit": unit}


def _status_kib(pid: int, field: str) -> Optional[int]:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _prog_ids_of(pid: int) -> List[int]:
    """Ids of the BPF programs process ``pid`` holds (prog fds and links)."""
    ids = set()
    base = "/proc/%d/fdinfo" % pid
    try:
        names = os.listdir(base)
    except OSError:
        return []
    for name in names:
        try:
            with open(os.path.join(base, name)) as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except (OSError, ValueError):
            continue
    return sorted(ids)


def _machine_cpu() -> Tuple[float, float, float]:
    """(seconds of busy CPU of the whole machine, of it stolen by the
    hypervisor, of this process and its waited-for children)."""
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    t = os.times()
    ours = t.user + t.system + t.children_user + t.children_system
    return (user + nice + system + irq + softirq) / hz, steal / hz, ours


def expected_ops(counts: Dict[str, int], phases: Sequence[str]) -> Dict[str, int]:
    """The file operations one ``workload.py`` run of ``phases`` does in the
    watched directory: it creates the read file (open, one write of 1 MiB,
    close), each cycle is open/write/read/close, and the read phase opens,
    reads ``counts["reads"]`` times, closes."""
    cycles = counts["cycles"] if "cycles" in phases else 0
    reads = counts["reads"] if "read_inside" in phases else 0
    read_phase = 1 if "read_inside" in phases else 0
    return {"open": 1 + cycles + read_phase, "write": 1 + cycles, "read": cycles + reads,
            "close": 1 + cycles + read_phase}


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


def _attach_points(pid: int) -> Dict[int, str]:
    """prog id -> tracepoint name, from the ``tp_name`` of the links ``pid`` holds."""
    points: Dict[int, str] = {}
    base = "/proc/%d/fdinfo" % pid
    try:
        names = os.listdir(base)
    except OSError:
        return points
    for name in names:
        fields: Dict[str, str] = {}
        try:
            with open(os.path.join(base, name)) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    fields[key.strip()] = value.strip()
        except OSError:
            continue
        if "prog_id" in fields and "tp_name" in fields:
            try:
                points[int(fields["prog_id"])] = fields["tp_name"]
            except ValueError:
                pass
    return points


# --- parsing what the monitors wrote ------------------------------------------------------

_OTHER_LINE = re.compile(rb'^(?!\{"type": "event").+$', re.MULTILINE)
_BPFTRACE_LOST = re.compile(rb"Lost (\d+) events")


def _chunks(path: str, size: int = 8 << 20):
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


# --- running monitors ---------------------------------------------------------------------

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
        self.proc = subprocess.Popen(argv, cwd=_ROOT, stdin=subprocess.DEVNULL, stdout=stdout,
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


def run_workload(watched: str, outside: str, counts: Dict[str, int],
                 phases: Sequence[str] = PHASES) -> Dict[str, dict]:
    argv = [sys.executable, os.path.join(_TOOLS, "workload.py"), "--dir", watched,
            "--outside", outside, "--cycles", str(counts["cycles"]),
            "--reads", str(counts["reads"]), "--syscalls", str(counts["syscalls"])]
    for phase in phases:
        argv += ["--phase", phase]
    result = subprocess.run(argv, cwd=_ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=600)
    if result.returncode:
        raise RuntimeError("workload exited %d: %s" % (result.returncode, result.stderr))
    return json.loads(result.stdout)["phases"]


# --- the highest sustained per-event rate -------------------------------------------------

WRITER = r"""
import json, os, sys, time
path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
write, now, sleep, data = os.write, time.monotonic, time.sleep, b"x"
total = int(rate * seconds)
done = 0
start = now()
while done < total:
    due = min(total, int(rate * (now() - start)) + 1)
    if done >= due:
        sleep(0.0002)
        continue
    for _ in range(due - done):
        write(fd, data)
    done = due
end = now()
os.close(fd)
json.dump({"writes": done, "seconds": end - start, "end": end}, sys.stdout)
"""


def _count_writes_until(path: str, want: int, deadline: float) -> Tuple[int, float]:
    """Poll the monitor's output until it reports ``want`` writes (or the
    deadline); return the count seen and when it got there."""
    seen, offset, rest = 0, 0, b""
    needle = b'"op": "write"'
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            data = b""
        if data:
            offset += len(data)
            data = rest + data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            seen += data[:cut].count(needle)
        now = time.monotonic()
        if seen >= want or now > deadline:
            return seen, now
        time.sleep(0.01)


def rate_step(directory: str, workdir: str, rate: float, seconds: float) -> Dict[str, object]:
    """One step: a fresh per-event monitor, the writer at ``rate`` writes/s."""
    target = os.path.join(directory, "rate.dat")
    monitor = Monitor(SNIFF, directory, workdir)
    try:
        writer = subprocess.run([sys.executable, "-c", WRITER, target, str(rate), str(seconds)],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=seconds * 10 + 30)
        if writer.returncode:
            raise RuntimeError("rate writer exited %d: %s" % (writer.returncode, writer.stderr))
        wrote = json.loads(writer.stdout)
        slack = min(1000, wrote["writes"] // 10)   # the last, unflushed 64 KiB of output
        allowed = 0.1 * seconds + 0.1
        seen, when = _count_writes_until(monitor.output, wrote["writes"] - slack,
                                         wrote["end"] + allowed + 2.0)
        lag = when - wrote["end"] if seen >= wrote["writes"] - slack else math.inf
        report = monitor.stop()
    finally:
        monitor.cleanup()
    received = report["ops"]["write"]
    achieved = wrote["writes"] / wrote["seconds"]
    kept_up = lag <= allowed and report["lost"] <= wrote["writes"] * 1e-4
    ok = kept_up and received == wrote["writes"] and report["lost"] == 0
    return {"target": rate, "achieved": achieved, "writes": wrote["writes"],
            "received": received, "lost": report["lost"], "lag_s": lag, "kept_up": kept_up,
            "ok": ok}


def max_zero_loss_rate(directory: str, workdir: str, quick: bool,
                       log: Callable[[str], None]) -> Dict[str, object]:
    """Search the per-event rate sniffwrites keeps up with. A step "keeps
    up" when the output caught up in time and at most 0.01% was lost; it is
    "zero loss" when, besides, every write was reported. The search follows
    "keeps up" (doubling, then bisecting), because a few records are
    sometimes lost far below capacity (see ``sporadic`` in the result);
    the highest zero-loss step is then one of the steps it ran, and the
    highest rate kept up is retried (budget permitting) when it lost any."""
    seconds = 0.4 if quick else 2.0
    budget = 6.0 if quick else 50.0
    rate = 25_000.0 if quick else 50_000.0
    began = time.monotonic()
    steps: List[dict] = []
    best: Optional[dict] = None        # highest step kept up
    worst: Optional[dict] = None       # lowest step not kept up
    writer_limited = False

    def step(r: float) -> dict:
        s = rate_step(directory, workdir, r, seconds)
        steps.append(s)
        log("  rate step: target %.0f/s achieved %.0f/s received %d/%d lost %d lag %.2f s -> %s"
            % (s["target"], s["achieved"], s["received"], s["writes"], s["lost"], s["lag_s"],
               "zero loss" if s["ok"] else "kept up" if s["kept_up"] else "FAIL"))
        return s

    def left() -> float:
        return budget - (time.monotonic() - began)

    # ramp: double while it keeps up and the writer reaches the target
    while left() > 0:
        s = step(rate)
        if s["kept_up"]:
            best = s if best is None or s["achieved"] > best["achieved"] else best
            if s["achieved"] < 0.9 * s["target"]:
                writer_limited = True
                break
            rate *= 2
        else:
            worst = s
            if best is not None:
                break
            rate /= 2
            if rate < 1000:
                break
        if quick and len(steps) >= 2 and best is not None:
            break
    # bisect between the best step kept up and the first one that was not
    while (best is not None and worst is not None and not writer_limited
           and worst["target"] / best["target"] > 1.15 and left() > 0):
        s = step(math.sqrt(best["target"] * worst["target"]))
        if s["kept_up"]:
            best = s if s["achieved"] > best["achieved"] else best
        else:
            worst = s
    # the highest rate kept up lost a few records: try it again
    for _ in range(2):
        if quick or best is None or any(x["ok"] and x["target"] >= best["target"]
                                        for x in steps) or left() <= 0:
            break
        step(best["target"])
    zero = [x for x in steps if x["ok"]]
    sporadic = [x for x in steps if x["kept_up"] and x["lost"]]
    return {"best": best, "worst": worst, "writer_limited": writer_limited, "steps": steps,
            "zero": max(zero, key=lambda x: x["achieved"]) if zero else None,
            "sporadic": sporadic, "seconds_per_step": seconds, "allowed_lag_s": 0.1 * seconds + 0.1,
            "elapsed_s": time.monotonic() - began}


# --- one configuration, phase by phase ---------------------------------------------------

#: The order phases run in: the short ones first, so that the untraced
#: baseline of each is taken seconds before the monitored runs.
PHASE_ORDER = ("cycles", "read_outside", "getppid", "read_inside")

Plan = Dict[str, Tuple[int, Dict[str, int]]]


def plan(quick: bool, config: str) -> Plan:
    """phase -> (runs, workload counts of each run) for ``config`` and its
    untraced baseline. ns/op of a phase is its fastest run (noise only ever
    adds time): the short phases run as bursts, ``read_inside`` as runs of
    1M reads (the figure the targets are set for, and the loss it causes):
    3 under ``--aggregate``, 1 under the per-event monitors, whose runs take
    seconds (bpftrace: ~12 s)."""
    if quick:
        tiny = {"cycles": 200, "reads": 20_000, "syscalls": 20_000}
        return {phase: (1, tiny) for phase in PHASE_ORDER}
    return {"cycles": (5, {"cycles": 2000, "reads": 0, "syscalls": 0}),
            "read_outside": (10, {"cycles": 0, "reads": 100_000, "syscalls": 0}),
            "getppid": (10, {"cycles": 0, "reads": 0, "syscalls": 100_000}),
            "read_inside": (3 if config == SNIFF_AGG else 1,
                            {"cycles": 0, "reads": 1_000_000, "syscalls": 0})}


def run_phases(monitor: Optional["Monitor"], watched: str, outside: str, phases: Plan,
               stats: bool = False) -> Dict[str, object]:
    """Every phase of ``phases``, each run started with the monitor (if any)
    back to idle (a per-event monitor still draining the reads of
    ``read_inside`` would otherwise compete for the CPUs)."""
    result: Dict[str, object] = {"ns": {}, "expected": dict.fromkeys(OPS, 0)}
    if stats:
        ids = monitor.prog_ids()
        points = _attach_points(monitor.pid)
        programs: Dict[int, dict] = {}
        result["bpf_ns_per_op"] = {}
    for phase in PHASE_ORDER:
        runs, counts = phases[phase]
        bpf_ns, ops = 0, 0
        for _ in range(runs):
            if monitor is not None:
                wait_idle(monitor.pid)
            before = _prog_infos(ids) if stats else {}
            figures = run_workload(watched, outside, counts, (phase,))[phase]
            result["ns"][phase] = min(result["ns"].get(phase, math.inf), figures["ns_per_op"])
            for op, n in expected_ops(counts, (phase,)).items():
                result["expected"][op] += n
            if stats:
                after = _prog_infos(ids)
                for prog_id, old in before.items():
                    new = after.get(prog_id)
                    if new is None:
                        continue
                    entry = programs.setdefault(prog_id, {"name": old.name, "runs": 0, "ns": 0})
                    entry["runs"] += new.run_cnt - old.run_cnt
                    entry["ns"] += new.run_time_ns - old.run_time_ns
                    bpf_ns += new.run_time_ns - old.run_time_ns
                ops += figures["count"]
        if stats:
            result["bpf_ns_per_op"][phase] = bpf_ns / ops
    if stats:
        named: Dict[str, float] = {}
        for prog_id, entry in sorted(programs.items()):
            if entry["runs"] <= 0:
                continue
            name = entry["name"] or "id %d" % prog_id
            if prog_id in points and points[prog_id] not in name:
                name = "%s (%s)" % (name, points[prog_id])
            while name in named:
                name += "'"
            named[name] = entry["ns"] / entry["runs"]
        result["bpf_ns_per_run"] = named
    return result


def run_config(config: str, watched: str, outside: str, workdir: str, phases: Plan,
               stats: bool = False) -> Dict[str, object]:
    """The workload untraced (the baseline this run is compared with, taken
    just before), then under the monitor ``config``: ns/op per phase, and
    start-up, operations received, losses and memory of the monitor. With
    ``stats`` (statistics on, no baseline), the BPF run time of each of the
    monitor's programs and per operation of each phase."""
    for name in os.listdir(watched):
        os.unlink(os.path.join(watched, name))
    result: Dict[str, object] = {}
    if not stats:
        result["baseline"] = run_phases(None, watched, outside, phases)["ns"]
    monitor = Monitor(config, watched, workdir)
    try:
        result.update(run_phases(monitor, watched, outside, phases, stats))
        result["startup_s"] = monitor.startup_s
        wait_idle(monitor.pid)
        result["rss_kib"], result["hwm_kib"] = monitor.memory_kib()
        report = monitor.stop()
    finally:
        monitor.cleanup()
    result["received"] = sum(report["ops"][op] for op in OPS)
    result["lost"] = int(report["lost"])
    return result


def _prog_infos(ids: Sequence[int]) -> Dict[int, object]:
    from pybpf.kernel.objects import PROGS
    infos = {}
    for pid in ids:
        try:
            infos[pid] = PROGS.info_by_id(pid)
        except OSError:
            pass
    return infos


# --- the whole benchmark ------------------------------------------------------------------

def run(quick: bool = False, repeats: Optional[int] = None,
        stats_repeats: Optional[int] = None, rate_search: bool = True,
        log: Optional[Callable[[str], None]] = None) -> Dict[str, Row]:
    """The rows of the ``monitor`` table (see the module's docstring)."""
    if log is None:
        def log(message: str) -> None:
            print(message, file=sys.stderr, flush=True)
    repeats = repeats or (1 if quick else 5)
    stats_repeats = stats_repeats or (1 if quick else 3)
    stats_phases = plan(quick, "") if quick else {
        phase: (1, {"cycles": 2000, "reads": 200_000, "syscalls": 200_000})
        for phase in PHASE_ORDER}
    have_bpftrace = shutil.which("bpftrace") is not None
    monitors = [m for m in MONITORS if m != BPFTRACE or have_bpftrace]
    configs = [UNTRACED] + monitors
    notes: List[str] = []
    if not have_bpftrace:
        notes.append("bpftrace not found: its column is skipped")
    try:
        with open("/proc/sys/kernel/bpf_stats_enabled") as f:
            if f.read().strip() not in ("", "0"):
                notes.append("kernel.bpf_stats_enabled is on: every timing includes "
                             "~50-60 ns of statistics per program run")
    except OSError:
        pass

    cpu_start, wall_start = _machine_cpu(), time.monotonic()
    workdir = tempfile.mkdtemp(prefix="bench-monitor-", dir=SHM)
    watched = os.path.join(workdir, "watched")
    outside = os.path.join(workdir, "outside")
    rate_dir = os.path.join(workdir, "rate")
    for d in (watched, outside, rate_dir):
        os.makedirs(d)

    ns: Dict[str, Dict[str, List[float]]] = {c: {p: [] for p in PHASES} for c in configs}
    base: Dict[str, Dict[str, List[float]]] = {m: {p: [] for p in PHASES} for m in monitors}
    startup: Dict[str, List[float]] = {m: [] for m in monitors}
    received: Dict[str, List[int]] = {m: [] for m in monitors}
    lost: Dict[str, List[int]] = {m: [] for m in monitors}
    rss: Dict[str, List[float]] = {m: [] for m in monitors}
    hwm: Dict[str, List[float]] = {m: [] for m in monitors}
    bpf_run: Dict[str, Dict[str, List[float]]] = {m: {} for m in monitors}
    bpf_op: Dict[str, Dict[str, List[float]]] = {m: {p: [] for p in PHASES} for m in monitors}
    expected: Dict[str, int] = {}
    rate: Optional[dict] = None
    try:
        for kind in ([] if quick else monitors):   # warm-up: build and page caches
            m = Monitor(kind, watched, workdir)
            m.stop()
            m.cleanup()
        for rep in range(repeats):
            order = monitors[rep % len(monitors):] + monitors[:rep % len(monitors)]
            for config in order:
                r = run_config(config, watched, outside, workdir, plan(quick, config))
                expected[config] = sum(r["expected"].values())
                for phase in PHASES:
                    ns[UNTRACED][phase].append(r["baseline"][phase])
                    base[config][phase].append(r["baseline"][phase])
                    ns[config][phase].append(r["ns"][phase])
                startup[config].append(r["startup_s"])
                received[config].append(r["received"])
                lost[config].append(r["lost"])
                if r["rss_kib"] is not None:
                    rss[config].append(r["rss_kib"] / 1024.0)
                if r["hwm_kib"] is not None:
                    hwm[config].append(r["hwm_kib"] / 1024.0)
                log("  rep %d %-23s %s; attached in %.3f s, %d/%d operations, lost %d, RSS %s KiB"
                    % (rep + 1, config, ", ".join(
                        "%s %.0f (untraced %.0f) ns" % (p, r["ns"][p], r["baseline"][p])
                        for p in PHASES), r["startup_s"], r["received"],
                       expected[config], r["lost"], r["rss_kib"]))
        from pybpf.kernel.prog import enable_stats
        with enable_stats():
            for rep in range(stats_repeats):
                for kind in monitors:
                    r = run_config(kind, watched, outside, workdir, stats_phases, stats=True)
                    for name, value in r["bpf_ns_per_run"].items():
                        bpf_run[kind].setdefault(name, []).append(value)
                    for phase, value in r["bpf_ns_per_op"].items():
                        bpf_op[kind][phase].append(value)
                    log("  stats %d %-23s %s" % (rep + 1, kind, ", ".join(
                        "%s %.0f ns/run" % item for item in r["bpf_ns_per_run"].items())))
        if rate_search:
            rate = max_zero_loss_rate(rate_dir, workdir, quick, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cpu_end, wall = _machine_cpu(), time.monotonic() - wall_start
    capacity = wall * (os.cpu_count() or 1) / 100.0
    others = max(0.0, (cpu_end[0] - cpu_start[0]) - (cpu_end[2] - cpu_start[2])) / capacity
    stolen = (cpu_end[1] - cpu_start[1]) / capacity

    rows: Dict[str, Row] = {}
    for note in notes:
        rows["note: " + note] = {"median": 0.0, "min": 0.0, "max": 0.0, "unit": "-"}

    def ratios(a: List[float], b: List[float]) -> List[float]:
        return [x / y if y else math.inf for x, y in zip(a, b)]

    extra = {m: {p: [t - b for t, b in zip(ns[m][p], base[m][p])] for p in PHASES}
             for m in monitors}
    times_untraced = {m: {p: ratios(ns[m][p], base[m][p]) for p in PHASES}
                      for m in monitors}
    # the figures the issue sets targets for, first
    rows["machine: CPU used by other processes during this benchmark"] = _row(
        [others], "%% of %d CPUs" % (os.cpu_count() or 1))
    if stolen >= 0.5:
        rows["machine: CPU stolen by the hypervisor"] = _row(
            [stolen], "%% of %d CPUs" % (os.cpu_count() or 1))
    for m in monitors:
        rows["start-up until attached: %s" % m] = _row(startup[m], "s")
    if BPFTRACE in monitors:
        rows["start-up until attached: sniffwrites / bpftrace"] = _row(
            ratios(startup[SNIFF], startup[BPFTRACE]), "ratio")
        for m in (SNIFF, SNIFF_AGG):
            rows["extra per op, read outside the directory: %s / bpftrace" % m] = _row(
                ratios(extra[m]["read_outside"], extra[BPFTRACE]["read_outside"]), "ratio")
    for m in monitors:
        rows["watched reads vs untraced: %s" % m] = _row(times_untraced[m]["read_inside"],
                                                         "x untraced")
    for m in monitors:
        rows["events received of %d expected: %s" % (expected.get(m, 0), m)] = _row(
            received[m], "operations")
        rows["records lost: %s" % m] = _row(lost[m], "events")
    if rate is not None:
        zero, best, worst = rate["zero"], rate["best"], rate["worst"]
        rows["highest zero-loss event rate: sniffwrites per-event, JSON to a file"] = _row(
            [zero["achieved"] if zero else 0.0], "events/s")
        label = "highest rate kept up (lost <= 0.01%%, caught up within %.2g s): sniffwrites" \
            % rate["allowed_lag_s"]
        if rate["writer_limited"]:
            label += " (the writer's limit, not the monitor's)"
        rows[label] = _row([best["achieved"] if best else 0.0], "events/s")
        if worst is not None:
            rows["first rate not kept up (lost %d, %s)" % (
                worst["lost"], "caught up after %.2f s" % worst["lag_s"]
                if worst["lag_s"] != math.inf else "never caught up")] = _row(
                    [worst["achieved"]], "events/s")
        rows["rate steps kept up that still lost records (ring not full)"] = _row(
            [len(rate["sporadic"])], "of %d steps" % len(rate["steps"]))
    for m in monitors:
        if rss[m]:
            rows["resident memory: %s (VmRSS after the workload)" % m] = _row(rss[m], "MiB")
    for m in monitors:
        if hwm[m]:
            rows["peak resident memory: %s (VmHWM)" % m] = _row(hwm[m], "MiB")
    # every phase in detail
    for phase in PHASES:
        rows["%s: untraced" % phase] = _row(ns[UNTRACED][phase], "ns/op")
        for m in monitors:
            rows["%s: extra ns/op, %s" % (phase, m)] = _row(extra[m][phase], "ns/op")
        for m in monitors:
            rows["%s: x untraced, %s" % (phase, m)] = _row(times_untraced[m][phase], "ratio")
        if BPFTRACE in monitors:
            for m in (SNIFF, SNIFF_AGG):
                rows["%s: extra ns/op, %s / bpftrace" % (phase, m)] = _row(
                    ratios(extra[m][phase], extra[BPFTRACE][phase]), "ratio")
    for m in monitors:
        for name, values in sorted(bpf_run[m].items()):
            rows["BPF run time, %s: %s" % (m, name)] = _row(values, "ns/run")
    for phase in PHASES:
        for m in monitors:
            if bpf_op[m][phase]:
                rows["BPF time per op, %s: %s" % (phase, m)] = _row(bpf_op[m][phase],
                                                                   "ns/op")
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for name, row in run(args.quick).items():
        print("%-80s %12.4g  %12.4g - %-12.4g %s" % (name, row["median"], row["min"], row["max"],
                                                     row["unit"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
