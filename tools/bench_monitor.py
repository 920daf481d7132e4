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

This module runs the benchmark in its stages (set-up, warm-up, the timed
repetitions, the statistics repetitions, the rate search) and turns what
they collected into the rows; ``bench_monitor_process.py`` runs and reads
one monitor, ``bench_monitor_phases.py`` the workload under one
configuration, ``bench_monitor_rate.py`` the rate search.
"""

import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

_TOOLS = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_TOOLS)
for _path in (_TOOLS, _ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench_monitor_phases import PHASE_ORDER, plan, run_config  # noqa: E402
from bench_monitor_process import (  # noqa: E402
    BPFTRACE, MONITORS, SNIFF, SNIFF_AGG, UNTRACED, Monitor)
from bench_monitor_rate import max_zero_loss_rate  # noqa: E402
from workload import PHASES  # noqa: E402

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None

Row = Dict[str, object]
Series = Dict[str, List[float]]


# --- set-up -------------------------------------------------------------------------------

def _monitors_and_notes() -> Tuple[List[str], List[str]]:
    """The monitors this machine has, and notes on what limits the figures."""
    have_bpftrace = shutil.which("bpftrace") is not None
    monitors = [m for m in MONITORS if m != BPFTRACE or have_bpftrace]
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
    return monitors, notes


@dataclass(frozen=True)
class Workspace:
    """The directories on tmpfs the benchmark works in (removed at the end)."""
    workdir: str
    watched: str
    outside: str
    rate: str

    @classmethod
    def create(cls) -> "Workspace":
        workdir = tempfile.mkdtemp(prefix="bench-monitor-", dir=SHM)
        space = cls(workdir, *(os.path.join(workdir, d) for d in ("watched", "outside", "rate")))
        for d in (space.watched, space.outside, space.rate):
            os.makedirs(d)
        return space

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


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


class MachineLoad:
    """How busy the machine was while the benchmark ran: the share of its
    CPUs that other processes used, and that the hypervisor stole."""

    def __init__(self) -> None:
        self._cpu, self._wall = _machine_cpu(), time.monotonic()

    def since_start(self) -> Tuple[float, float]:
        """(% of all CPUs used by other processes, % stolen) since creation."""
        cpu_end, wall = _machine_cpu(), time.monotonic() - self._wall
        capacity = wall * (os.cpu_count() or 1) / 100.0
        others = max(0.0, (cpu_end[0] - self._cpu[0]) - (cpu_end[2] - self._cpu[2])) / capacity
        stolen = (cpu_end[1] - self._cpu[1]) / capacity
        return others, stolen


@dataclass
class Figures:
    """What the measured stages collect, one value per repetition: per
    configuration (``UNTRACED`` and each monitor) and phase, ns/op; per
    monitor, its paired baselines, start-up, operations received and lost,
    memory, BPF run time per program and per operation; and the rate search."""
    monitors: List[str]
    ns: Dict[str, Series] = field(init=False)
    base: Dict[str, Series] = field(init=False)
    startup: Series = field(init=False)
    received: Series = field(init=False)
    lost: Series = field(init=False)
    rss: Series = field(init=False)
    hwm: Series = field(init=False)
    bpf_run: Dict[str, Series] = field(init=False)
    bpf_op: Dict[str, Series] = field(init=False)
    expected: Dict[str, int] = field(default_factory=dict)
    rate: Optional[dict] = None

    def __post_init__(self) -> None:
        monitors = self.monitors
        self.ns = {c: {p: [] for p in PHASES} for c in [UNTRACED] + monitors}
        self.base = {m: {p: [] for p in PHASES} for m in monitors}
        self.startup, self.received, self.lost, self.rss, self.hwm = (
            {m: [] for m in monitors} for _ in range(5))
        self.bpf_run = {m: {} for m in monitors}
        self.bpf_op = {m: {p: [] for p in PHASES} for m in monitors}

    def add_timed(self, config: str, r: Dict[str, object]) -> None:
        """One timed run of ``config`` (``run_config`` without statistics)."""
        self.expected[config] = sum(r["expected"].values())
        for phase in PHASES:
            self.ns[UNTRACED][phase].append(r["baseline"][phase])
            self.base[config][phase].append(r["baseline"][phase])
            self.ns[config][phase].append(r["ns"][phase])
        self.startup[config].append(r["startup_s"])
        self.received[config].append(r["received"])
        self.lost[config].append(r["lost"])
        if r["rss_kib"] is not None:
            self.rss[config].append(r["rss_kib"] / 1024.0)
        if r["hwm_kib"] is not None:
            self.hwm[config].append(r["hwm_kib"] / 1024.0)

    def add_stats(self, kind: str, r: Dict[str, object]) -> None:
        """One run of monitor ``kind`` with BPF statistics on."""
        for name, value in r["bpf_ns_per_run"].items():
            self.bpf_run[kind].setdefault(name, []).append(value)
        for phase, value in r["bpf_ns_per_op"].items():
            self.bpf_op[kind][phase].append(value)


# --- the measured stages ------------------------------------------------------------------

def warm_up(monitors: Sequence[str], space: Workspace) -> None:
    """One untimed start of each monitor, so that build and page caches are warm."""
    for kind in monitors:
        m = Monitor(kind, space.watched, space.workdir)
        m.stop()
        m.cleanup()


def timed_repetitions(figures: Figures, space: Workspace, quick: bool, repeats: int,
                      log: Callable[[str], None]) -> None:
    """Every monitor with its paired baseline, ``repeats`` times, in an order
    that rotates with each repetition; statistics off."""
    monitors = figures.monitors
    for rep in range(repeats):
        order = monitors[rep % len(monitors):] + monitors[:rep % len(monitors)]
        for config in order:
            r = run_config(config, space.watched, space.outside, space.workdir,
                           plan(quick, config))
            figures.add_timed(config, r)
            log("  rep %d %-23s %s; attached in %.3f s, %d/%d operations, lost %d, RSS %s KiB"
                % (rep + 1, config, ", ".join(
                    "%s %.0f (untraced %.0f) ns" % (p, r["ns"][p], r["baseline"][p])
                    for p in PHASES), r["startup_s"], r["received"],
                   figures.expected[config], r["lost"], r["rss_kib"]))


def stats_repetitions(figures: Figures, space: Workspace, quick: bool, repeats: int,
                      log: Callable[[str], None]) -> None:
    """Every monitor ``repeats`` times with BPF_ENABLE_STATS held: the BPF
    run time of its programs (not timed: statistics cost time)."""
    from pybpf.kernel.prog import enable_stats
    stats_phases = plan(quick, "") if quick else {
        phase: (1, {"cycles": 2000, "reads": 200_000, "syscalls": 200_000})
        for phase in PHASE_ORDER}
    with enable_stats():
        for rep in range(repeats):
            for kind in figures.monitors:
                r = run_config(kind, space.watched, space.outside, space.workdir, stats_phases,
                               stats=True)
                figures.add_stats(kind, r)
                log("  stats %d %-23s %s" % (rep + 1, kind, ", ".join(
                    "%s %.0f ns/run" % item for item in r["bpf_ns_per_run"].items())))


# --- the whole benchmark ------------------------------------------------------------------

def run(quick: bool = False, repeats: Optional[int] = None,
        stats_repeats: Optional[int] = None, rate_search: bool = True,
        log: Optional[Callable[[str], None]] = None) -> Dict[str, Row]:
    """The rows of the ``monitor`` table (see the module's docstring)."""
    if log is None:
        def log(message: str) -> None:
            print(message, file=sys.stderr, flush=True)
    monitors, notes = _monitors_and_notes()
    figures = Figures(monitors)
    load = MachineLoad()
    space = Workspace.create()
    try:
        if not quick:
            warm_up(monitors, space)
        timed_repetitions(figures, space, quick, repeats or (1 if quick else 5), log)
        stats_repetitions(figures, space, quick, stats_repeats or (1 if quick else 3), log)
        if rate_search:
            figures.rate = max_zero_loss_rate(space.rate, space.workdir, quick, log)
    finally:
        space.remove()
    return report_rows(figures, notes, *load.since_start())


# --- the rows -----------------------------------------------------------------------------

def _row(values: Sequence[float], unit: str) -> Row:
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "unit": unit}


