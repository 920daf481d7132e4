"""``tools/bench.py monitor --quick``: the harness runs sniffwrites (and
bpftrace, when installed) on the fixed workload, prints its table and writes
its JSON. No figure is asserted: these machines are noisy and shared."""

import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHASES = ("cycles", "read_inside", "read_outside", "getppid")
MONITORS = ("sniffwrites", "sniffwrites --aggregate", "bpftrace")


def expected_rows(have_bpftrace):
    monitors = [m for m in MONITORS if have_bpftrace or m != "bpftrace"]
    rows = []
    for m in monitors:
        rows += ["start-up until attached: %s" % m, "watched reads vs untraced: %s" % m,
                 "records lost: %s" % m, "resident memory: %s" % m,
                 "peak resident memory: %s" % m, "BPF run time, %s: " % m]
        rows += ["events received of "]
        for phase in PHASES:
            rows += ["%s: untraced" % phase, "%s: extra ns/op, %s" % (phase, m),
                     "%s: x untraced, %s" % (phase, m), "BPF time per op, %s: %s" % (phase, m)]
    if have_bpftrace:
        rows += ["start-up until attached: sniffwrites / bpftrace",
                 "extra per op, read outside the directory: sniffwrites / bpftrace",
                 "read_outside: extra ns/op, sniffwrites / bpftrace"]
    else:
        rows += ["note: bpftrace not found"]
    rows.append("highest zero-loss event rate: sniffwrites per-event")
    return rows


def test_bench_monitor_quick(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "bench.py"), "monitor",
                             "--quick", "--json", str(out)], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "### monitor (" in result.stdout
    assert "| measure | median | range | unit |" in result.stdout
    assert "| start-up until attached: sniffwrites |" in result.stdout

    report = json.loads(out.read_text())
    assert report["kernel"] and report["machine"] and report["date"]
    figures = report["results"]["monitor"]
    for row in expected_rows(shutil.which("bpftrace") is not None):
        assert any(name.startswith(row) for name in figures), (row, sorted(figures))
    for name, figure in figures.items():
        assert set(figure) >= {"median", "min", "max", "unit"}, name
        assert figure["min"] <= figure["median"] <= figure["max"], name
        assert "| %s |" % name in result.stdout, name
