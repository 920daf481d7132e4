"""The pure parts of tools/kernel_matrix.py (the package tools/kernel_matrix/):
package selection from apt output, JUnit parsing, the tables, the guest
runner and its per-test time limit. No VM is booted and no kernel is touched
here."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "tools")
SUPPORT = os.path.join(TOOLS, "kernel_matrix")
if TOOLS not in sys.path:
    sys.path.append(TOOLS)

from kernel_matrix.plan import MATRIX_TESTS, SERIES, kernel_labels  # noqa: E402
from kernel_matrix.setup import (  # noqa: E402
    SetupError, _deb_version, check_cache_dir, parse_policy, parse_search, select_package)
from kernel_matrix.results import (  # noqa: E402
    Case, KernelRun, load_run, parse_junit, parse_progress)
from kernel_matrix.report import (  # noqa: E402
    cell, feature_rows, render_markdown, render_text, report, table_rows)
from kernel_matrix.run import copy_repo, package_dirs, run_with_retries  # noqa: E402

# --- package selection ----------------------------------------------------------------------

SEARCH_6_1 = """\
linux-image-6.1.0-9-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-47-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-47-amd64-dbg - Debug symbols for linux-image-6.1.0-47-amd64
linux-image-6.1.0-47-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-47-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-47-rt-amd64 - Linux 6.1 for 64-bit PCs, PREEMPT_RT (signed)
linux-image-6.1.0-55-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-56-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-56-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-57-amd64 - Linux 6.1 for 64-bit PCs (signed)
"""

SEARCH_6_12 = """\
linux-image-6.12-amd64 - Linux for 64-bit PCs (meta-package)
linux-image-6.12.9+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
linux-image-6.12.100+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
linux-image-6.12.117+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.117+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
"""

POLICY = """\
linux-image-6.1.0-55-amd64:
  Installed: (none)
  Candidate: 6.1.192-1
  Version table:
     6.1.192-1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.1.0-56-amd64:
  Installed: (none)
  Candidate: 6.1.192-2
  Version table:
     6.1.192-2 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
linux-image-6.1.0-57-amd64:
  Installed: (none)
  Candidate: (none)
  Version table:
