"""How kernel log buffers grow: double, or jump to the size the kernel asks
for, and stop at LOG_SIZE_MAX with the log marked truncated."""

import errno

from pybpf.kernel.log_buffer import LOG_SIZE_MAX, LOG_SIZE_START, attempt_with_log


def recorder(answers):
    """An attempt that answers from ``answers`` ((ret, true_size) per call)
    and records the buffer sizes it was given."""
    sizes = []

    def attempt(size):
        sizes.append(size)
        ret, true_size = answers[min(len(sizes), len(answers)) - 1]
        return ret, "log of %d" % size, true_size
    return attempt, sizes


def test_first_answer_that_is_not_enospc_is_returned():
    attempt, sizes = recorder([(-errno.EINVAL, 0)])
    assert attempt_with_log(attempt) == (-errno.EINVAL, "log of %d" % LOG_SIZE_START, False)
    assert sizes == [LOG_SIZE_START]


def test_doubles_or_jumps_to_the_true_size():
    attempt, sizes = recorder([(-errno.ENOSPC, 0), (-errno.ENOSPC, 1 << 20), (3, 0)])
    assert attempt_with_log(attempt) == (3, "log of %d" % (1 << 20), False)
    assert sizes == [LOG_SIZE_START, 2 * LOG_SIZE_START, 1 << 20]


def test_stops_at_the_maximum_and_says_truncated():
    attempt, sizes = recorder([(-errno.ENOSPC, 1 << 30)])
    ret, log, truncated = attempt_with_log(attempt)
    assert (ret, truncated) == (-errno.ENOSPC, True)
    assert sizes == [LOG_SIZE_START, LOG_SIZE_MAX]
