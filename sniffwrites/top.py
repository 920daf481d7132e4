"""``sniffwrites top``: the busiest files, refreshed every interval.

Runs the monitor in ``--aggregate`` mode (the kernel counts; userspace only
reads the counts of open files each interval and gets one record per file
at close) and shows, per open file, what moved during the last interval and
in total, sorted by bytes. On a terminal the screen is redrawn in place
(plain ANSI: clear and home); otherwise one table per interval is printed,
so ``sniffwrites top | tee log`` works.
"""

import sys
import time
from typing import Dict, List, Tuple

from .escape import display
from .events import Aggregate
from .monitor import Monitor

CLEAR = "\x1b[H\x1b[2J"
Key = Tuple[int, int, bytes]


class TopMonitor(Monitor):
    def __init__(self, cfg, sink, limit: int = 20, **kwargs):
        super().__init__(cfg, sink, **kwargs)
        self.limit = limit
        self.totals: Dict[Key, Aggregate] = {}
        self.previous: Dict[Key, int] = {}
        self.closed: Dict[Key, Aggregate] = {}
        self.pipeline.on_event = self._collect
        stream = getattr(sink, "_stream", sys.stdout)
        self.tty = sink.path is None and hasattr(stream, "isatty") and stream.isatty()

    def _collect(self, agg) -> None:
        if not isinstance(agg, Aggregate):
            return
        key = (agg.pid, agg.fd, agg.path)
        if agg.closed:
            self.closed[key] = agg
        self.totals[key] = agg._replace(comm=agg.comm or self.totals.get(key, agg).comm)

    def _write(self, lines: List[str]) -> None:
        """Aggregate lines are not printed one by one: tick() draws the table."""

    def tick(self) -> None:
        super().tick()
        self.sink.write_lines([self.render()])
        self.sink.flush()
        for key in list(self.closed):
            self.totals.pop(key, None)
            self.previous.pop(key, None)
        self.closed.clear()

    def write_summary(self) -> None:
        pass

    def render(self) -> str:
        rows = []
        for key, agg in self.totals.items():
            moved = agg.read_bytes + agg.write_bytes
            rows.append((moved - self.previous.get(key, 0), moved, agg))
            self.previous[key] = moved
        rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
        lines = []
        if self.tty:
            lines.append(CLEAR.rstrip("\n"))
        lines.append("sniffwrites top  %s  %d open files  (bytes in the last %.3gs, total)"
                     % (time.strftime("%H:%M:%S"), len(rows), self.cfg.interval))
        lines.append("%7s %-16s %4s %12s %12s %8s %8s  %s" % (
            "PID", "COMM", "FD", "LAST", "TOTAL", "READS", "WRITES", "PATH"))
        for last, total, agg in rows[:self.limit]:
            lines.append("%7d %-16s %4d %12d %12d %8d %8d  %s%s" % (
                agg.pid, display(agg.comm)[:16], agg.fd, last, total, agg.reads, agg.writes,
                display(agg.path), "  (closed)" if agg.closed else ""))
        if not self.tty:
            lines.append("")
        return "\n".join(lines)
