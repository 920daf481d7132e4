"""Our programs stay lean: each is within 1.3x the instruction count clang -O2
emits for the same C (tools/compare_clang.py exits 1 above that)."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_programs_are_within_1_3x_of_clang():
    if shutil.which("clang") is None or shutil.which("llvm-objdump-19") is None:
        pytest.skip("clang or llvm-objdump-19 is missing (tools/setup_test_host.sh installs them)")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "compare_clang.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| count_syscalls.count_syscalls |" in result.stdout
