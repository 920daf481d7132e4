"""Golden files: output compared with text stored beside the tests.

A difference fails the test with a unified diff to review; when the change
is intended, ``PYBPF_UPDATE_GOLDEN=1`` writes the new text instead, to be
committed with the change.
"""

import difflib
import os

import pytest

UPDATE = os.environ.get("PYBPF_UPDATE_GOLDEN") == "1"


def matches_golden(path: str, text: str) -> None:
    """``text`` equals the file ``path``; with PYBPF_UPDATE_GOLDEN=1 it becomes it."""
    shown = os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
    if UPDATE:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return
    if not os.path.exists(path):
        pytest.fail("no golden file %s; create it with PYBPF_UPDATE_GOLDEN=1" % path)
    with open(path) as f:
        expected = f.read()
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            shown, "now"))
        pytest.fail("output differs from %s (PYBPF_UPDATE_GOLDEN=1 regenerates it if the "
                    "change is intended):\n%s" % (shown, diff))
