"""The verifier's log, read: which instruction it stopped at, and its statistics.

Pure functions on the text of a ``BPF_PROG_LOAD`` log, tested on real logs
in ``tests/unit/test_verifier_log.py``; :mod:`.prog` uses them to turn a
rejection into a :class:`~pybpf.errors.VerifierError` that names the
instruction and the source line that emitted it.
"""

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .. import isa

# What the parser understands (examples are real logs from Linux 6.18):
#
#   instruction lines   "12: (85) call bpf_map_lookup_elem#1"
#                       "1: (bf) r1 = r2                ; R1_w=..."  (state after ';')
#                       The number is a *slot* (an ld_imm64 counts two). The last
#                       such line is the instruction being checked when the
#                       verifier gave up, unless the complaint names one itself:
#   complaints naming   "unreachable insn 2"
#   an instruction      "jump out of range from insn 1 to 22"
#                       "back-edge from insn 7 to 3"      (kernels before 5.3)
#                       "infinite loop detected at insn 1"
#                       "jump into the middle of ldimm64 insn 4"
#                       "invalid insn idx 5 insn_cnt 3"
#   complaints that     "last insn is not an exit or jmp"  -> the last slot
#   need the code       "unknown opcode ff"                -> first slot with that opcode
#   complaints pointing "invalid func unknown#1234", "R2 !read_ok",
#   at the last line    "R0 invalid mem access 'map_value_or_null'",
#                       "BPF program is too large. Processed 1000001 insn"
#
# Lines the parser must not take for instructions: register states ("0: R1=ctx()
# R10=fp0"), branch states ("from 4 to 6: R0=0 ..."), the indented liveness table
# of log level 2 ("      0: .......... (b7) r0 = 0") and statistics.

_INSN_LINE = re.compile(r"^(\d+): \(([0-9a-f]{2})\) (.*)$")
_BRANCH_LINE = re.compile(r"^from (\d+) to (\d+): ")
_NAMED_INSN = re.compile(r"\binsn (?:idx )?(\d+)\b")
_LAST_INSN = re.compile(r"^last insn is not an exit or jmp")
_UNKNOWN_OPCODE = re.compile(r"^unknown opcode ([0-9a-f]{1,2})\b")
_REGISTER_COMPLAINT = re.compile(r"^R(\d+)\b")
_STATS = re.compile(r"processed (\d+) insns \(limit (\d+)\) max_states_per_insn (\d+) "
                    r"total_states (\d+) peak_states (\d+) mark_read (\d+)")
_VERIFY_TIME = re.compile(r"^verification time (\d+) usec", re.M)
_STACK_DEPTH = re.compile(r"^stack depth ([\d+]+)", re.M)
_CALL = 0x85


def _insn_lines(lines: Sequence[str]) -> List[Tuple[int, int, int, str]]:
    """(line number, slot, opcode, text after the opcode) of each instruction line."""
    out = []
    for number, line in enumerate(lines):
        match = _INSN_LINE.match(line)
        if match:
            out.append((number, int(match.group(1)), int(match.group(2), 16), match.group(3)))
    return out


def complaint_lines(lines: Sequence[str]) -> List[str]:
    """The lines after the last instruction line, without the statistics: the
    verifier's reasons for stopping."""
    insns = _insn_lines(lines)
    start = insns[-1][0] + 1 if insns else 0
    return [line for line in lines[start:]
            if line.strip() and not _STATS.search(line)
            and not line.startswith(("verification time", "stack depth"))]


