"""Histograms kept by programs: ``p.log2``/``p.log2l`` and the ``Log2Hist`` and
``LinearHist`` maps.

.. code-block:: python

    sizes = Log2Hist()                              # bpftrace: @sizes = hist(ret)

    @raw_tracepoint("sys_exit")
    def read_sizes(p, ctx):
        sizes.increment(s64(ctx.args[1]))

    print(sizes.histogram(coll.maps.sizes).bpftrace(), end="")

A histogram is an array map of ``u64`` counters, one per bucket, in
bpftrace's layout (see :mod:`pybpf.histogram`, which prints them as
bpftrace's ``hist()``/``lhist()`` and bcc's ``print_log2_hist`` do).
Counters are added to atomically: CPUs share them.
"""

from typing import Any, Optional

from ..histogram import LOG2_BUCKETS, LinearHistogram, Log2Histogram
from .codegen import current
from .maps import ArrayMap
from .types import IntType, u32, u64
from .values import Value, as_value, build_error, convert


class Log2Hist(ArrayMap):
    """A power-of-two histogram (bpftrace's ``hist()``): ``hist.increment(v)``
    counts ``v`` in its bucket; negative values have one of their own."""

    def __init__(self, name: Optional[str] = None):
        super().__init__(value=u64, max_entries=LOG2_BUCKETS, name=name)

    def increment(self, value: Any, count: Any = 1) -> None:
        """Count ``value`` (``count`` times) in its bucket."""
        p = current()
        v = _integer(value, "Log2Hist.increment()")
        slot = p.var(u32, 1)                            # the value 0
        if v.type.signed:
            with p.if_(v > 0):
                slot.set(p.log2l(v) + 1)
            with p.elif_(v < 0):
                slot.set(0)
        else:
            with p.if_(v != 0):
                slot.set(p.log2l(v) + 1)
        _add(p, self, slot, count)

    def histogram(self, live: Any) -> Log2Histogram:
        """The loaded map's counts (``coll.maps.<name>``), to print or walk."""
        return Log2Histogram(_counts(live, self.max_entries))


class LinearHist(ArrayMap):
    """A linear histogram (bpftrace's ``lhist(v, low, high, step)``): buckets
    of ``step`` from ``low`` to ``high``, and one on either side."""

    def __init__(self, low: int, high: int, step: int, name: Optional[str] = None):
        if step <= 0 or high <= low:
            raise ValueError("LinearHist needs low < high and step > 0, not %d, %d, %d"
                             % (low, high, step))
        self.low, self.high, self.step = low, high, step
        self.buckets = (high - low) // step
        super().__init__(value=u64, max_entries=self.buckets + 2, name=name)

    def increment(self, value: Any, count: Any = 1) -> None:
        """Count ``value`` (``count`` times) in its bucket."""
        p = current()
        v = _integer(value, "LinearHist.increment()")
        slot = p.var(u32, 0)                            # below low
        with p.if_(v >= self.high):
            slot.set(self.buckets + 1)
        if v.type.signed or self.low > 0:
            with p.elif_(v >= self.low):
                slot.set(u32(convert(v - self.low, u64) / self.step) + 1)
        else:
            with p.else_():
                slot.set(u32(convert(v - self.low, u64) / self.step) + 1)
        _add(p, self, slot, count)

    def histogram(self, live: Any) -> LinearHistogram:
        """The loaded map's counts (``coll.maps.<name>``), to print or walk."""
        return LinearHistogram(_counts(live, self.max_entries), self.low, self.high,
                               self.step)


def _integer(value: Any, what: str) -> Value:
    value = as_value(value)
    if not isinstance(value.type, IntType):
        raise build_error("%s counts integers, not %s" % (what, getattr(value.type, "name",
                                                                          value.type)))
    return value


def _add(p: Any, hist: ArrayMap, slot: Any, count: Any) -> None:
    cell = hist.lookup(slot)
    with p.if_(cell):
        p.atomic_add(cell, count)


def _counts(live: Any, size: int) -> list:
    counts = [0] * size
    for index, count in live.items():
        counts[index] = count
    return counts
