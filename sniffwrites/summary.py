"""The summary at exit, the same for ``monitor`` and ``report``.

Events by operation (from the pipeline), the loss keys and the exact
account of records by kind (from the :class:`~sniffwrites.losses.LossAccount`,
live or as recorded): JSON puts it in the stream as ``{"type": "summary"}``
with every key; text and table print one line on stderr.
"""

from typing import Any, Callable, Dict, List

from .events import OPERATIONS
from .losses import balance_text


def summary_counts(pipeline: Any, losses: Any) -> Dict[str, int]:
    """Every key of the summary."""
    ops = pipeline.ops
    counts = {"events": sum(v for k, v in ops.items() if k != "aggregate")}
    order = list(OPERATIONS) + sorted(set(ops) - set(OPERATIONS))
    for op in order:
        if ops.get(op):
            counts[op if op == "aggregate" else "op_" + op] = ops[op]
    counts.update(losses.totals())
    counts["unresolved_files"] = pipeline.table.unresolved
    counts.update(losses.balance(pipeline.received))
    return counts


def write_summary(counts: Dict[str, int], formatter: Any, write: Callable[[List[str]], None],
                  log: Callable[[str], None]) -> None:
    """JSON: a summary record through ``write``; text and table: one line to ``log``."""
    if formatter.fmt == "json":
        write([formatter.summary(counts)])
        return
    ops = ", ".join("%s %d" % (key[3:], n) for key, n in counts.items()
                    if key.startswith("op_"))
    parts = ["%d events%s" % (counts["events"], " (%s)" % ops if ops else "")]
    if "aggregate" in counts:
        parts.append("%d aggregate records" % counts["aggregate"])
    parts.append("lost records %d, map full %d" % (counts["lost_records"], counts["map_full"]))
    parts += ["%s %d" % (key.replace("_", " "), n) for key, n in counts.items()
              if n and key in ("walk_failed", "sweep_incomplete", "aggregate_untracked",
                               "unresolved_files")]
    parts.append(balance_text(counts))
    log("; ".join(parts))
