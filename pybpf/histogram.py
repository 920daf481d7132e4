"""Histograms in userspace: buckets, and the text bpftrace and bcc print for them.

A histogram is a list of bucket counts as a program kept them (the DSL's
``Log2Hist``/``LinearHist`` maps, :mod:`pybpf.dsl.histograms`), in
bpftrace's layout so that the text is bpftrace's, line for line:

* power-of-two (``hist()``): bucket 0 counts negative values, 1 the value 0,
  2 the value 1, and bucket ``k >= 3`` the values in ``[2**(k-2), 2**(k-1))``;
* linear (``lhist(v, min, max, step)``): bucket 0 counts values below
  ``min``, bucket ``k`` the values in ``[min + (k-1)*step, min + k*step)``, the
  last one values from ``max`` up.

>>> h = Log2Histogram([0, 1, 0, 0, 2])
>>> print(h.bpftrace(), end="")
[0]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
[1]                    0 |                                                    |
[2, 4)                 0 |                                                    |
[4, 8)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
>>> h.items()
[((None, -1), 0), ((0, 0), 1), ((1, 1), 0), ((2, 3), 0), ((4, 7), 2)]

The text mirrors bpftrace's ``TextOutput::hist_to_str``/``lhist_to_str``
(``src/output.cpp``; bar widths computed in single precision as it does) and
bcc's ``table.py`` ``_print_log2_hist``.
"""

import struct
from typing import Callable, List, Optional, Sequence, Tuple

#: bpftrace's bar column: 52 characters of ``@``.
BPFTRACE_BAR = 52
#: bcc's ``stars_max``: 40 characters of ``*`` (20 when the values are wide).
BCC_STARS = 40
#: A power-of-two histogram of 64-bit values needs this many buckets
#: (negative, 0, 1 and one per power from [2, 4) to [2**63, 2**64)).
LOG2_BUCKETS = 66

Bucket = Tuple[Tuple[Optional[int], Optional[int]], int]   # ((low, high), count); None: open


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _bpftrace_line(label: str, count: int, most: int) -> str:
    """One bpftrace line; ``int bar = count / (float)most * 52``, in floats."""
    bar = int(_f32(_f32(_f32(count) / _f32(most)) * BPFTRACE_BAR))
    return "%-16s%8d |%-*s|\n" % (label, count, BPFTRACE_BAR, "@" * bar)


def _bpftrace_text(counts: Sequence[int], label: Callable[[int], str]) -> str:
    """A line per bucket from the first with a count to the last (bpftrace's
    ``hist_prepare``), each bucket ``i`` named ``label(i)``."""
    used = [i for i, count in enumerate(counts) if count]
    if not used:
        return ""
    most = max(counts)
    return "".join(_bpftrace_line(label(i), counts[i], most)
                   for i in range(used[0], used[-1] + 1))


class Log2Histogram:
    """Power-of-two buckets, as bpftrace's ``hist()`` keeps them."""

    def __init__(self, counts: Sequence[int]):
        self.counts: List[int] = list(counts)

    def items(self) -> List[Bucket]:
        """``((low, high), count)`` per bucket, bounds inclusive (``None``
        below: the negative values)."""
        result: List[Bucket] = []
        for i, count in enumerate(self.counts):
            if i == 0:
                bounds: Tuple[Optional[int], Optional[int]] = (None, -1)
            elif i <= 2:
                bounds = (i - 1, i - 1)
            else:
                bounds = (1 << (i - 2), (1 << (i - 1)) - 1)
            result.append((bounds, count))
        return result

    def bpftrace(self) -> str:
        """The lines bpftrace prints for ``print(@h)`` of a ``hist()``."""
        return _bpftrace_text(self.counts, self._label)

    @staticmethod
    def _label(i: int) -> str:
        if i == 0:
            return "(..., 0)"
        if i <= 2:
            return "[%d]" % (i - 1)
        return "[%s, %s)" % (_power_label(i - 2), _power_label(i - 1))

    def bcc(self, val_type: str = "value", strip_leading_zero: bool = False) -> str:
        """What bcc's ``table.print_log2_hist(val_type)`` prints. bcc's slots
        (``bpf_log2l``) put 0 and 1 together and have no negative values."""
        slots = [0, self.counts[1] + self.counts[2]] + self.counts[3:] \
            if len(self.counts) > 2 else [0] + self.counts[1:2]
        return bcc_log2_hist(slots, val_type, strip_leading_zero)


