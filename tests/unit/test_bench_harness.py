"""The benchmark harness runs, produces its table and JSON, and exits 0.
No timing is asserted: speed lives in tools/bench.py output, not in tests."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_isa_benchmark_quick_run(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "isa",
                             "--quick", "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "| encode |" in result.stdout and "| decode |" in result.stdout
    figures = json.loads(out.read_text())["results"]["isa"]
    assert set(figures) >= {"encode", "decode", "assemble (builder)", "parse text", "disassemble"}
    assert all(f["median"] > 0 for f in figures.values())


def test_dsl_benchmark_quick_run(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "dsl",
                             "--quick", "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())["results"]["dsl"]
    assert figures["build the shipped programs"]["median"] > 0
