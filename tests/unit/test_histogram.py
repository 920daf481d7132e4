"""Histogram text without a kernel: bcc's ``print_log2_hist`` layout and the
bucket bounds (bpftrace's own output is the oracle in
``tests/kernel/test_histograms.py``)."""

import doctest

from pybpf import histogram
from pybpf.histogram import LinearHistogram, Log2Histogram, bcc_log2_hist


def test_docstring_examples():
    assert doctest.testmod(histogram).failed == 0


def test_bcc_layout_for_narrow_values():
    # slots by bpf_log2l: 1 holds 0 and 1, 2 holds 2..3, 3 holds 4..7
    assert bcc_log2_hist([0, 2, 1, 0, 4], "usecs") == (
        "     usecs               : count     distribution\n"
        "         0 -> 1          : 2        |********************                    |\n"
        "         2 -> 3          : 1        |**********                              |\n"
        "         4 -> 7          : 0        |                                        |\n"
        "         8 -> 15         : 4        |****************************************|\n")


def test_bcc_layout_for_wide_values_and_leading_zeros():
    slots = [0] * 40
    slots[34], slots[39] = 1, 3
    text = bcc_log2_hist(slots, "ns", strip_leading_zero=True).splitlines()
    assert text[0] == "               ns                            : count     distribution"
    assert text[1] == " " * 10 + "8589934592 -> 17179869183          : 1        |******              |"
    assert text[-1] == " " * 8 + "274877906944 -> 549755813887         : 3        |********************|"
    assert len(text) == 1 + 6


def test_log2_buckets_as_bcc_slots():
    # negative, 0, 1, [2, 4), [4, 8)
    assert Log2Histogram([9, 1, 2, 3, 4]).bcc().splitlines()[1:] == [
        "         0 -> 1          : 3        |******************************          |",
        "         2 -> 3          : 3        |******************************          |",
        "         4 -> 7          : 4        |****************************************|"]


def test_linear_bounds_and_labels():
    h = LinearHistogram([1, 0, 2, 0, 5], 1024, 4096, 1024)
    assert h.items() == [((None, 1023), 1), ((1024, 2047), 0), ((2048, 3071), 2),
                         ((3072, 4095), 0), ((4096, None), 5)]
    assert [line[:16] for line in h.bpftrace().splitlines()] == [
        "(..., 1K)       ", "[1K, 2K)        ", "[2K, 3K)        ", "[3K, 4K)        ",
        "[4K, ...)       "]


def test_empty_histograms_print_nothing():
    assert Log2Histogram([0] * 66).bpftrace() == ""
    assert Log2Histogram([0] * 66).bcc() == ""
