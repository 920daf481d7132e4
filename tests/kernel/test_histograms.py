"""Histograms kept by a DSL program print as bpftrace prints them: the same
values go to bpftrace (``hist()``/``lhist()`` in a ``BEGIN`` block) and to
a program run with BPF_PROG_TEST_RUN, and the text must match line for line."""

import re
import struct
import subprocess

import pytest

from pybpf.dsl import LinearHist, Log2Hist, collection_spec, raw_tracepoint, s64, u64
from pybpf.loader import Collection

sizes = Log2Hist()
linear = LinearHist(0, 100, 10)
kilo = LinearHist(1024, 8192, 1024)
mega = LinearHist(0, 4 << 20, 1 << 20)
unsigned = Log2Hist()

# Counts chosen so the bars need bpftrace's single-precision rounding. bpftrace
# 0.17 puts every value from 2**31 up in [2G, 4G), so these stay below; and
# its lhist() takes no negative minimum.
VALUES = ([-5, 0, 1, 1, 2, 3, 7, 99, 100, 1023, 1024, 1 << 20, (1 << 30) + 5, (1 << 31) - 1]
          + [5] * 7 + [300] * 3 + [50] * 13 + [-2048, -1, 4095, 4096, 3000, 2048] * 2
          + [3 << 20, (3 << 20) - 1, 4 << 20, 1 << 21] * 3)


@raw_tracepoint("sys_enter")
def feed(p, ctx):
    value = p.var(s64, s64(ctx.args[0]))
    sizes.increment(value)
    linear.increment(value)
    kilo.increment(value)
    mega.increment(value)
    unsigned.increment(u64(ctx.args[1]))


def bpftrace_maps(values):
    """What bpftrace prints for each map, by name."""
    body = " ".join("@sizes = hist(%d); @linear = lhist(%d, 0, 100, 10); "
                    "@kilo = lhist(%d, 1024, 8192, 1024); @mega = lhist(%d, 0, %d, %d); "
                    "@unsigned = hist(%d);" % (v, v, v, v, 4 << 20, 1 << 20, abs(v))
                    for v in values)
    run = subprocess.run(["bpftrace", "-e", "BEGIN { %s exit(); }" % body],
                         capture_output=True, text=True, timeout=120, check=True)
    return {name: text for name, text in re.findall(r"^@(\w+): \n(.*?)\n\n", run.stdout,
                                                    re.S | re.M)}


def test_bpftrace_is_the_version_compared_with():
    version = subprocess.run(["bpftrace", "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert re.match(r"bpftrace v0\.(1[7-9]|2\d)", version), version


def test_hist_and_lhist_print_as_bpftrace_does(no_leaks):
    expected = bpftrace_maps(VALUES)
    with Collection(collection_spec([feed])) as loaded:
        for value in VALUES:
            loaded.programs.feed.test_run(ctx=struct.pack("<qq", value, abs(value)))
        ours = {"sizes": sizes.histogram(loaded.maps.sizes),
                "linear": linear.histogram(loaded.maps.linear),
                "kilo": kilo.histogram(loaded.maps.kilo),
                "mega": mega.histogram(loaded.maps.mega),
                "unsigned": unsigned.histogram(loaded.maps.unsigned)}
    assert set(expected) == set(ours)
    for name, histogram in ours.items():
        assert histogram.bpftrace() == expected[name] + "\n", name
    assert sum(count for _bounds, count in ours["sizes"].items()) == len(VALUES)


@pytest.mark.parametrize("value", [0, 1, 2, 3, 4, 255, 256, (1 << 32) - 1, 1 << 32,
                                   (1 << 64) - 1])
def test_log2_and_log2l_are_bccs(value):
    @raw_tracepoint("sys_enter")
    def logs(p, ctx):
        p.return_(p.log2l(ctx.args[0]) * 256 + p.log2(u64(ctx.args[0]) & 0xFFFFFFFF))
    with Collection(collection_spec([logs])) as loaded:
        ret = loaded.programs.logs.test_run(ctx=struct.pack("<Q", value)).retval
    low = value & 0xFFFFFFFF
    assert divmod(ret, 256) == (value.bit_length() or 1, max(low.bit_length() - 1, 0))
