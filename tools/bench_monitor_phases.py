"""The fixed workload (``tools/workload.py``) under one configuration, phase
by phase: untraced first (the baseline it is compared with), then under the
monitor, each phase started with the monitor idle again; and, with BPF
statistics on, what the monitor's programs cost per run and per operation.

Part of ``tools/bench_monitor.py``: one configuration's figures; repeating
configurations and turning figures into rows is ``bench_monitor.py``'s job.
"""

import json
import math
import os
import subprocess
import sys
from typing import Dict, Optional, Sequence, Tuple

from bench_monitor_process import OPS, ROOT, SNIFF_AGG, TOOLS, Monitor, wait_idle
from workload import PHASES

#: The order phases run in: the short ones first, so that the untraced
#: baseline of each is taken seconds before the monitored runs.
PHASE_ORDER = ("cycles", "read_outside", "getppid", "read_inside")

Plan = Dict[str, Tuple[int, Dict[str, int]]]


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



def run_workload(watched: str, outside: str, counts: Dict[str, int],
                 phases: Sequence[str] = PHASES) -> Dict[str, dict]:
    argv = [sys.executable, os.path.join(TOOLS, "workload.py"), "--dir", watched,
            "--outside", outside, "--cycles", str(counts["cycles"]),
            "--reads", str(counts["reads"]), "--syscalls", str(counts["syscalls"])]
    for phase in phases:
        argv += ["--phase", phase]
    result = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=600)
    if result.returncode:
        raise RuntimeError("workload exited %d: %s" % (result.returncode, result.stderr))
    return json.loads(result.stdout)["phases"]



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


def run_phases(monitor: Optional[Monitor], watched: str, outside: str, phases: Plan,
               stats: bool = False) -> Dict[str, object]:
    """Every phase of ``phases``, each run started with the monitor (if any)
    back to idle (a per-event monitor still draining the reads of
    ``read_inside`` would otherwise compete for the CPUs)."""
    result: Dict[str, object] = {"ns": {}, "expected": dict.fromkeys(OPS, 0)}
    if stats:
        ids = monitor.prog_ids()
        points = monitor.attach_points()
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