"""


def test_search_output_gives_names():
    names = parse_search(SEARCH_6_1)
    assert names[0] == "linux-image-6.1.0-9-amd64" and len(names) == 10
    assert parse_search("") == [] and parse_search("W: junk\n") == []


def test_policy_output_gives_candidates():
    assert parse_policy(POLICY) == {"linux-image-6.1.0-55-amd64": "6.1.192-1",
                                       "linux-image-6.1.0-56-amd64": "6.1.192-2",
                                       "linux-image-6.1.0-57-amd64": None}


def test_newest_signed_generic_package_with_a_candidate():
    series = SERIES["6.1"]
    names = parse_search(SEARCH_6_1)
    # numbers compare as numbers (56 > 9), flavours and -dbg/-unsigned are not ours
    assert select_package(series, names) == "linux-image-6.1.0-57-amd64"
    # 57 is only named by an old package list: nothing to download
    assert select_package(series, names, parse_policy(POLICY)) == \
        "linux-image-6.1.0-56-amd64"
    assert select_package(series, names, {}) is None


def test_6_12_names_carry_the_debian_suffix():
    series = SERIES["6.12"]
    names = parse_search(SEARCH_6_12)
    assert select_package(series, names) == "linux-image-6.12.117+deb12-amd64"
    assert series.matches("linux-image-6.12-amd64") is None           # the meta-package
    assert series.matches("linux-image-6.12.117+deb12-cloud-amd64") is None
    assert SERIES["6.1"].matches("linux-image-6.12.117+deb12-amd64") is None


def test_deb_file_version():
    assert _deb_version("linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb") == "6.1.192-2"
    assert _deb_version("linux-image-6.12.117+deb12-amd64_6.12.117-1~deb12u1_amd64.deb") \
        == "6.12.117-1~deb12u1"
    assert _deb_version("x_1%3a2.0-1_all.deb") == "1:2.0-1"


def test_cache_must_be_visible_in_the_guest_and_outside_the_repo():
    for bad in ("/var/cache/pybpf-matrix", "/var/tmp/m", "/run/m", os.path.join(ROOT, "cache")):
        with pytest.raises(SetupError):
            check_cache_dir(bad)
    assert check_cache_dir("/var/lib/pybpf-matrix") == "/var/lib/pybpf-matrix"


def test_kernel_choice():
    assert kernel_labels(None) == ["host", "5.10", "6.1", "6.12"]
    assert kernel_labels(["all"]) == ["host", "5.10", "6.1", "6.12"]
    assert kernel_labels(["6.12", "host"]) == ["host", "6.12"]
    assert SERIES["5.10"].suite == "bullseye" and not SERIES["6.1"].suite


def test_matrix_tests_exist():
    """The subset is named in one place; a renamed test file must be renamed there too."""
    for path in MATRIX_TESTS:
        assert os.path.exists(os.path.join(ROOT, path)), path
    assert len(set(MATRIX_TESTS)) == len(MATRIX_TESTS)


# --- JUnit ----------------------------------------------------------------------------------

XUNIT1 = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">
<testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="3.2">
<testcase classname="tests.kernel.test_maps" name="test_a" file="tests/kernel/test_maps.py"
  line="3" time="0.5" />
<testcase classname="tests.kernel.test_maps" name="test_b[hash]" file="tests/kernel/test_maps.py"
  line="9" time="0.25"><failure message="AssertionError: assert 1 == 2">long text</failure>
</testcase>
<testcase classname="tests.kernel.test_prog" name="test_c" file="tests/kernel/test_prog.py"
  line="1" time="0.1"><error message="failed on setup with &quot;OSError&quot;">trace</error>
</testcase>
<testcase classname="tests.kernel.test_prog" name="test_d" file="tests/kernel/test_prog.py"
  line="5" time="0"><skipped type="pytest.skip" message="no bpftool">why</skipped></testcase>
<testcase classname="tests.kernel.test_prog.TestGroup" name="test_e"
  file="tests/kernel/test_prog.py" line="20" time="0.01" />
</testsuite></testsuites>
"""

XUNIT2 = """<?xml version="1.0" encoding="utf-8"?>
<testsuite name="pytest" tests="2">
<testcase classname="tests.kernel.test_features" name="test_x" time="1.5" />
<testcase classname="tests.kernel.test_features.TestY" name="test_z" time="x">
  <failure>first line
second line</failure></testcase>
</testsuite>
"""


def test_junit_xunit1():
    cases = parse_junit(XUNIT1)
    assert [(c.file, c.name, c.outcome) for c in cases] == [
        ("tests/kernel/test_maps.py", "test_a", "passed"),
        ("tests/kernel/test_maps.py", "test_b[hash]", "failed"),
        ("tests/kernel/test_prog.py", "test_c", "error"),
        ("tests/kernel/test_prog.py", "test_d", "skipped"),
        ("tests/kernel/test_prog.py", "TestGroup::test_e", "passed"),
    ]
    assert cases[1].message == "AssertionError: assert 1 == 2" and cases[1].seconds == 0.25
    assert cases[1].nodeid == "tests/kernel/test_maps.py::test_b[hash]"
    assert cases[2].message == 'failed on setup with "OSError"'


def test_junit_xunit2_without_file_attributes():
    cases = parse_junit(XUNIT2)
    assert [(c.file, c.name, c.outcome) for c in cases] == [
        ("tests/kernel/test_features.py", "test_x", "passed"),
        ("tests/kernel/test_features.py", "TestY::test_z", "failed"),
    ]
    assert cases[1].message == "first line" and cases[1].seconds == 0.0


def _run_dir(tmp_path, junit=None, meta=None, features=None):
    out = tmp_path / "out"
    out.mkdir()
    if junit is not None:
        (out / "junit.xml").write_text(junit)
    if meta is not None:
        (out / "meta.json").write_text(json.dumps(meta))
    if features is not None:
        (out / "features.json").write_text(json.dumps(features))
    return str(out)


