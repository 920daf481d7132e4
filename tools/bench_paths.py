"""What a descriptor -> path walk costs in the kernel (``programs/lib_paths.py``).

Called by ``tools/bench.py paths`` (root). The walkers of
``tests/kernel/path_walkers.py`` run with BPF_PROG_TEST_RUN on a descriptor
of a file 3 and 16 components deep (``/tmp/.../file``, on one filesystem);
the kernel's run statistics (``run_time_ns / run_cnt``, BPF_ENABLE_STATS)
give the time per run, which includes the ~50-60 ns the statistics
themselves cost. ``find_file`` only reaches the ``struct file`` (the part
that is not the walk); ``walk_fd_plain`` walks without a hook; ``walk_fd``
also looks every directory up in a hash map (all misses). The verifier's
"processed insns" of each program is reported too.
"""

import os
import shutil
import statistics
import sys
import tempfile
from typing import Dict

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests", "kernel")]

from path_walkers import Walker, find_file, walk_fd, walk_fd_plain  # noqa: E402

from pybpf.kernel.prog import enable_stats  # noqa: E402


def _ns_per_run(walker: Walker, program, fd: int, runs: int) -> float:
    loaded = walker.collection.programs[program.name]
    before = loaded.info()
    for _ in range(runs):
        walker.run(fd, program)
    after = loaded.info()
    return (after.run_time_ns - before.run_time_ns) / (after.run_cnt - before.run_cnt)


def run(runs: int = 2000, repeats: int = 5) -> Dict[str, Dict[str, float]]:
    results: Dict[str, Dict[str, float]] = {}
    top = tempfile.mkdtemp(prefix="w", dir="/tmp")     # /tmp/wXXXX: components 1 and 2
    walker = Walker()
    try:
        with enable_stats():
            for depth in (3, 16):
                directory = os.path.join(top, *("d%d" % i for i in range(depth - 3)))
                os.makedirs(directory, exist_ok=True)
                fd = os.open(os.path.join(directory, "file"), os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    for program, what in ((find_file, "find the struct file only"),
                                          (walk_fd_plain, "find + walk"),
                                          (walk_fd, "find + walk + a hash lookup per level")):
                        times = [_ns_per_run(walker, program, fd, runs)
                                 for _ in range(repeats)]
                        results["%d components: %s" % (depth, what)] = {
                            "median": statistics.median(times), "min": min(times),
                            "max": max(times), "unit": "ns/run"}
                finally:
                    os.close(fd)
        for program in (find_file, walk_fd_plain, walk_fd):
            insns = float(walker.collection.programs[program.name].info().verified_insns)
            results["verifier: %s" % program.name] = {"median": insns, "min": insns,
                                                      "max": insns, "unit": "insns processed"}
    finally:
        walker.close()
        shutil.rmtree(top)
    return results
