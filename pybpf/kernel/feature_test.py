"""A feature test: a tiny request the kernel grants or refuses, asked once.

The pieces every probe shares, below the modules that probe (cilium's
``internal/feature.go``): the three answers a probe can give
(:class:`Answer`), a table of lazily run, cached tests (:class:`FeatureTest`),
and the BTF blob and loader the probes that need BTF use. Each test lives
with its user: the map type test in :mod:`.map_spec` (whose errors ask it),
the program type test in :mod:`.prog`; :mod:`.features` runs them all for
the report and adds the rest. This module imports no other probe.

A kernel that does not know a feature answers EINVAL (or E2BIG,
EOPNOTSUPP, a verifier complaint); one that knows it but will not let this
process use it answers EPERM or EACCES before verifying anything: a missing
capability, an LSM, lockdown, or a sysctl such as
kernel.unprivileged_bpf_disabled. The two need different fixes (a newer
kernel, or other privileges or policy), so they are different answers.
"""

import ctypes
import errno as _errno
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Generic, Hashable, Optional, Tuple, TypeVar

from ..errors import errno_name, last_log_message
from . import sys as _sys
from .btf_writer import BTFBuilder
from .sys import FD

PRESENT = "present"
ABSENT = "absent"
REFUSED = "refused"
STATES = (PRESENT, ABSENT, REFUSED)

_POLICY_ERRNOS = (_errno.EPERM, _errno.EACCES)


@dataclass(frozen=True)
class Answer:
    """One probe's answer: ``state`` is one of :data:`STATES`; ``detail``
    says why not (errno and the kernel's words), or what a yes means when it
    needs saying."""

    state: str
    detail: str = ""

    def __post_init__(self):
        if self.state not in STATES:
            raise ValueError("a probe answer is one of %s, not %r" % (", ".join(STATES),
                                                                      self.state))

    @property
    def available(self) -> bool:
        """True only when the kernel has the feature and lets us use it."""
        return self.state == PRESENT

    @classmethod
    def from_errno(cls, err: int, log: str = "", context: str = "") -> "Answer":
        """The answer for a refusal: EPERM/EACCES without a verifier log is
        policy (:data:`REFUSED`), anything else means the kernel lacks the
        feature (:data:`ABSENT`). ``context`` prefixes the detail."""
        state = REFUSED if err in _POLICY_ERRNOS and not log.strip() else ABSENT
        detail = refusal(err, log)
        return cls(state, "%s: %s" % (context, detail) if context else detail)


YES = Answer(PRESENT)


def refusal(err: int, log: str = "") -> str:
    """"EINVAL", "EACCES: <the verifier's last complaint>", or "EINVAL after
    verification" when the verifier passed the program and the load still failed."""
    reason = last_log_message(log) if log else ""
    if reason:
        return "%s: %s" % (errno_name(err), reason)
    if log.strip():
        return "%s after verification" % errno_name(err)
    return errno_name(err)


Key = TypeVar("Key", bound=Hashable)


class FeatureTest(Generic[Key]):
    """``test(key)`` run on first use for each key, then cached for the
    process (thread-safe). ``answers`` is the cache: :meth:`forget` empties
    it, and tests put forced answers in it."""

    def __init__(self, test: Callable[[Key], Answer]):
        self._test = test
        self._lock = threading.Lock()
        self.answers: Dict[Key, Answer] = {}

    def __call__(self, key: Key) -> Answer:
        with self._lock:
            if key not in self.answers:
                self.answers[key] = self._test(key)
            return self.answers[key]

    def forget(self) -> None:
        """Drop every cached answer: the next call asks the kernel again."""
        with self._lock:
            self.answers.clear()


def minimal_btf() -> bytes:
    """A valid BTF blob with two types: [1] ``int`` (32-bit signed) and
    [2] ``long`` (64-bit signed)."""
    builder = BTFBuilder()
    builder.int("int", 4, True)
    builder.int("long", 8, True)
    return builder.encode()


#: The type ids of ``int`` and ``long`` in :func:`minimal_btf`.
BTF_INT, BTF_LONG = 1, 2


def load_btf(blob: bytes) -> Tuple[Optional[FD], Answer]:
    """(fd, yes) for BTF the kernel loads; (None, why not) otherwise."""
    buffer = ctypes.create_string_buffer(blob, len(blob))
    attr = _sys.BTFLoadAttr(btf=_sys.address(buffer), btf_size=len(blob))
    ret = _sys.bpf_errno(_sys.BPF_BTF_LOAD, attr)
    if ret < 0:
        return None, Answer.from_errno(-ret)
    return FD(ret), YES
