"""A per-test time limit and a progress log for the kernel matrix
(pytest-timeout is not a dependency of the project, and the guest only sees
the host's packages).

``MATRIX_PROGRESS`` (a file name): one JSON line per test started and per
phase reported, written as the run goes, so that a run killed by the
whole-VM timeout still says what passed and which test was running (pytest
writes its JUnit report only at the end).

Loaded with ``-p matrix_timeout``; ``MATRIX_TEST_TIMEOUT`` (seconds, 0 or
unset: no limit) bounds each phase (setup, call, teardown) of each test. When
the limit passes, SIGALRM raises :class:`MatrixTestTimeout` in the main thread
with the test's stack, so the test fails and the run goes on. A test stuck
where a signal cannot interrupt it is left to the whole-VM timeout of
``tools/kernel_matrix.py``; ``faulthandler`` then prints every thread's stack
to the console a little before, so the log says where it hung.
"""

import contextlib
import faulthandler
import json
import os
import signal
import sys
import time
from typing import Iterator

import pytest


class MatrixTestTimeout(Exception):
    pass


def _limit() -> float:
    try:
        return float(os.environ.get("MATRIX_TEST_TIMEOUT", "0") or 0)
    except ValueError:
        return 0.0


@contextlib.contextmanager
def _time_limit(what: str) -> Iterator[None]:
    """Raise MatrixTestTimeout in the main thread when ``what`` takes longer
    than MATRIX_TEST_TIMEOUT seconds (no limit when that is 0 or unset)."""
    seconds = _limit()
    if seconds > 0:
        def expire(signum, frame):
            raise MatrixTestTimeout("%s took longer than %.0f s (the kernel matrix's per-test "
                                    "limit, MATRIX_TEST_TIMEOUT)" % (what, seconds))
        signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        faulthandler.dump_traceback_later(seconds * 2 + 30, exit=False, file=sys.stderr)
    try:
        yield
    finally:
        if seconds > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
            faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _time_limit("setup of %s" % item.nodeid):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _time_limit(item.nodeid):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    with _time_limit("teardown of %s" % item.nodeid):
        yield


def _progress(record) -> None:
    path = os.environ.get("MATRIX_PROGRESS")
    if path:
        record["t"] = round(time.time(), 3)
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def pytest_runtest_logstart(nodeid, location):
    _progress({"start": nodeid})


def pytest_runtest_logreport(report):
    message = ""
    if report.outcome != "passed":
        message = getattr(report, "longreprtext", "") or str(report.longrepr or "")
        if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[-1])
        lines = [line for line in message.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("E ")]
        message = (errors[0][1:].strip() if errors else lines[-1] if lines else "")[:500]
    _progress({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
               "duration": round(report.duration, 3), "message": message})