def test_load_run(tmp_path):
    features = {"other": {"ringbuf": {"available": True, "detail": ""}}}
    run = load_run("6.1", _run_dir(tmp_path, XUNIT1, {"release": "6.1.0-56-amd64",
                                                          "pytest_seconds": 80.5}, features))
    assert (run.release, run.test_seconds, run.problem) == ("6.1.0-56-amd64", 80.5, "")
    assert run.counts() == {"passed": 2, "failed": 1, "error": 1, "skipped": 1}
    assert run.counts("tests/kernel/test_maps.py") == {"passed": 1, "failed": 1, "error": 0,
                                                       "skipped": 0}
    assert not run.ok and run.features == features


def test_runs_without_results_say_why(tmp_path):
    run = load_run("6.12", _run_dir(tmp_path))
    assert "no JUnit report" in run.problem and not run.ok
    (tmp_path / "out" / "junit.xml").write_text("<testsuite")
    assert "unreadable" in load_run("6.12", str(tmp_path / "out")).problem
    (tmp_path / "out" / "junit.xml").write_text("<testsuite name='pytest' tests='0'/>")
    assert "no test cases" in load_run("6.12", str(tmp_path / "out")).problem


# --- tables ---------------------------------------------------------------------------------

def _runs():
    host = KernelRun("host", "6.18.44",
                        [Case("tests/kernel/test_maps.py", "test_a", "passed"),
                         Case("tests/kernel/test_prog.py", "test_c", "passed")],
                        test_seconds=8.2,
                        features={"other": {"ringbuf": {"available": True}},
                                  "link_types": {"BPF_LINK_TYPE_TCX": {"available": True}}})
    old = KernelRun("6.1", "6.1.0-56-amd64", parse_junit(XUNIT1), boot_seconds=21.4,
                       test_seconds=83.0,
                       features={"other": {"ringbuf": {"available": True}},
                                 "link_types": {"BPF_LINK_TYPE_TCX": {"available": False}}})
    dead = KernelRun("6.12", problem="timed out after 360 s (--timeout)")
    return [host, old, dead]


def test_cells():
    assert cell({"passed": 3, "failed": 0, "error": 0, "skipped": 0}) == "3 passed"
    assert cell({"passed": 1, "failed": 2, "error": 1, "skipped": 1}) == \
        "1 passed, 2 failed, 1 error, 1 skipped"
    assert cell({"passed": 0, "failed": 0, "error": 0, "skipped": 0}) == "-"


def test_table_rows_and_columns():
    runs = _runs()
    assert runs[0].ok and not runs[1].ok and not runs[2].ok
    header, rows = table_rows(runs)
    assert header == ["tests", "host (6.18.44)", "6.1 (6.1.0-56-amd64)", "6.12"]
    assert rows[0] == ["tests/kernel/test_maps.py", "1 passed", "1 passed, 1 failed", "no results"]
    assert rows[1] == ["tests/kernel/test_prog.py", "1 passed", "1 passed, 1 error, 1 skipped",
                       "no results"]
    assert rows[2] == ["total", "2 passed", "2 passed, 1 failed, 1 error, 1 skipped",
                       "timed out after 360 s (--timeout)"]
    assert rows[3] == ["time (boot + tests)", "tests 8 s", "boot 21 s, tests 83 s", "-"]


def test_text_and_markdown_rendering():
    header, rows = table_rows(_runs())
    text = render_text(header, rows).splitlines()
    assert text[0].startswith("tests  ") and set(text[1]) <= {"-", " "}
    widths = [len(c) for c in text[1].split("  ")]
    assert text[2][widths[0] + 2:].startswith("1 passed")     # columns line up
    md = render_markdown(["a|b", "c"], [["1", "2"]]).splitlines()
    assert md == ["| a\\|b | c |", "|---|---|", "| 1 | 2 |"]


