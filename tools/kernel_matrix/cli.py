"""The kernel matrix's command line: ``tools/kernel_matrix.py`` calls
:func:`main`. It parses the options, prepares the cache (``setup.py``), runs
each chosen kernel in turn with its retries and the overall budget
(``run.py``), copies the JUnit files, and prints the report (``report.py``).

Exit status: 0 when every selected kernel ran every test and none failed; 1
when a test failed or a kernel produced no results; 2 on a setup error.
"""

import argparse
import os
import shutil
import time
from typing import Dict, Optional, Sequence

from kernel_matrix import REPO, log
from kernel_matrix.plan import KERNEL_CHOICES, MATRIX_TESTS, kernel_labels
from kernel_matrix.report import report
from kernel_matrix.results import KernelRun
from kernel_matrix.run import existing_tests, run_kernel, run_with_retries
from kernel_matrix.setup import DEFAULT_CACHE, Setup, SetupError, check_cache_dir


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the kernel-dependent tests on the host kernel and on Debian's 6.1 "
                    "and 6.12 kernels in virtme-ng VMs; print a table of the results.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--kernel", action="append", choices=KERNEL_CHOICES,
                        help="kernel to run on; repeat for several (default: all)")
    parser.add_argument("--tests", nargs="+", metavar="PATH",
                        help="test files or node ids (default: MATRIX_TESTS in "
                             "tools/kernel_matrix/plan.py)")
    parser.add_argument("--cache", default=DEFAULT_CACHE,
                        help="where virtme-ng, the kernels and the runs are kept")
    parser.add_argument("--junit-dir", help="also copy each kernel's JUnit file here "
                                            "as junit-LABEL.xml")
    parser.add_argument("--timeout", type=float, default=480,
                        help="seconds for one kernel's whole run, boot included")
    parser.add_argument("--budget", type=float, default=0,
                        help="seconds for setup and all kernels together (0: no limit); each "
                             "kernel gets at most what is left, and kernels with under a minute "
                             "left are reported as not run")
    parser.add_argument("--retries", type=int, default=0,
                        help="run a kernel again (at most this many times) when it timed out "
                             "with no test failed: an emulated guest can hang; the report "
                             "says so")
    parser.add_argument("--test-timeout", type=float, default=120,
                        help="seconds one test may take inside a kernel")
    parser.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown here")
    parser.add_argument("--memory", default="2G", help="guest memory")
    parser.add_argument("--cpus", type=int, default=2, help="guest CPUs (tests need 2)")
    parser.add_argument("--refresh", action="store_true",
                        help="look for newer kernel packages even when some are cached")
    parser.add_argument("--setup-only", action="store_true",
                        help="prepare the cache (packages, virtme-ng, kernels) and stop")
    parser.add_argument("--repo", default=REPO,
                        help="the checkout whose tests and code run (copied for each kernel)")
    parser.add_argument("--no-features", action="store_true",
                        help="skip the feature-probe dump per kernel")
    return parser.parse_args(argv)



def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    labels = kernel_labels(args.kernel)
    # the budget covers setup too: on a fresh host that is apt, pip and the kernels
    budget_end = time.time() + args.budget if args.budget > 0 else None
    try:
        cache = check_cache_dir(args.cache)
        if os.geteuid() != 0:
            raise SetupError("run as root: the tests load BPF programs, and setup uses apt")
        setup = Setup(cache, refresh=args.refresh)
        t0 = time.time()
        kernels = setup.all(labels)
        log("setup done in %.0f s" % (time.time() - t0))
    except SetupError as exc:
        log("setup failed: %s" % exc)
        return 2
    for label, info in kernels.items():
        log("%s: %s %s (%s)" % (label, info.get("package"), info.get("version"), info["vmlinuz"]))
    if args.setup_only:
        return 0
    repo = os.path.abspath(args.repo)
    tests = existing_tests(args.tests or MATRIX_TESTS, repo)
    if not tests:
        log("no tests to run")
        return 2
    runs = []
    for label in labels:
        info = kernels.get(label, {})

        def run_once(timeout: float, label: str = label, info: Dict[str, str] = info) -> KernelRun:
            return run_kernel(label, cache, tests, test_timeout=args.test_timeout,
                              timeout=timeout, vng=setup.vng, vmlinuz=info.get("vmlinuz", ""),
                              memory=args.memory, cpus=args.cpus,
                              features=not args.no_features, repo=repo)
        runs.append(run_with_retries(label, run_once, args.timeout, budget_end, args.retries))
        if args.junit_dir:
            os.makedirs(args.junit_dir, exist_ok=True)
            src = os.path.join(cache, "runs", label, "out", "junit.xml")
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(args.junit_dir, "junit-%s.xml" % label))
    text = report(runs)
    print(text, end="")
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write(report(runs, markdown=True))
    return 0 if all(r.ok for r in runs) else 1
