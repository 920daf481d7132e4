"""Without privileges, loading a program fails with one clear line that says
what to do (run as root / grant CAP_BPF), not with a traceback.

The child runs as nobody (uid 65534) with every capability dropped, through
util-linux ``setpriv``. It gets its own copy of the package (and of
``construct``) in a directory everyone can read, and the first Python interpreter nobody may execute (the
test's own may live under /root).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETPRIV = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           "--inh-caps=-all", "--bounding-set=-all"]

CHILD = textwrap.dedent("""
    import sys
    from pybpf import isa
    from pybpf.errors import BPFPermissionError
    from pybpf.consts import BPF_PROG_TYPE_SOCKET_FILTER
    from pybpf.kernel.prog import Program
    try:
        Program.load([isa.mov(isa.R0, 0), isa.exit_()],
                     prog_type=BPF_PROG_TYPE_SOCKET_FILTER, name="unprivileged")
    except BPFPermissionError as exc:
        print(exc)
        sys.exit(1)
    print("loaded without privileges")
""")


def run_unprivileged(argv, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(SETPRIV + argv, capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def world_readable_package():
    if shutil.which("setpriv") is None:
        pytest.fail("util-linux setpriv is needed to drop privileges")
    top = tempfile.mkdtemp(prefix="pybpf-unpriv-")
    try:
        os.chmod(top, 0o755)
        # the package and its pure-Python dependency: the interpreter nobody
        # may run (the system's) need not have construct installed
        import construct
        for source in (os.path.join(REPO, "pybpf"), os.path.dirname(construct.__file__)):
            shutil.copytree(source, os.path.join(top, os.path.basename(source)),
                            ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(top):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        yield top
    finally:
        shutil.rmtree(top)


@pytest.fixture(scope="module")
def interpreter():
    for candidate in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        if os.path.exists(candidate):
            if run_unprivileged([candidate, "-c", "import ctypes"]).returncode == 0:
                return candidate
    pytest.fail("no Python interpreter that uid 65534 may run (tried %s and /usr/bin/python3)"
                % sys.executable)


def test_unprivileged_load_fails_with_one_line_hint(world_readable_package, interpreter):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": world_readable_package,
           "LC_ALL": "C.UTF-8"}
    result = run_unprivileged([interpreter, "-B", "-c", CHILD], env=env)
    assert result.stderr == "", "the child printed a traceback or a warning:\n" + result.stderr
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    message = lines[0]
    assert message.startswith("BPF_PROG_LOAD (BPF_PROG_TYPE_SOCKET_FILTER 'unprivileged') failed (")
    # EPERM with kernel.unprivileged_bpf_disabled set, EACCES otherwise: the hint either way.
    assert "(EPERM)" in message or "(EACCES)" in message
    assert "run as root" in message and "CAP_BPF" in message
