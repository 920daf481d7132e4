"""One kernel's run of the matrix: a fresh copy of the repository, the guest
booted (or the host used as it is), its output kept, the time limits kept,
and the results read back.

Each guest boots with ``--disable-kvm`` (this machine's ``/dev/kvm`` is a
paravirtual variant Debian kernels cannot run on), 2 CPUs and 2 GiB, the host
root shared read-only and ``CACHE/runs/LABEL`` as the one writable directory:
it holds a copy of the repository (byte-compiled on the host; the tests run
there, with ``PYTHONPATH`` pointing at it) and the results (``out/junit.xml``,
``out/progress.jsonl``, ``out/meta.json``, ``out/features.json``,
``out/pytest.log``, ``console.log``). Inside, the host's own interpreter runs
``tools/kernel_matrix/guest_run.py`` by full path, with ``TMPDIR`` on a tmpfs
of its own (no test bounds its own run time: timings live in tools/bench.py,
so the ~14x slower emulation changes no outcome). Each test has
``--test-timeout`` seconds, each kernel ``--timeout`` (a killed run still
reports the tests it finished and the one it was running, from the progress
log, and the guest kernel's console is in ``console.log``), setup and all
kernels together ``--budget``. ``--retries`` runs a kernel again when it
timed out with nothing failed (an emulated guest can hang); failing tests
are never run again. Nothing kernel-specific is decided here: the tests
decide with feature probes and BTF, as the library does.
"""

import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from kernel_matrix import REPO, log
from kernel_matrix.plan import HOST
from kernel_matrix.report import cell
from kernel_matrix.results import ERROR, FAILED, KernelRun, load_run, parse_progress

#: The guest side, relative to the repository (and to each copy of it).
GUEST_RUNNER = os.path.join("tools", "kernel_matrix", "guest_run.py")


def existing_tests(tests: Sequence[str], repo: str = REPO) -> List[str]:
    """``tests`` that exist in ``repo`` (the others are left out, with a note)."""
    keep = []
    for test in tests:
        if os.path.exists(os.path.join(repo, test.split("::")[0])):
            keep.append(test)
        else:
            log("leaving out %s: not in the repository (yet)" % test)
    return keep


def copy_repo(dest: str, repo: str = REPO) -> None:
    """A fresh, byte-compiled copy of ``repo`` at ``dest``, importable as installed."""
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    shutil.copytree(repo, dest, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", ".benchmarks",
        "*.egg-info", "build", "dist"))
    _link_package_dirs(dest)
    # Byte-compile on the host: the emulated guest would otherwise compile
    # every module itself, which costs more than the tests.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", dest],
                   stdout=subprocess.DEVNULL, check=False)


def package_dirs(pyproject: str) -> Dict[str, str]:
    """``[tool.setuptools.package-dir]`` of a pyproject.toml: package -> directory
    (``{"pybpf.programs": "programs"}``). A tiny reader: Python 3.9 has no tomllib."""
    found: Dict[str, str] = {}
    section = False
    for line in pyproject.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped == "[tool.setuptools.package-dir]"
        elif section:
            pair = re.match(r'^"([\w.]*)"\s*=\s*"([^"]+)"', stripped)
            if pair and pair.group(1):
                found[pair.group(1)] = pair.group(2)
    return found


def _link_package_dirs(copy: str) -> None:
    """Make the copy importable from PYTHONPATH as installed: packages that
    pyproject maps to another directory (pybpf.programs -> programs/) get a
    symlink in their place. Without it, ``import pybpf.programs`` would go
    to the editable install's finder, i.e. the original checkout."""
    try:
        with open(os.path.join(copy, "pyproject.toml")) as f:
            mapping = package_dirs(f.read())
    except OSError:
        return
    for package, directory in mapping.items():
        where = os.path.join(copy, *package.split("."))
        target = os.path.join(copy, directory)
        if os.path.isdir(target) and not os.path.lexists(where) and \
                os.path.isdir(os.path.dirname(where)):
            os.symlink(os.path.relpath(target, os.path.dirname(where)), where)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # the group we started: vng and its QEMU
    except ProcessLookupError:
        pass


def run_kernel(label: str, cache: str, tests: Sequence[str], *, test_timeout: float,
               timeout: float, vng: str = "", vmlinuz: str = "", memory: str = "2G",
               cpus: int = 2, features: bool = True, repo: str = REPO) -> KernelRun:
    """Run ``tests`` on one kernel (``host``, or a guest booted from ``vmlinuz``)
    in ``CACHE/runs/LABEL``; return what the run left there."""
    work = os.path.join(cache, "runs", label)
    repo_copy, out = os.path.join(work, "repo"), os.path.join(work, "out")
    os.makedirs(work, exist_ok=True)
    copy_repo(repo_copy, repo)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    runner = _runner_command(label, repo_copy, out, tests, test_timeout, features)
    if label == HOST:
        cmd, env = runner, dict(os.environ)
    else:
        cmd, env = _guest_command(runner, work, repo_copy, vng, vmlinuz, memory, cpus)
    log("%s: %s" % (label, "running on the host" if label == HOST else "booting %s" % vmlinuz))
    started = time.time()
    console = os.path.join(work, "console.log")
    killed = _run_to_console(cmd, repo_copy, env, console, deadline=started + timeout)
    wall = time.time() - started
    result = _read_back(label, out, console, killed, timeout)
    result.wall_seconds = wall
    result.boot_seconds = _boot_seconds(label, out, wall)
    log("%s: done in %.0f s: %s" % (label, wall, result.problem or cell(result.counts())))
    return result