def failing_slot(log: str, bytecode: Optional[bytes] = None) -> Optional[int]:
    """The slot of the instruction the verifier rejected, or ``None``.

    ``bytecode`` (the program as loaded) lets the complaints that name no
    instruction ("last insn is not an exit or jmp", "unknown opcode ff") be
    placed too. See the table above for the patterns understood.

    >>> failing_slot("0: (b7) r0 = 0\\n1: (bf) r1 = r2\\nR2 !read_ok\\n")
    1
    >>> failing_slot("unreachable insn 2\\nprocessed 0 insns (limit 1000000) "
    ...              "max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0")
    2
    """
    lines = log.splitlines()
    for line in complaint_lines(lines):
        named = _NAMED_INSN.search(line)
        if named:
            return int(named.group(1))
        if bytecode and _LAST_INSN.match(line):
            return len(bytecode) // isa.SLOT_SIZE - 1
        opcode = _UNKNOWN_OPCODE.match(line)
        if bytecode and opcode:
            wanted = int(opcode.group(1), 16)
            for slot in range(len(bytecode) // isa.SLOT_SIZE):
                if bytecode[slot * isa.SLOT_SIZE] == wanted:
                    return slot
    insns = _insn_lines(lines)
    return insns[-1][1] if insns else None


def _writes_register(opcode: int, text: str, reg: int) -> bool:
    if opcode == _CALL:  # a call sets r0 and clobbers r1-r5
        return reg <= 5
    return re.match(r"[rw]%d (?:[-+*/%%&|^]|<<|>>|s>>|s/|s%%)?= " % reg, text) is not None


def offending_writer_slot(log: str) -> Optional[int]:
    """When the complaint is about a register ("R3 invalid mem access 'scalar'"),
    the slot of the instruction that last wrote that register on the path the
    verifier was walking, or ``None``.

    The walk goes backwards through the instruction lines. A line "from A to B:"
    starts the exploration of a branch pushed at instruction A, so everything
    between it and the previous visit of A belongs to another path and is skipped.
    """
    lines = log.splitlines()
    complaints = complaint_lines(lines)
    register = _REGISTER_COMPLAINT.match(complaints[0]) if complaints else None
    insns = _insn_lines(lines)
    if register is None or not insns:
        return None
    reg = int(register.group(1))
    last_line = insns[-1][0]
    by_line = {number: (slot, opcode, text) for number, slot, opcode, text in insns}
    number = last_line - 1
    skip_to: Optional[int] = None
    while number >= 0:
        line = lines[number]
        if number in by_line:
            slot, opcode, text = by_line[number]
            if skip_to is None or slot == skip_to:
                if skip_to is None and _writes_register(opcode, text, reg):
                    return slot
                skip_to = None
        elif skip_to is None:
            branch = _BRANCH_LINE.match(line)
            if branch:
                skip_to = int(branch.group(1))
        number -= 1
    return None


@dataclass(frozen=True)
class VerifierStats:
    """The verifier's own summary of one load (log level 1, 2 or BPF_LOG_STATS).

    ``stack_depth`` has one entry per subprogram; ``verification_time_usec``
    and ``stack_depth`` appear only with BPF_LOG_STATS.
    """

    insns_processed: int
    insn_limit: int
    max_states_per_insn: int
    total_states: int
    peak_states: int
    mark_read: int
    verification_time_usec: Optional[int] = None
    stack_depth: Tuple[int, ...] = ()


def parse_verifier_stats(log: str) -> Optional[VerifierStats]:
    """Statistics from a verifier log, or ``None`` when it has none.

    >>> parse_verifier_stats("verification time 9 usec\\nstack depth 0+8\\nprocessed 2 insns "
    ...     "(limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0")
    ... # doctest: +NORMALIZE_WHITESPACE
    VerifierStats(insns_processed=2, insn_limit=1000000, max_states_per_insn=0,
                  total_states=0, peak_states=0, mark_read=0, verification_time_usec=9,
                  stack_depth=(0, 8))
    """
    counts = _STATS.findall(log)
    if not counts:
        return None
    times = _VERIFY_TIME.findall(log)
    depth = _STACK_DEPTH.findall(log)
    return VerifierStats(*(int(value) for value in counts[-1]),
                         verification_time_usec=int(times[-1]) if times else None,
                         stack_depth=tuple(int(part) for part in depth[-1].split("+") if part)
                         if depth else ())
