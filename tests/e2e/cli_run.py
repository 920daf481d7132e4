"""Running the ``pybpf`` command as a real subprocess, for the e2e tests."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pybpf(*args, check=True, cwd=REPO, timeout=120) -> subprocess.CompletedProcess:
    """Run ``pybpf ARGS`` (as ``python -m pybpf.cli``, in ``cwd``) and return
    the result; with ``check`` a non-zero exit fails with its stderr."""
    result = subprocess.run([sys.executable, "-m", "pybpf.cli"] + [str(a) for a in args],
                            cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise AssertionError("pybpf %s exited %d: %s" % (" ".join(map(str, args)),
                                                          result.returncode, result.stderr))
    return result
