"""Test policy shared by every test.

Kernel tests (``tests/kernel``, ``tests/e2e`` and anything marked ``kernel``)
load real programs into the running kernel. They may be skipped only when we
are not root and not in CI; under ``CI=true`` a skipped test fails the run,
so a machine that cannot run them cannot pass CI by skipping. The same
holds for ``tests/security`` (marked ``root``), which plants files as
another user and checks what root does with them.
"""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if "/tests/kernel/" in path or "/tests/e2e/" in path:
            item.add_marker(pytest.mark.kernel)
        if "/tests/security/" in path:
            item.add_marker(pytest.mark.root)
        if item.get_closest_marker("kernel") and not IS_ROOT and not IN_CI:
            item.add_marker(pytest.mark.skip(reason="kernel test: needs root"))
        if item.get_closest_marker("root") and not IS_ROOT and not IN_CI:
            item.add_marker(pytest.mark.skip(reason="acts as root and as another user"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        # Under CI a skip is a failure: every test must really run.
        report.outcome = "failed"
        report.longrepr = "skipped under CI=true, which is not allowed: %s" % (report.longrepr,)


@pytest.fixture(params=["host", "present", "absent", "refused"])
def probe_says(request, monkeypatch):
    """Run a test once with this host's own probe answers and once for each
    answer a feature probe can give (present, absent, refused), forced.

    Hosts differ: one kernel build says a map type is absent where another
    refuses it (EPERM), so code that acts on a probe must be right for every
    answer. ``probe_says(*names)`` forces the answer for those features and
    returns the (forced) ``Features``; ``probe_says.state`` is the answer
    forced (``"host"``: none), and ``probe_says.host(name)`` the host's own.
    """
    from pybpf.consts import MAP_TYPES, PROG_TYPES
    from pybpf.kernel import features, map_spec, prog
    host = features.probe()

    def force(*names):
        if request.param == "host":
            return host
        answer = features.Answer(request.param, "forced by the test")
        forced = host.assuming({name: answer for name in names})
        monkeypatch.setattr(features, "_features", forced)
        for name in names:      # the tests kept with their users answer the same
            if name.startswith("BPF_PROG_TYPE_"):
                monkeypatch.setitem(prog.prog_type_answer.answers, PROG_TYPES.value(name), answer)
            elif name.startswith("BPF_MAP_TYPE_"):
                monkeypatch.setitem(map_spec.map_type_answer.answers, MAP_TYPES.value(name),
                                    answer)
        return forced

    force.state = request.param
    force.host = host.answer
    return force


@pytest.fixture
def private_dir():
    """A fresh directory that a cache may live in: it and every ancestor
    are root's (or ours) and closed to others, unlike anything under /tmp
    (world-writable), which caches refuse."""
    import shutil
    import tempfile
    base = "/run" if IS_ROOT else (os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~"))
    path = tempfile.mkdtemp(prefix="pybpf-test-", dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
