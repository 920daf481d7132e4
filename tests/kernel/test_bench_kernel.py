"""The kernel-facing sub-benchmarks run on a tiny input and produce their
tables; no timing is asserted."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("which, rows", [
    ("reader", ("ringbuf, 128-byte records", "perf, 128-byte records")),
    ("btf", ("cold: parse", "warm: cached index")),
    ("paths", ("3 components: find + walk", "16 components: find + walk", "verifier: walk_fd")),
])
def test_kernel_benchmark_quick_run(tmp_path, which, rows):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), which,
                             "--quick", "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())["results"][which]
    for row in rows:
        assert any(name.startswith(row) and f["median"] > 0 for name, f in figures.items()), row