def _ratios(a: List[float], b: List[float]) -> List[float]:
    return [x / y if y else math.inf for x, y in zip(a, b)]


def report_rows(figures: Figures, notes: Sequence[str], others: float,
                stolen: float) -> Dict[str, Row]:
    """The table: notes, the figures the issue sets targets for, then every
    phase in detail and the BPF run times."""
    monitors = figures.monitors
    extra = {m: {p: [t - b for t, b in zip(figures.ns[m][p], figures.base[m][p])]
                 for p in PHASES} for m in monitors}
    times_untraced = {m: {p: _ratios(figures.ns[m][p], figures.base[m][p]) for p in PHASES}
                      for m in monitors}
    rows: Dict[str, Row] = {}
    for note in notes:
        rows["note: " + note] = {"median": 0.0, "min": 0.0, "max": 0.0, "unit": "-"}
    rows.update(_target_rows(figures, extra, times_untraced, others, stolen))
    if figures.rate is not None:
        rows.update(_rate_rows(figures.rate))
    rows.update(_memory_rows(figures))
    rows.update(_phase_rows(figures, extra, times_untraced))
    rows.update(_bpf_rows(figures))
    return rows


def _target_rows(figures: Figures, extra: Dict[str, Series], times_untraced: Dict[str, Series],
                 others: float, stolen: float) -> Dict[str, Row]:
    """How quiet the machine was; start-up, cost and loss of each monitor."""
    monitors = figures.monitors
    rows: Dict[str, Row] = {}
    rows["machine: CPU used by other processes during this benchmark"] = _row(
        [others], "%% of %d CPUs" % (os.cpu_count() or 1))
    if stolen >= 0.5:
        rows["machine: CPU stolen by the hypervisor"] = _row(
            [stolen], "%% of %d CPUs" % (os.cpu_count() or 1))
    for m in monitors:
        rows["start-up until attached: %s" % m] = _row(figures.startup[m], "s")
    if BPFTRACE in monitors:
        rows["start-up until attached: sniffwrites / bpftrace"] = _row(
            _ratios(figures.startup[SNIFF], figures.startup[BPFTRACE]), "ratio")
        for m in (SNIFF, SNIFF_AGG):
            rows["extra per op, read outside the directory: %s / bpftrace" % m] = _row(
                _ratios(extra[m]["read_outside"], extra[BPFTRACE]["read_outside"]), "ratio")
    for m in monitors:
        rows["watched reads vs untraced: %s" % m] = _row(times_untraced[m]["read_inside"],
                                                         "x untraced")
    for m in monitors:
        rows["events received of %d expected: %s" % (figures.expected.get(m, 0), m)] = _row(
            figures.received[m], "operations")
        rows["records lost: %s" % m] = _row(figures.lost[m], "events")
    return rows


