"""The code must run on Python 3.9 (minimal hosts run older Pythons). No 3.9
interpreter can be installed here, so vermin checks it statically."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKED = ["pybpf", "programs", "sniffwrites", "tools"]


def test_sources_need_at_most_python_3_9():
    vermin = shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (pip install '.[test]')")
    paths = [os.path.join(ROOT, p) for p in CHECKED if os.path.isdir(os.path.join(ROOT, p))]
    result = subprocess.run([vermin, "--target=3.9-", "--violations", "--no-tips",
                             "--eval-annotations"] + paths,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
