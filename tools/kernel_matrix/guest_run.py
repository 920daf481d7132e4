"""Runs one kernel's part of the matrix: inside a virtme-ng guest, or on the host.

``tools/kernel_matrix.py`` starts this with the host's own interpreter (by full
path: the guest's ``python3`` on PATH is Debian's) and the repository copy as
the working directory, which must be writable (the ``--rwdir``)::

    python guest_run.py --out DIR [--test-timeout S] [--features] -- TESTS...

It writes into ``--out``:

``meta.json``
    the kernel release, the interpreter, how long the kernel had been up when
    this started (the boot time, in a guest), the pytest exit status and wall time;
``features.json``
    ``pybpf.kernel.features.probe().as_dict()`` (or the error that stopped it);
``junit.xml``
    pytest's JUnit report (xunit1: each case carries its file);
``progress.jsonl``
    one line per test started and per phase reported, as the run goes (what
    is left of a run the host had to kill);
``pytest.log``
    pytest's output (also echoed to stdout, which is the guest console).

Pytest runs with ``CI=true`` (a skip is a failure: tests/conftest.py), its
cache provider off, ``TMPDIR`` inside ``--out`` and a per-test time limit from
``matrix_timeout.py``. Nothing here depends on pybpf except the optional
feature dump; this file must run on Python 3.9.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def uptime() -> float:
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def dump_features(path: str) -> None:
    """The feature probe's answers, from a child process so that a crash or
    a hang there cannot take the test run with it."""
    code = ("import json, sys\n"
            "import pybpf\n"
            "from pybpf.kernel import features\n"
            "answers = features.probe().as_dict()\n"
            "answers['pybpf_file'] = pybpf.__file__\n"
            "json.dump(answers, sys.stdout)\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300)
        if done.returncode == 0:
            data = json.loads(done.stdout)
        else:
            lines = done.stderr.strip().splitlines() or ["exit %d" % done.returncode]
            data = {"error": lines[-1]}
    except (subprocess.TimeoutExpired, ValueError) as exc:
        data = {"error": "%s: %s" % (type(exc).__name__, exc)}
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for the results (writable)")
    parser.add_argument("--test-timeout", type=float, default=0,
                        help="seconds one test may take (0: no limit)")
    parser.add_argument("--tmp", help="TMPDIR for pytest and the tests (default: OUT/tmp); "
                        "in a guest it must not be on 9p, where unlinked temporary files "
                        "cannot be truncated (pytest's output capture does that), nor on "
                        "virtme-ng's /tmp overlay (its layers are on different filesystems, "
                        "so st_dev of a file is not its superblock's s_dev)")
    parser.add_argument("--mount-tmpfs", action="store_true",
                        help="mount a tmpfs on --tmp first (in a guest, as root)")
    parser.add_argument("--features", action="store_true",
                        help="also write features.json from pybpf's feature probe")
    parser.add_argument("tests", nargs="+", help="test files or node ids, relative to the cwd")
    args = parser.parse_args(argv)

    started_up = uptime()
    started = time.time()
    out = os.path.abspath(args.out)
    tmp = os.path.abspath(args.tmp) if args.tmp else os.path.join(out, "tmp")
    os.makedirs(tmp, exist_ok=True)
    if args.mount_tmpfs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "pybpf-matrix", tmp],
                       check=True)
    repo = os.getcwd()
    meta = {"release": platform.release(), "python": sys.executable,
            "python_version": platform.python_version(), "uptime_at_start": started_up,
            "cpus": os.cpu_count(), "tests": args.tests}
    meta_path = os.path.join(out, "meta.json")

    def save() -> None:
        with open(meta_path, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)

    save()
    env = dict(os.environ)
    env.update({
        "CI": "true",
        "TMPDIR": tmp,
        "HOME": tmp,        # the guest's HOME may be read-only
        "PYTHONPATH": os.pathsep.join([repo, HERE]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "MATRIX_TEST_TIMEOUT": str(args.test_timeout),
        "MATRIX_PROGRESS": os.path.join(out, "progress.jsonl"),
    })
    os.environ.update({k: env[k] for k in ("CI", "TMPDIR", "HOME", "PYTHONPATH")})
    if args.features:
        t0 = time.time()
        dump_features(os.path.join(out, "features.json"))
        meta["features_seconds"] = round(time.time() - t0, 2)
        save()

    # --tb=short: long tracebacks cost seconds each in an emulated guest
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "matrix_timeout",
           "-o", "junit_family=xunit1", "--junitxml", os.path.join(out, "junit.xml"),
           "-q", "-ra", "--tb=short", "--durations=15", "--basetemp", os.path.join(tmp, "pytest")]
    cmd += args.tests
    print("kernel-matrix: %s: running %s" % (meta["release"], " ".join(cmd)), flush=True)
    t0 = time.time()
    with open(os.path.join(out, "pytest.log"), "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()          # the host may kill the VM at any moment
            sys.stdout.write(line)
        rc = proc.wait()
    meta.update({"pytest_rc": rc, "pytest_seconds": round(time.time() - t0, 2),
                 "total_seconds": round(time.time() - started, 2)})
    save()
    print("kernel-matrix: %s: pytest exit %d after %.1f s"
          % (meta["release"], rc, meta["pytest_seconds"]), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