def _rate_rows(rate: dict) -> Dict[str, Row]:
    """What the rate search found (``bench_monitor_rate.max_zero_loss_rate``)."""
    rows: Dict[str, Row] = {}
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
    return rows


def _memory_rows(figures: Figures) -> Dict[str, Row]:
    rows: Dict[str, Row] = {}
    for m in figures.monitors:
        if figures.rss[m]:
            rows["resident memory: %s (VmRSS after the workload)" % m] = _row(figures.rss[m],
                                                                               "MiB")
    for m in figures.monitors:
        if figures.hwm[m]:
            rows["peak resident memory: %s (VmHWM)" % m] = _row(figures.hwm[m], "MiB")
    return rows


def _phase_rows(figures: Figures, extra: Dict[str, Series],
                times_untraced: Dict[str, Series]) -> Dict[str, Row]:
    """Every phase in detail: untraced, and the extra time of each monitor."""
    monitors = figures.monitors
    rows: Dict[str, Row] = {}
    for phase in PHASES:
        rows["%s: untraced" % phase] = _row(figures.ns[UNTRACED][phase], "ns/op")
        for m in monitors:
            rows["%s: extra ns/op, %s" % (phase, m)] = _row(extra[m][phase], "ns/op")
        for m in monitors:
            rows["%s: x untraced, %s" % (phase, m)] = _row(times_untraced[m][phase], "ratio")
        if BPFTRACE in monitors:
            for m in (SNIFF, SNIFF_AGG):
                rows["%s: extra ns/op, %s / bpftrace" % (phase, m)] = _row(
                    _ratios(extra[m][phase], extra[BPFTRACE][phase]), "ratio")
    return rows


def _bpf_rows(figures: Figures) -> Dict[str, Row]:
    """The statistics repetitions: per program per run, per phase per operation."""
    rows: Dict[str, Row] = {}
    for m in figures.monitors:
        for name, values in sorted(figures.bpf_run[m].items()):
            rows["BPF run time, %s: %s" % (m, name)] = _row(values, "ns/run")
    for phase in PHASES:
        for m in figures.monitors:
            if figures.bpf_op[m][phase]:
                rows["BPF time per op, %s: %s" % (phase, m)] = _row(figures.bpf_op[m][phase],
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
