"""What one kernel's run left behind, read back: the cases of its JUnit
report (or, for a run that was killed, of its progress log), its meta data
and its feature-probe answers, as one :class:`KernelRun`.

Kept apart from running and from rendering: the guest writes these files
(``guest_run.py``, ``matrix_timeout.py``), ``run.py`` reads them back after
each kernel, and ``report.py`` only ever sees KernelRuns.
"""

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
_OUTCOMES = {"failure": FAILED, "error": ERROR, "skipped": SKIPPED}   # JUnit tag -> outcome


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    outcome: str
    message: str = ""
    seconds: float = 0.0

    @property
    def nodeid(self) -> str:
        return "%s::%s" % (self.file, self.name)


@dataclass
class KernelRun:
    """What one kernel's run gave: its cases, or why there are none."""
    label: str
    release: str = ""
    cases: List[Case] = field(default_factory=list)
    problem: str = ""             # no results at all: boot failure, timeout, crash
    boot_seconds: Optional[float] = None
    test_seconds: Optional[float] = None
    wall_seconds: Optional[float] = None
    features: Dict[str, object] = field(default_factory=dict)
    timed_out: bool = False       # killed by --timeout (a hung guest, or a slow one)
    earlier: List[str] = field(default_factory=list)   # why earlier attempts were retried

    def counts(self, file: Optional[str] = None) -> Dict[str, int]:
        counts = {PASSED: 0, FAILED: 0, ERROR: 0, SKIPPED: 0}
        for case in self.cases:
            if file is None or case.file == file:
                counts[case.outcome] += 1
        return counts

    @property
    def ok(self) -> bool:
        c = self.counts()
        return not self.problem and c[PASSED] > 0 and c[FAILED] + c[ERROR] + c[SKIPPED] == 0


def _classname_to_file(classname: str) -> str:
    """``tests.kernel.test_maps.TestX`` -> ``tests/kernel/test_maps.py`` (best effort)."""
    parts = classname.split(".")
    while parts and parts[-1][:1].isupper():
        parts.pop()
    return "/".join(parts) + ".py" if parts else classname


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_junit(text: str) -> List[Case]:
    """The cases of a pytest JUnit report (xunit1 or xunit2, one or many suites)."""
    root = ET.fromstring(text)
    cases = []
    for tc in root.iter("testcase"):
        file = tc.get("file") or _classname_to_file(tc.get("classname", ""))
        name = tc.get("name", "")
        classname = tc.get("classname", "")
        # a test inside a class: keep the class in the name, as in a node id
        tail = classname.split(".")[-1] if classname else ""
        if tail[:1].isupper() and not file.endswith(tail + ".py"):
            name = "%s::%s" % (tail, name)
        outcome, message = PASSED, ""
        for child in tc:
            if child.tag in _OUTCOMES:
                outcome = _OUTCOMES[child.tag]
                message = child.get("message") or _first_line(child.text or "")
                if outcome != SKIPPED:
                    break
        try:
            seconds = float(tc.get("time", "0") or 0)
        except ValueError:
            seconds = 0.0
        cases.append(Case(file, name, outcome, message, seconds))
    return cases


def parse_progress(text: str) -> Tuple[List[Case], str]:
    """Cases from ``progress.jsonl`` (see tools/kernel_matrix/matrix_timeout.py)
    and the node id of a test that started but never reported its end."""
    phases: Dict[str, Dict[str, dict]] = {}
    started: List[str] = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue          # a line cut by the kill
        if "start" in record:
            started.append(record["start"])
        elif "nodeid" in record:
            phases.setdefault(record["nodeid"], {})[record.get("when", "call")] = record
    cases = []
    for nodeid, by_phase in phases.items():
        outcome, message, seconds = PASSED, "", 0.0
        for when in ("setup", "call", "teardown"):
            record = by_phase.get(when)
            if record is None:
                continue
            seconds += float(record.get("duration", 0) or 0)
            if record.get("outcome") == "failed":
                outcome = FAILED if when == "call" else ERROR
                message = record.get("message", "")
                break
            if record.get("outcome") == "skipped":
                outcome, message = SKIPPED, record.get("message", "")
        file, _, name = nodeid.partition("::")
        cases.append(Case(file, name, outcome, message, seconds))
    unfinished = [nodeid for nodeid in started if "teardown" not in phases.get(nodeid, {})]
    return cases, (unfinished[-1] if unfinished else "")


def load_run(label: str, out: str) -> KernelRun:
    """A KernelRun from a run's output directory (junit.xml, meta.json, features.json)."""
    result = KernelRun(label)
    meta: Dict[str, object] = {}
    try:
        with open(os.path.join(out, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        pass
    result.release = str(meta.get("release", ""))
    if isinstance(meta.get("pytest_seconds"), (int, float)):
        result.test_seconds = float(meta["pytest_seconds"])  # type: ignore[arg-type]
    try:
        with open(os.path.join(out, "features.json")) as f:
            result.features = json.load(f)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(out, "junit.xml")) as f:
            result.cases = parse_junit(f.read())
    except OSError:
        result.problem = "no JUnit report (the VM did not boot, or the run was killed)"
    except ET.ParseError as exc:
        result.problem = "unreadable JUnit report: %s" % exc
    if not result.problem and not result.cases:
        result.problem = "the JUnit report has no test cases (collection failed?)"
    return result
