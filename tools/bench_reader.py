"""Reader throughput: records/s decoded from each transport, one consumer.

Called by ``tools/bench.py reader``. A tracepoint program on
``sys_enter_getppid`` (the one the kernel tests use, ``tests/kernel/emitters.py``)
emits ``record_size``-byte records; this process, pinned to one CPU, fills
the ring (90% of it, so nothing is lost), then drains and decodes it with
``reader.read()``. Only the draining is timed: walking the ring headers,
decoding every record into a Python object through the struct decoder, and
giving the space back. Producing is not timed, because a Python producer
calling getppid() is slower than the reader and would be what we measured.

"raw" rows hand out memoryviews instead (``read_raw``) and so show the ring
walk alone; the difference is the decoding. The ring size matters: a batch
of 4 MiB no longer fits the caches and its ~30,000 new records make the
garbage collector work, so a reader that keeps up (small batches) decodes
faster than one that drains a full big ring.
"""

import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests", "kernel")]

from emitters import PERF, RINGBUF, Emitter, pinned  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def _record_bytes(transport: str, record_size: int) -> int:
    header = 12 if transport == PERF else 8       # perf_event_header + u32 size / ringbuf hdr
    return (header + record_size + 7) // 8 * 8


def _drain_rate(transport: str, records: int, record_size: int, ring_bytes: int,
                raw: bool) -> float:
    """Records/s over the timed drains of enough fill-and-drain rounds for
    ``records``; ``ring_bytes`` per CPU for perf, the one ring for ringbuf."""
    per_round = int(ring_bytes / _record_bytes(transport, record_size) * 0.9)
    options = {"pages": ring_bytes // PAGE} if transport == PERF else {}
    with Emitter(transport, record_size, ring_size=ring_bytes) as emitter, \
            emitter.reader(**options) as reader, pinned(0):
        if raw:
            def drain() -> int:
                return reader.read_raw(len, timeout=0)
        else:
            def drain() -> int:
                return len(reader.read(timeout=0))
        # warm-up round, not timed: the first touch of each ring page faults
        emitter.trigger(per_round)
        while reader.read_raw(len, timeout=0):
            pass
        done, elapsed = 0, 0.0
        while done < records:
            want = min(per_round, records - done)
            emitter.trigger(want)
            got = 0
            start = time.perf_counter()
            while got < want:
                got += drain()
            elapsed += time.perf_counter() - start
            done += got
        if reader.lost():
            raise RuntimeError("%s lost %d records: the benchmark ring is too small"
                               % (transport, reader.lost()))
        return done / elapsed


def _measure(fn: Callable[[], float], repeats: int) -> Dict[str, float]:
    rates: List[float] = [fn() for _ in range(repeats)]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "unit": "records/s"}


def run(records: int = 200_000, record_size: int = 128, repeats: int = 3,
        ring_sizes: Sequence[int] = (256 << 10, 4 << 20)) -> Dict[str, Dict[str, float]]:
    """Records/s for each transport and ring size, decoded, and as raw views
    for the first ring size, as ``{name: {median, min, max, unit}}`` (the
    shape ``tools/bench.py`` tabulates)."""
    results = {}
    for transport in (RINGBUF, PERF):
        for ring_bytes in ring_sizes:
            for raw in (False, True) if ring_bytes == ring_sizes[0] else (False,):
                name = "%s, %d-byte records, %d KiB ring%s" % (
                    transport, record_size, ring_bytes >> 10, ", raw views" if raw else "")
                results[name] = _measure(lambda: _drain_rate(
                    transport, records, record_size, ring_bytes, raw), repeats)
    return results


if __name__ == "__main__":
    for what, figures in run().items():
        print("%-50s %6.2f M records/s (%.2f - %.2f)" % (
            what, figures["median"] / 1e6, figures["min"] / 1e6, figures["max"] / 1e6))
