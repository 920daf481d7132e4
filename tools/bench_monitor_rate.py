"""The highest per-event rate sniffwrites sustains: a writer process does
1-byte writes into a watched file at a set rate for a few seconds, under a
fresh ``sniffwrites -f json --output FILE`` each step, and the search
doubles the rate while the monitor keeps up, then bisects.

Part of ``tools/bench_monitor.py`` (its docstring says what "keeps up" and
"zero loss" mean); this module only runs the steps and the search.
"""

import json
import math
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

from bench_monitor_process import SNIFF, Monitor

#: The writer of one step (``python -c WRITER PATH RATE SECONDS``): it prints
#: how many writes it did, in how long, and when it finished.
WRITER = r"""
import json, os, sys, time
path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
write, now, sleep, data = os.write, time.monotonic, time.sleep, b"x"
total = int(rate * seconds)
done = 0
start = now()
while done < total:
    due = min(total, int(rate * (now() - start)) + 1)
    if done >= due:
        sleep(0.0002)
        continue
    for _ in range(due - done):
        write(fd, data)
    done = due
end = now()
os.close(fd)
json.dump({"writes": done, "seconds": end - start, "end": end}, sys.stdout)
"""


def _count_writes_until(path: str, want: int, deadline: float) -> Tuple[int, float]:
    """Poll the monitor's output until it reports ``want`` writes (or the
    deadline); return the count seen and when it got there."""
    seen, offset, rest = 0, 0, b""
    needle = b'"op": "write"'
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            data = b""
        if data:
            offset += len(data)
            data = rest + data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            seen += data[:cut].count(needle)
        now = time.monotonic()
        if seen >= want or now > deadline:
            return seen, now
        time.sleep(0.01)


def rate_step(directory: str, workdir: str, rate: float, seconds: float) -> Dict[str, object]:
    """One step: a fresh per-event monitor, the writer at ``rate`` writes/s."""
    target = os.path.join(directory, "rate.dat")
    monitor = Monitor(SNIFF, directory, workdir)
    try:
        writer = subprocess.run([sys.executable, "-c", WRITER, target, str(rate), str(seconds)],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=seconds * 10 + 30)
        if writer.returncode:
            raise RuntimeError("rate writer exited %d: %s" % (writer.returncode, writer.stderr))
        wrote = json.loads(writer.stdout)
        slack = min(1000, wrote["writes"] // 10)   # the last, unflushed 64 KiB of output
        allowed = 0.1 * seconds + 0.1
        seen, when = _count_writes_until(monitor.output, wrote["writes"] - slack,
                                         wrote["end"] + allowed + 2.0)
        lag = when - wrote["end"] if seen >= wrote["writes"] - slack else math.inf
        report = monitor.stop()
    finally:
        monitor.cleanup()
    received = report["ops"]["write"]
    achieved = wrote["writes"] / wrote["seconds"]
    kept_up = lag <= allowed and report["lost"] <= wrote["writes"] * 1e-4
    ok = kept_up and received == wrote["writes"] and report["lost"] == 0
    return {"target": rate, "achieved": achieved, "writes": wrote["writes"],
            "received": received, "lost": report["lost"], "lag_s": lag, "kept_up": kept_up,
            "ok": ok}


def max_zero_loss_rate(directory: str, workdir: str, quick: bool,
                       log: Callable[[str], None]) -> Dict[str, object]:
    """Search the per-event rate sniffwrites keeps up with. A step "keeps
    up" when the output caught up in time and at most 0.01% was lost; it is
    "zero loss" when, besides, every write was reported. The search follows
    "keeps up" (doubling, then bisecting), because a few records are
    sometimes lost far below capacity (see ``sporadic`` in the result);
    the highest zero-loss step is then one of the steps it ran, and the
    highest rate kept up is retried (budget permitting) when it lost any."""
    seconds = 0.4 if quick else 2.0
    budget = 6.0 if quick else 50.0
    rate = 25_000.0 if quick else 50_000.0
    began = time.monotonic()
    steps: List[dict] = []
    best: Optional[dict] = None        # highest step kept up
    worst: Optional[dict] = None       # lowest step not kept up
    writer_limited = False

    def step(r: float) -> dict:
        s = rate_step(directory, workdir, r, seconds)
        steps.append(s)
        log("  rate step: target %.0f/s achieved %.0f/s received %d/%d lost %d lag %.2f s -> %s"
            % (s["target"], s["achieved"], s["received"], s["writes"], s["lost"], s["lag_s"],
               "zero loss" if s["ok"] else "kept up" if s["kept_up"] else "FAIL"))
        return s

    def left() -> float:
        return budget - (time.monotonic() - began)

    # ramp: double while it keeps up and the writer reaches the target
    while left() > 0:
        s = step(rate)
        if s["kept_up"]:
            best = s if best is None or s["achieved"] > best["achieved"] else best
            if s["achieved"] < 0.9 * s["target"]:
                writer_limited = True
                break
            rate *= 2
        else:
            worst = s
            if best is not None:
                break
            rate /= 2
            if rate < 1000:
                break
        if quick and len(steps) >= 2 and best is not None:
            break
    # bisect between the best step kept up and the first one that was not
    while (best is not None and worst is not None and not writer_limited
           and worst["target"] / best["target"] > 1.15 and left() > 0):
        s = step(math.sqrt(best["target"] * worst["target"]))
        if s["kept_up"]:
            best = s if s["achieved"] > best["achieved"] else best
        else:
            worst = s
    # the highest rate kept up lost a few records: try it again
    for _ in range(2):
        if quick or best is None or any(x["ok"] and x["target"] >= best["target"]
                                        for x in steps) or left() <= 0:
            break
        step(best["target"])
    zero = [x for x in steps if x["ok"]]
    sporadic = [x for x in steps if x["kept_up"] and x["lost"]]
    return {"best": best, "worst": worst, "writer_limited": writer_limited, "steps": steps,
            "zero": max(zero, key=lambda x: x["achieved"]) if zero else None,
            "sporadic": sporadic, "seconds_per_step": seconds, "allowed_lag_s": 0.1 * seconds + 0.1,
            "elapsed_s": time.monotonic() - began}
