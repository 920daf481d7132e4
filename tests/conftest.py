"""Test policy shared by every test.

Kernel tests (``tests/kernel``, ``tests/e2e`` and anything marked ``kernel``)
load real programs into the running kernel. They may be skipped only when we
are not root and not in CI; under ``CI=true`` a skipped test fails the run,
so a machine that cannot run them cannot pass CI by skipping.
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
        if item.get_closest_marker("kernel") and not IS_ROOT and not IN_CI:
            item.add_marker(pytest.mark.skip(reason="kernel test: needs root"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        # Under CI a skip is a failure: every test must really run.
        report.outcome = "failed"
        report.longrepr = "skipped under CI=true, which is not allowed: %s" % (report.longrepr,)
