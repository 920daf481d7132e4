"""The single-file deployment: ``tools/build_zipapp.py`` builds a ``.pyz``
that Debian's bare ``/usr/bin/python3`` runs in isolated mode (``-I``: no
user site, no PYTHONPATH), from a directory outside the repository, with an
empty environment. That python has neither construct nor click, so
everything the command imports must come from the archive.

Two archives are built: the default one (``dist/sniffwrites.pyz``, the
monitor) and one with the ``pybpf`` entry point.
"""

import json
import os
import subprocess
import sys
import time
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = os.path.join(REPO, "tools", "build_zipapp.py")
SYSTEM_PYTHON = "/usr/bin/python3"
BARE_ENV = {"PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def system_python():
    """Debian's python3, checked to lack our dependencies (else the test
    would prove nothing about the archive)."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("no %s to run the archive with" % SYSTEM_PYTHON)
    for module in ("construct", "click"):
        found = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import " + module], env=BARE_ENV,
                               capture_output=True)
        assert found.returncode != 0, ("%s can import %s: uninstall it there, or this test "
                                       "cannot show the archive is self-contained"
                                       % (SYSTEM_PYTHON, module))
    return SYSTEM_PYTHON


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("zipapp") / "pybpf.pyz")
    result = subprocess.run([sys.executable, BUILDER, "--entry", "pybpf.cli:main",
                             "--output", path], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote %s (" % path)
    return path


def run_archive(python, archive, *args):
    """``python3 -I archive ARGS`` from outside the repository, empty environment."""
    return subprocess.run([python, "-I", archive] + list(args), env=BARE_ENV,
                          cwd=os.path.dirname(archive), capture_output=True, text=True,
                          timeout=60)


def test_archive_holds_our_code_and_pure_python_dependencies(archive):
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        main = zipped.read("__main__.py").decode()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"__main__.py", "pybpf", "sniffwrites", "construct", "click", "licenses"}
    assert "pybpf/programs/opensnoop.py" in names and "pybpf/cli/__init__.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyc"))]
    assert "from pybpf.cli import main" in main and "sys.version_info <" in main
    with open(archive, "rb") as f:
        assert f.readline() == b"#!/usr/bin/env python3\n"


def test_version_and_help_with_a_bare_system_python(system_python, archive):
    version = run_archive(system_python, archive, "--version")
    assert (version.returncode, version.stdout, version.stderr) == (0, "pybpf, version 0.1.0\n",
                                                                     "")
    helped = run_archive(system_python, archive, "--help")
    assert helped.returncode == 0
    assert "Example:" in helped.stdout and "prog" in helped.stdout


def test_commands_run_from_the_archive(system_python, archive):
    listing = run_archive(system_python, archive, "prog", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    shown = run_archive(system_python, archive, "disasm", "pybpf.programs.count_syscalls")
    assert shown.returncode == 0, shown.stderr
    # source lines come out of the archive too
    assert "pybpf.pyz/pybpf/programs/count_syscalls.py:14  pid = u32(" in shown.stdout
    failed = run_archive(system_python, archive, "map", "dump", "2147483647")
    assert (failed.returncode, failed.stderr.count("\n")) == (1, 1)
    assert failed.stderr.startswith("pybpf: error: ")


def test_builder_names_a_missing_entry_module(tmp_path):
    result = subprocess.run([sys.executable, BUILDER, "--entry", "no_such.cli:main",
                             "--output", str(tmp_path / "x.pyz")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == ("build_zipapp: error: the entry module no_such.cli is not in the "
                             "archive (is it listed in pyproject.toml's packages?)\n")
    assert not (tmp_path / "x.pyz").exists()


@pytest.fixture(scope="module")
def monitor_archive(tmp_path_factory):
    """The default archive: the sniffwrites monitor."""
    path = str(tmp_path_factory.mktemp("zipapp") / "sniffwrites.pyz")
    result = subprocess.run([sys.executable, BUILDER, "--output", path], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return path


def test_monitor_archive_runs_a_monitor_session(system_python, monitor_archive, tmp_path):
    version = run_archive(system_python, monitor_archive, "--version")
    assert version.returncode == 0 and "0.1.0" in version.stdout, version.stderr
    helped = run_archive(system_python, monitor_archive, "monitor", "--help")
    assert helped.returncode == 0 and "--dir" in helped.stdout

    watched = tmp_path / "watched"
    watched.mkdir()
    ready, output = tmp_path / "ready", tmp_path / "events.jsonl"
    monitor = subprocess.Popen(
        [system_python, "-I", monitor_archive, "monitor", "-d", str(watched), "-f", "json",
         "--output", str(output), "--ready-file", str(ready), "--duration", "20"],
        env=BARE_ENV, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and monitor.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), monitor.communicate(timeout=30)
        target = watched / "from-the-archive.txt"
        target.write_bytes(b"twelve bytes")
        time.sleep(0.5)
    finally:
        monitor.send_signal(2)
        _, stderr = monitor.communicate(timeout=30)
    assert monitor.returncode == 0, stderr
    events = [json.loads(line) for line in output.read_text().splitlines()]
    writes = [e for e in events if e.get("op") == "write" and e.get("path") == str(target)]
    assert [(w["pid"], w["bytes"]) for w in writes] == [(os.getpid(), 12)]