def test_feature_table_and_report():
    runs = _runs()
    header, rows = feature_rows(runs)
    ringbuf = next(r for r in rows if r[0] == "ringbuf")
    tcx = next(r for r in rows if r[0] == "BPF_LINK_TYPE_TCX")
    assert ringbuf == ["ringbuf", "yes", "yes", "?"]
    assert tcx == ["BPF_LINK_TYPE_TCX", "yes", "no", "?"]
    text = report(runs)
    assert "Failures:" in text and "6.12: timed out after 360 s" in text
    assert "6.1: FAILED tests/kernel/test_maps.py::test_b[hash]: AssertionError" in text
    assert "6.1: SKIPPED tests/kernel/test_prog.py::test_d: no bpftool" in text
    md = report(runs, markdown=True)
    assert md.startswith("| tests | host (6.18.44) |") and "\n- 6.1: ERROR " in md
    assert "Failures:" not in report(runs[:1])


# --- the guest side -------------------------------------------------------------------------

SAMPLE_TESTS = textwrap.dedent("""
    import os, time, pytest

    def test_passes():
        assert os.environ["CI"] == "true" and os.environ["TMPDIR"].endswith("tmp")

    def test_fails():
        assert 1 == 2

    def test_hangs():
        time.sleep(30)
""")


