"""Fixtures shared by the kernel tests."""

import pytest
from kernel_objects import assert_no_new_fds, assert_no_new_objects, open_fds, snapshot


@pytest.fixture
def no_leaks():
    """The test leaves no BPF object (in the kernel's own lists) and no fd behind."""
    before, fds = snapshot(), open_fds()
    yield
    assert_no_new_objects(before)
    assert_no_new_fds(fds)