def _runner_command(label: str, repo_copy: str, out: str, tests: Sequence[str],
                    test_timeout: float, features: bool) -> List[str]:
    """``guest_run.py``'s command line, from the copy of the repository."""
    runner = [sys.executable, os.path.join(repo_copy, GUEST_RUNNER), "--out", out,
              "--test-timeout", str(test_timeout)]
    if label != HOST:
        # The rwdir is 9p; the guest's /tmp is an overlay of tmpfs on 9p, where
        # st_dev of a file is not its superblock's s_dev: a tmpfs of its own
        # (not /dev/shm, which some tests watch as a separate mount).
        runner += ["--tmp", "/tmp/pybpf-matrix", "--mount-tmpfs"]
    return runner + (["--features"] if features else []) + ["--"] + list(tests)


def _guest_command(runner: Sequence[str], work: str, repo_copy: str, vng: str, vmlinuz: str,
                   memory: str, cpus: int) -> Tuple[List[str], Dict[str, str]]:
    """The virtme-ng command (and its environment) that boots ``vmlinuz`` and
    runs ``runner`` inside, with ``work`` as the one writable directory."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(vng) + os.pathsep + env.get("PATH", "")
    guest_cmd = "cd %s && exec %s" % (shlex.quote(repo_copy), shlex.join(runner))
    # --verbose: the guest kernel's console goes to console.log too, so a
    # guest that hangs still says why (lockups, RCU stalls, oopses)
    cmd = [vng, "--run", vmlinuz, "--disable-kvm", "--user", "root", "--cpus", str(cpus),
           "--memory", memory, "--rwdir", work, "--cwd", repo_copy, "--verbose",
           "--exec", guest_cmd]
    return cmd, env


def _run_to_console(cmd: Sequence[str], cwd: str, env: Dict[str, str], console: str,
                    deadline: float) -> bool:
    """Run ``cmd`` with its output in the file ``console``; kill it (its
    whole process group) at ``deadline``. True when it had to be killed."""
    with open(console, "w") as console_file:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                errors="replace", start_new_session=True)
        try:
            assert proc.stdout is not None
            for line in _lines_until(proc, deadline):
                console_file.write(line)
                console_file.flush()
            try:
                proc.wait(timeout=max(0.0, deadline - time.time()) + 1)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
                return True
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
    return False


def _read_back(label: str, out: str, console: str, killed: bool, timeout: float) -> KernelRun:
    """The run's results; for a run killed at ``timeout``, the cases its
    progress log has and the test it was running."""
    result = load_run(label, out)
    result.timed_out = killed
    if killed:
        problem = "timed out after %.0f s (--timeout)" % timeout
        # pytest writes JUnit only at its end: take what the progress log has
        try:
            with open(os.path.join(out, "progress.jsonl")) as f:
                result.cases, running = parse_progress(f.read())
        except OSError:
            result.cases, running = [], ""
        result.problem = problem + (" while running %s" % running if running else
                                    " before the tests started" if not result.cases else "")
    elif result.problem:
        result.problem += "; see %s" % console
    return result


def _boot_seconds(label: str, out: str, wall: float) -> Optional[float]:
    """A guest's boot time: everything before the runner started (vng's
    preparation, QEMU, the kernel, virtme's init), from the uptime
    ``meta.json`` recorded (it counts from the kernel's start)."""
    try:
        with open(os.path.join(out, "meta.json")) as f:
            meta = json.load(f)
        if label != HOST and meta.get("uptime_at_start", -1) >= 0:
            return wall - (meta.get("total_seconds") or 0)
    except (OSError, ValueError):
        pass
    return None


def _lines_until(proc: subprocess.Popen, deadline: float):
    """Lines of ``proc``'s output until it ends or ``deadline`` passes."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    fd = proc.stdout.fileno()
    pending = b""
    while True:
        left = deadline - time.time()
        if left <= 0:
            break
        if not sel.select(timeout=min(left, 5)):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace") + "\n"
    if pending:
        yield pending.decode("utf-8", "replace")
    sel.close()


def run_with_retries(label: str, run_once: Callable[[float], KernelRun], timeout: float,
                     budget_end: Optional[float], retries: int) -> KernelRun:
    """``run_once(timeout)``, again (up to ``retries`` times) while it times
    out with no test failed: an emulated guest can hang, and a hang says
    nothing about our code. Failing tests are never retried; each attempt
    gets at most what is left of the budget, and none starts with under a
    minute left."""
    earlier: List[str] = []
    while True:
        limit = timeout if budget_end is None else min(timeout, budget_end - time.time())
        if limit < 60:
            result = KernelRun(label, problem="not run: the --budget was used up")
            log("%s: %s" % (label, result.problem))
            break
        result = run_once(limit)
        counts = result.counts()
        if not (result.timed_out and not counts[FAILED] + counts[ERROR]
                and len(earlier) < retries):
            break
        earlier.append(result.problem)
        log("%s: %s; running it again (--retries)" % (label, result.problem))
    result.earlier = earlier
    return result
