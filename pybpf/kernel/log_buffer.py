"""Growing a kernel log buffer until the log fits: the verifier's log of
``BPF_PROG_LOAD`` and the BTF log of ``BPF_BTF_LOAD`` work alike. The
caller makes the call; this module only decides the sizes.

A log that does not fit makes the call fail with ENOSPC, whatever its real
outcome; Linux 6.4+ also says how big the log is (``log_true_size``,
``btf_log_true_size``) and keeps its *end*, where the complaint is.
"""

import errno as _errno
from typing import Callable, Tuple

# Start at LOG_SIZE_START, double (or jump to the size the kernel asked for)
# up to LOG_SIZE_MAX: UINT_MAX >> 8, the most kernels before 5.2 accept
# (later ones take UINT_MAX >> 2).
LOG_SIZE_START = 64 * 1024
LOG_SIZE_MAX = (1 << 24) - 1

Attempt = Callable[[int], Tuple[int, str, int]]
"""One call with a log buffer of the given size: (result or -errno, log
text, the size the kernel says the whole log needs, 0 if it does not say)."""


def attempt_with_log(attempt: Attempt) -> Tuple[int, str, bool]:
    """Call ``attempt`` with bigger buffers until the log fits or reaches
    LOG_SIZE_MAX. Returns (result or -errno, log, truncated); when
    truncated, the -errno is the last call's: ENOSPC, or (before Linux 6.4)
    a failed BTF load's own errno."""
    size = LOG_SIZE_START
    while True:
        ret, log, true_size = attempt(size)
        # Before Linux 6.4 the kernel does not say how big the log is, keeps
        # its start, and a failed BTF load returns its own errno (EINVAL)
        # even when the log was cut: a failure whose log filled the buffer
        # is retried with a bigger one too. (A success is never retried: its
        # fd would leak.)
        full = (ret < 0 and not true_size
                and len(log.encode("utf-8", "replace")) >= size - 1)
        if ret != -_errno.ENOSPC and not full:
            return ret, log, False
        if size >= LOG_SIZE_MAX:
            return ret, log, True
        size = min(LOG_SIZE_MAX, max(size * 2, true_size))
