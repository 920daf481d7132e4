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


def cut_until(fits_at, ret):
    """A failing load as a kernel before 6.4 answers it: ``ret`` whatever the
    buffer, no true size, and a log that fills any buffer smaller than
    ``fits_at`` (it was cut)."""
    sizes = []

    def attempt(size):
        sizes.append(size)
        return ret, "x" * (min(size, fits_at) - 1), 0
    return attempt, sizes


def test_before_6_4_a_failure_with_a_full_log_grows_the_buffer():
    attempt, sizes = cut_until(3 * LOG_SIZE_START, -errno.EACCES)
    ret, log, truncated = attempt_with_log(attempt)
    assert sizes == [LOG_SIZE_START, 2 * LOG_SIZE_START, 4 * LOG_SIZE_START]
    assert (ret, len(log), truncated) == (-errno.EACCES, 3 * LOG_SIZE_START - 1, False)


def test_a_success_is_never_retried():
    attempt, sizes = cut_until(LOG_SIZE_MAX, 7)    # an fd: retrying would leak it
    assert attempt_with_log(attempt)[0] == 7 and sizes == [LOG_SIZE_START]