def bcc_log2_hist(slots: Sequence[int], val_type: str = "value",
                  strip_leading_zero: bool = False) -> str:
    """bcc's ``_print_log2_hist`` for ``slots`` indexed by ``bpf_log2l(v)``."""
    idx_max = max((i for i, value in enumerate(slots) if value > 0), default=-1)
    val_max = max(slots, default=0)
    if idx_max <= 32:
        header, body, stars = "     %-19s : count     distribution", "%10d -> %-10d : %-8d |%-*s|", \
            BCC_STARS
    else:
        header, body, stars = ("               %-29s : count     distribution",
                               "%20d -> %-20d : %-8d |%-*s|", BCC_STARS // 2)
    lines = [header % val_type] if idx_max > 0 else []
    for i in range(1, idx_max + 1):
        low, high = (1 << i) >> 1, (1 << i) - 1
        if low == high:
            low -= 1
        value = slots[i]
        if strip_leading_zero and not value:
            continue
        strip_leading_zero = False
        lines.append(body % (low, high, value, stars, _stars(value, val_max, stars)))
    return "".join(line + "\n" for line in lines)


def _stars(value: int, most: int, width: int) -> str:
    """bcc's ``_stars``: ``width * value / most`` stars, at most ``width``."""
    count = 0
    while not (count > width * value / most - 1 or count > width - 1):
        count += 1
    return "*" * count


class LinearHistogram:
    """Buckets of ``step`` from ``low`` to ``high``, as bpftrace's ``lhist()``
    keeps them (and one on either side for the values outside)."""

    def __init__(self, counts: Sequence[int], low: int, high: int, step: int):
        self.counts: List[int] = list(counts)
        self.low, self.high, self.step = low, high, step
        self.buckets = (high - low) // step

    def items(self) -> List[Bucket]:
        """``((low, high), count)`` per bucket, bounds inclusive (``None``: open)."""
        result: List[Bucket] = []
        for i, count in enumerate(self.counts):
            if i == 0:
                bounds: Tuple[Optional[int], Optional[int]] = (None, self.low - 1)
            elif i == self.buckets + 1:
                bounds = (self.high, None)
            else:
                bounds = (self.low + (i - 1) * self.step, self.low + i * self.step - 1)
            result.append((bounds, count))
        return result

    def bpftrace(self) -> str:
        """The lines bpftrace prints for ``print(@h)`` of an ``lhist()``."""
        return _bpftrace_text(self.counts, self._label)

    def _label(self, i: int) -> str:
        if i == 0:
            return "(..., %s)" % _number_label(self.low)
        if i == self.buckets + 1:
            return "[%s, ...)" % _number_label(self.high)
        return "[%s, %s)" % (_number_label(self.low + (i - 1) * self.step),
                             _number_label(self.low + i * self.step))


def _power_label(power: int) -> str:
    """bpftrace's ``hist_index_label``: ``2**power`` with K, M, G, T for 2**10 steps."""
    for suffix, base in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if power >= base:
            return "%d%s" % (1 << (power - base), suffix)
    return "%d" % (1 << power)


def _number_label(number: int) -> str:
    """bpftrace's ``lhist_index_label``: exact multiples of 2**20 and 2**10 as M and K."""
    for suffix, unit in (("M", 1 << 20), ("K", 1 << 10)):
        if number and number % unit == 0:
            return "%d%s" % (number // unit, suffix)
    return "%d" % number
