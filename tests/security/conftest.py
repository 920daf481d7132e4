"""Fixtures of the security tests: a /tmp-like directory another user can
plant in, and a file of root's that must come through untouched."""

import os

import pytest
from planting import shared_dir


@pytest.fixture
def shared():
    with shared_dir() as path:
        yield path


@pytest.fixture
def victim(tmp_path):
    """A file of root's that an attacker would like root to append to and chmod."""
    path = tmp_path / "victim"
    path.write_bytes(b"precious\n")
    os.chmod(path, 0o644)
    return str(path)
