"""The matrix's report: one table of results (a row per test file, a column
per kernel), one of feature-probe answers, and the failures and retries, as
plain text for the console or as Markdown for CI.

Rendering only: it reads ``KernelRun`` objects (``results.py``) and never
runs or parses anything, so its output can be tested on made-up runs.
"""

from typing import Dict, List, Sequence, Tuple

from kernel_matrix.results import ERROR, FAILED, PASSED, SKIPPED, KernelRun

#: Features shown in the second table (names as pybpf.kernel.features has them).
FEATURE_ROWS: Tuple[Tuple[str, str], ...] = (
    ("other", "btf"), ("other", "btf_enum64"), ("other", "bounded_loops"),
    ("other", "bpf_probe_read_kernel"), ("other", "ringbuf"), ("other", "bpf_loop"),
    ("other", "enable_stats"), ("other", "atomic_fetch"), ("other", "cpu_v4"),
    ("link_types", "BPF_LINK_TYPE_PERF_EVENT"), ("link_types", "BPF_LINK_TYPE_RAW_TRACEPOINT"),
    ("link_types", "BPF_LINK_TYPE_XDP"), ("link_types", "BPF_LINK_TYPE_TCX"),
    ("link_types", "BPF_LINK_TYPE_NETKIT"),
    ("prog_types", "BPF_PROG_TYPE_TRACING"), ("prog_types", "BPF_PROG_TYPE_SYSCALL"),
    ("prog_types", "BPF_PROG_TYPE_NETFILTER"),
    ("map_types", "BPF_MAP_TYPE_BLOOM_FILTER"), ("map_types", "BPF_MAP_TYPE_USER_RINGBUF"),
    ("map_types", "BPF_MAP_TYPE_CGRP_STORAGE"), ("map_types", "BPF_MAP_TYPE_ARENA"),
)


def cell(counts: Dict[str, int]) -> str:
    """``12 passed`` / ``10 passed, 2 failed`` / ``-`` for nothing run."""
    parts = ["%d %s" % (counts[k], k) for k in (PASSED, FAILED, ERROR, SKIPPED) if counts.get(k)]
    return ", ".join(parts) if parts else "-"


def _column_title(run_: KernelRun) -> str:
    return run_.label if not run_.release else "%s (%s)" % (run_.label, run_.release)


def table_rows(runs: Sequence[KernelRun]) -> Tuple[List[str], List[List[str]]]:
    """Header and rows of the results table: one row per test file, one column per kernel."""
    files: List[str] = []
    for r in runs:
        for case in r.cases:
            if case.file not in files:
                files.append(case.file)
    header = ["tests"] + [_column_title(r) for r in runs]
    rows = []
    for file in files:
        rows.append([file] + [_cell(r, file) for r in runs])
    rows.append(["total"] + [_total(r) for r in runs])
    rows.append(["time (boot + tests)"] + [_times(r) for r in runs])
    return header, rows


def _cell(r: KernelRun, file: str) -> str:
    counts = r.counts(file)
    if not r.problem:
        return cell(counts)
    if not r.cases:
        return "no results"
    return cell(counts) + " (partial)" if any(counts.values()) else "not run"


def _total(r: KernelRun) -> str:
    if not r.problem:
        return cell(r.counts())
    # the whole story is under "Failures:"; the cell keeps the table narrow
    return "%s; %s" % (cell(r.counts()), r.problem.split(" while ")[0]) if r.cases else r.problem


def _times(r: KernelRun) -> str:
    parts = []
    if r.boot_seconds is not None:
        parts.append("boot %.0f s" % r.boot_seconds)
    if r.test_seconds is not None:
        parts.append("tests %.0f s" % r.test_seconds)
    return ", ".join(parts) or "-"


def feature_rows(runs: Sequence[KernelRun]) -> Tuple[List[str], List[List[str]]]:
    header = ["feature"] + [_column_title(r) for r in runs]
    rows = []
    for group, name in FEATURE_ROWS:
        row = [name]
        for r in runs:
            answer = r.features.get(group, {}).get(name) if isinstance(r.features, dict) else None
            row.append("?" if not isinstance(answer, dict) else
                       ("yes" if answer.get("available") else "no"))
        rows.append(row)
    return header, rows


def render_text(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(values: List[str]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(values, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_markdown(header: List[str], rows: List[List[str]]) -> str:
    def esc(value: str) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def failures(runs: Sequence[KernelRun]) -> List[str]:
    out = []
    for r in runs:
        if r.problem:
            out.append("%s: %s" % (r.label, r.problem))
        for case in r.cases:
            if case.outcome != PASSED:
                out.append("%s: %s %s: %s" % (r.label, case.outcome.upper(), case.nodeid,
                                              case.message[:300]))
    return out


def retried(runs: Sequence[KernelRun]) -> List[str]:
    """Why kernels were run again: their earlier attempts timed out."""
    return ["%s: attempt %d %s" % (r.label, attempt, why)
            for r in runs for attempt, why in enumerate(r.earlier, 1)]


def report(runs: Sequence[KernelRun], markdown: bool = False) -> str:
    render = render_markdown if markdown else render_text
    parts = [render(*table_rows(runs))]
    if any(r.features for r in runs):
        parts.append(render(*feature_rows(runs)))
    for title, lines in (("Failures", failures(runs)), ("Run again (--retries)", retried(runs))):
        if lines:
            parts.append(title + (":\n\n" if markdown else ":\n")
                         + "\n".join(("- " if markdown else "  ") + line for line in lines))
    return "\n\n".join(parts) + "\n"
