"""What loading a clang-built object costs, pybpf against libbpf, as a user
sees it: the whole process.

Called by ``tools/bench.py elf`` (root). For each object of the ELF loader's
corpus (``tests/kernel/objfile_corpus.py``: the clang-built objects, then
cilium/ebpf's and libxdp's) that has programs and that ``bpftool prog
loadall`` loads on this kernel, the wall time of ``pybpf prog loadall OBJ DIR`` and of ``bpftool
prog loadall OBJ DIR`` (process start, open, relocate, load, pin, exit),
side by side; the pins are removed after each run. One run of each comes
first, unmeasured, so that the BTF index cache and the page cache are warm.
The goal is at most 2x bpftool's time and under 0.5 s for every object.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests", "kernel")]

from objfile_corpus import (BPFFS, build_objects, by_name_pins_removed,  # noqa: E402
                            shipped_objects)

from pybpf.errors import PyBPFError  # noqa: E402
from pybpf.kernel.btf import vmlinux  # noqa: E402
from pybpf.objfile.bpf_object import BPFObject  # noqa: E402

PYBPF = [sys.executable, "-m", "pybpf.cli", "prog", "loadall"]
BPFTOOL = ["bpftool", "prog", "loadall"]


def _timed_load(command: List[str], path: str) -> float:
    """Seconds one ``command OBJ DIR`` takes, or -1 if it fails; pins removed."""
    pin_dir = os.path.join(BPFFS, "pybpf_bench_%d" % os.getpid())
    with by_name_pins_removed(path):
        try:
            start = time.perf_counter()
            done = subprocess.run(command + [path, pin_dir], capture_output=True, cwd=_ROOT)
            elapsed = time.perf_counter() - start
        finally:
            shutil.rmtree(pin_dir, ignore_errors=True)
    return elapsed if done.returncode == 0 else -1.0


def _has_programs(path: str) -> bool:
    """Whether the object has programs (one pybpf cannot read counts: its
    failure is then reported)."""
    try:
        return bool(BPFObject(path, target_btf=vmlinux).programs)
    except PyBPFError:
        return True


def _figures(seconds: List[float]) -> Dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms), "unit": "ms"}


def run(repeats: int = 5, limit: int = 0) -> Dict[str, Dict[str, float]]:
    """Per object: pybpf's and bpftool's milliseconds, and their ratio."""
    results: Dict[str, Dict[str, float]] = {}
    work = tempfile.mkdtemp(prefix="bench_elf")
    try:
        objects = list(build_objects(work).values()) + shipped_objects()
        if limit:
            objects = objects[:limit]
        for path in objects:
            name = os.path.basename(path)
            if _timed_load(BPFTOOL, path) < 0 or not _has_programs(path):
                continue   # libbpf refuses it here, or it has nothing to load
            if _timed_load(PYBPF, path) < 0:
                results["%s: pybpf fails" % name] = {"median": 1, "min": 1, "max": 1,
                                                     "unit": "failure"}
                continue
            ours = [_timed_load(PYBPF, path) for _ in range(repeats)]
            theirs = [_timed_load(BPFTOOL, path) for _ in range(repeats)]
            results["%s: pybpf" % name] = _figures(ours)
            results["%s: bpftool" % name] = _figures(theirs)
            ratios = [a / b for a, b in zip(ours, theirs)]
            results["%s: pybpf / bpftool" % name] = {
                "median": statistics.median(ours) / statistics.median(theirs),
                "min": min(ratios), "max": max(ratios), "unit": "x"}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results
