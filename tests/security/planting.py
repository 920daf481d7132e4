"""Acting as another user: the attacker of the security tests.

``shared_dir`` is a sticky, world-writable directory like ``/tmp``; ``as_user``
runs a function in a child process under another uid (``nobody``), so what
it plants (symlinks, files) really belongs to that user.
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Callable, Iterator

NOBODY = 65534


def as_user(action: Callable[[], None], uid: int = NOBODY) -> None:
    """Run ``action`` as ``uid`` (no groups) in a forked child; fail if it did."""
    pid = os.fork()
    if pid == 0:     # pragma: no cover - the child
        status = 1
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            action()
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the planting as uid %d failed" % uid


@contextmanager
def shared_dir() -> Iterator[str]:
    """A fresh directory with /tmp's mode (1777), reachable by every user."""
    path = tempfile.mkdtemp(prefix="pybpf-shared-", dir="/tmp")
    os.chmod(path, 0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def snapshot(path: str):
    """What must not change: a file's bytes, mode and owner."""
    st = os.stat(path)
    with open(path, "rb") as f:
        return f.read(), st.st_mode, st.st_uid