def test_guest_runner_writes_junit_and_meta_and_limits_each_test(tmp_path):
    """guest_run.py on the host, on a throw-away test file: the per-test limit
    (matrix_timeout.py) turns a hang into a failure and the run goes on."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "test_sample.py").write_text(SAMPLE_TESTS)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    done = subprocess.run([sys.executable, os.path.join(SUPPORT, "guest_run.py"), "--out",
                           str(out), "--test-timeout", "2", "--", "test_sample.py"],
                          cwd=str(work), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    run = load_run("host", str(out))
    outcomes = {c.name: (c.outcome, c.message) for c in run.cases}
    assert outcomes["test_passes"][0] == "passed"
    assert outcomes["test_fails"][0] == "failed"
    hung = outcomes["test_hangs"]
    assert hung[0] == "failed" and "MatrixTestTimeout" in hung[1]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["pytest_rc"] == 1 and meta["release"] == os.uname().release
    assert meta["pytest_seconds"] < 25
    assert "kernel-matrix:" in done.stdout and (out / "pytest.log").exists()


PROGRESS = "\n".join([
    '{"start": "tests/kernel/test_maps.py::test_a"}',
    '{"nodeid": "tests/kernel/test_maps.py::test_a", "when": "setup", "outcome": "passed",'
    ' "duration": 0.1, "message": ""}',
    '{"nodeid": "tests/kernel/test_maps.py::test_a", "when": "call", "outcome": "failed",'
    ' "duration": 0.5, "message": "AssertionError: no"}',
    '{"nodeid": "tests/kernel/test_maps.py::test_a", "when": "teardown", "outcome": "passed",'
    ' "duration": 0, "message": ""}',
    '{"start": "tests/kernel/test_maps.py::test_b[x]"}',
    '{"nodeid": "tests/kernel/test_maps.py::test_b[x]", "when": "setup", "outcome": "failed",'
    ' "duration": 0.2, "message": "OSError: EPERM"}',
    '{"nodeid": "tests/kernel/test_maps.py::test_b[x]", "when": "teardown", "outcome": "passed",'
    ' "duration": 0, "message": ""}',
    '{"start": "tests/kernel/test_prog.py::test_hangs"}',
    '{"nodeid": "tests/kernel/test_prog.py::test_hangs", "when": "setup", "outcome": "pass',
])


def test_progress_log_of_a_killed_run():
    cases, running = parse_progress(PROGRESS)
    assert [(c.nodeid, c.outcome, c.message) for c in cases] == [
        ("tests/kernel/test_maps.py::test_a", "failed", "AssertionError: no"),
        ("tests/kernel/test_maps.py::test_b[x]", "error", "OSError: EPERM"),
    ]
    assert cases[0].seconds == 0.6 and running == "tests/kernel/test_prog.py::test_hangs"
    assert parse_progress("") == ([], "")


def test_a_killed_run_shows_its_partial_results():
    cases, _ = parse_progress(PROGRESS)
    killed = KernelRun("5.10", "5.10.0-46-amd64", cases,
                          problem="timed out after 360 s (--timeout) while running x")
    header, rows = table_rows([killed])
    assert rows[0] == ["tests/kernel/test_maps.py", "1 failed, 1 error (partial)"]
    assert rows[1][1] == "1 failed, 1 error; timed out after 360 s (--timeout)"
    assert "while running x" in report([killed])
    assert not killed.ok


def test_progress_plugin_writes_as_the_run_goes(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "test_sample.py").write_text("def test_ok():\n    pass\n\n"
                                         "def test_no():\n    assert 1 == 2\n")
    progress = tmp_path / "progress.jsonl"
    env = dict(os.environ, PYTHONPATH=SUPPORT, MATRIX_PROGRESS=str(progress))
    env.pop("CI", None)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                    "matrix_timeout", "test_sample.py"], cwd=str(work), env=env,
                   capture_output=True, timeout=120)
    cases, running = parse_progress(progress.read_text())
    assert {(c.name, c.outcome) for c in cases} == {("test_ok", "passed"), ("test_no", "failed")}
    assert running == "" and "assert 1 == 2" in [c for c in cases if c.name == "test_no"][0].message


def test_package_dirs_of_pyproject():
    text = ('[project]\nname = "x"\n[tool.setuptools.package-dir]\n'
            '"pybpf.programs" = "programs"\n"" = "src"\n[tool.pytest.ini_options]\n'
            '"a.b" = "c"\n')
    assert package_dirs(text) == {"pybpf.programs": "programs"}
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        assert package_dirs(f.read()).get("pybpf.programs") == "programs"


def test_the_copy_imports_its_own_mapped_packages(tmp_path):
    copy = tmp_path / "copy"
    copy_repo(str(copy), ROOT)
    assert os.path.islink(str(copy / "pybpf" / "programs"))
    assert os.path.realpath(str(copy / "pybpf" / "programs")) == str(copy / "programs")
    assert not (copy / ".git").exists()


# --- retries ------------------------------------------------------------------------------

def attempts(*results):
    """A ``run_once`` that answers ``results`` in turn and records its limits."""
    limits = []

    def run_once(limit):
        limits.append(limit)
        return results[len(limits) - 1]
    return run_once, limits


def hung(*outcomes):
    return KernelRun("6.1", cases=[Case("tests/kernel/test_maps.py", "test_%d" % i, o)
                                      for i, o in enumerate(outcomes)],
                        problem="timed out after 300 s (--timeout) while running x",
                        timed_out=True)


def test_a_hung_guest_is_run_again_and_the_report_says_so():
    good = KernelRun("6.1", cases=[Case("tests/kernel/test_maps.py", "test_a", "passed")])
    run_once, limits = attempts(hung("passed"), good)
    result = run_with_retries("6.1", run_once, 300, None, retries=1)
    assert result is good and result.ok and limits == [300, 300]
    text = report([result])
    assert "Run again (--retries):\n  6.1: attempt 1 timed out after 300 s" in text
    assert "Failures" not in text


def test_failures_are_never_retried_and_retries_are_counted():
    failing = hung("passed", "failed")
    run_once, limits = attempts(failing)
    assert run_with_retries("6.1", run_once, 300, None, retries=3) is failing
    assert len(limits) == 1
    run_once, limits = attempts(hung(), hung(), hung())
    result = run_with_retries("6.1", run_once, 300, None, retries=2)
    assert len(limits) == 3 and len(result.earlier) == 2 and not result.ok


def test_no_attempt_starts_with_under_a_minute_of_budget_left():
    import time
    run_once, limits = attempts(hung())
    result = run_with_retries("6.1", run_once, 300, time.time() + 30, retries=1)
    assert limits == [] and "budget" in result.problem and not result.ok
