"""BPF programs in the kernel: load (with the verifier log mapped back to
source lines), test runs, run statistics and program info.

A :class:`Program` owns the file descriptor of one loaded program and closes
it exactly once (``close()``, ``with``, or garbage collection as a last
resort). Loading asks the kernel without a log first, because a log costs
verifier time and memory and is only needed when something goes wrong; on a
failure it loads again with a log that grows until the whole log fits, and
turns the log into a :class:`~pybpf.errors.VerifierError` that names the
instruction the verifier stopped at and the Python line that emitted it.

The verifier log parsing (:func:`failing_slot`, :func:`offending_writer_slot`,
:func:`parse_verifier_stats`) is pure and tested on real logs in
``tests/unit/test_verifier_log.py``. Attaching programs is not here (see
``kernel.link``); neither is listing the kernel's programs (``kernel.objects``).

>>> from pybpf import asm, isa
>>> a = asm.Assembler("ret7")
>>> a.emit(isa.mov(isa.R0, 7))
>>> a.emit(isa.exit_())
>>> with Program.load(a.assemble(), prog_type=BPF_PROG_TYPE_SOCKET_FILTER) as prog:
...     prog.test_run(bytes(14)).retval                    # doctest: +SKIP
7
"""

import ctypes
import errno as _errno
import linecache
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .. import isa
from ..asm import AssembledProgram
from ..errors import (PRIVILEGE_HINT, BPFError, BPFPermissionError, SourceLocation,
                      UnsupportedFeature, VerifierError, strerror)
from . import log_buffer, objects
from .log_buffer import LOG_SIZE_MAX, LOG_SIZE_START
from . import sys as _sys
from .. import consts
from ..consts import (ATTACH_TYPES, BPF_LOG_LEVEL1, BPF_LOG_LEVEL2, BPF_PROG_TYPE_RAW_TRACEPOINT,
                      PROG_TYPES)
from .sys import ENOTSUPP, FD

__all__ = [
    "Program", "TestRunResult", "VerifierStats", "LoadRequest", "enable_stats", "failing_slot",
    "offending_writer_slot", "parse_verifier_stats", "PROG_TYPE_SINCE", "LOG_SIZE_START",
    "LOG_SIZE_MAX", "ENOTSUPP", "TEST_RUN_HEADROOM",
]

# First mainline release with each program type, for UnsupportedFeature messages.
PROG_TYPE_SINCE: Dict[int, str] = {
    consts.BPF_PROG_TYPE_SOCKET_FILTER: "3.19", consts.BPF_PROG_TYPE_KPROBE: "4.1",
    consts.BPF_PROG_TYPE_SCHED_CLS: "4.1", consts.BPF_PROG_TYPE_SCHED_ACT: "4.1",
    consts.BPF_PROG_TYPE_TRACEPOINT: "4.7", consts.BPF_PROG_TYPE_XDP: "4.8",
    consts.BPF_PROG_TYPE_PERF_EVENT: "4.9", consts.BPF_PROG_TYPE_CGROUP_SKB: "4.10",
    consts.BPF_PROG_TYPE_CGROUP_SOCK: "4.10", consts.BPF_PROG_TYPE_LWT_IN: "4.10",
    consts.BPF_PROG_TYPE_LWT_OUT: "4.10", consts.BPF_PROG_TYPE_LWT_XMIT: "4.10",
    consts.BPF_PROG_TYPE_SOCK_OPS: "4.13", consts.BPF_PROG_TYPE_SK_SKB: "4.14",
    consts.BPF_PROG_TYPE_CGROUP_DEVICE: "4.15", consts.BPF_PROG_TYPE_SK_MSG: "4.17",
    consts.BPF_PROG_TYPE_RAW_TRACEPOINT: "4.17", consts.BPF_PROG_TYPE_CGROUP_SOCK_ADDR: "4.17",
    consts.BPF_PROG_TYPE_LWT_SEG6LOCAL: "4.18", consts.BPF_PROG_TYPE_LIRC_MODE2: "4.18",
    consts.BPF_PROG_TYPE_SK_REUSEPORT: "4.19", consts.BPF_PROG_TYPE_FLOW_DISSECTOR: "4.20",
    consts.BPF_PROG_TYPE_CGROUP_SYSCTL: "5.2", consts.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE: "5.2",
    consts.BPF_PROG_TYPE_CGROUP_SOCKOPT: "5.3", consts.BPF_PROG_TYPE_TRACING: "5.5",
    consts.BPF_PROG_TYPE_STRUCT_OPS: "5.6", consts.BPF_PROG_TYPE_EXT: "5.6",
    consts.BPF_PROG_TYPE_LSM: "5.7", consts.BPF_PROG_TYPE_SK_LOOKUP: "5.9",
    consts.BPF_PROG_TYPE_SYSCALL: "5.14", consts.BPF_PROG_TYPE_NETFILTER: "6.4",
}

# Room given to a test run's output packet beyond the input's size, so that
# programs growing the packet (bpf_xdp_adjust_head, skb_change_tail) fit.
TEST_RUN_HEADROOM = 256


# --- the verifier log ---------------------------------------------------------------------
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


def _complaint_lines(lines: Sequence[str]) -> List[str]:
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
    for line in _complaint_lines(lines):
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
    complaints = _complaint_lines(lines)
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


# --- loading ------------------------------------------------------------------------------

Code = Union[AssembledProgram, Sequence[isa.Instruction], bytes]


class LoadRequest:
    """Everything one BPF_PROG_LOAD needs, with the buffers the attr points at
    kept alive for as long as the request is. :meth:`attempt` returns errno
    instead of raising: ``features`` probes with it, where failing is an answer."""

    def __init__(self, bytecode: bytes, prog_type: int, name: str, license: str,
                 expected_attach_type: int, prog_flags: int, attach_btf_id: int, *,
                 btf_fd: int = 0, func_info: Sequence[Tuple[int, int]] = ()):
        self.bytecode = bytecode
        self.btf_fd = btf_fd
        # one struct bpf_func_info per function
        self._func_info = ctypes.create_string_buffer(
            b"".join(consts.BPF_FUNC_INFO.pack(off, type_id) for off, type_id in func_info),
            consts.BPF_FUNC_INFO.size * len(func_info)) if func_info else None
        self.func_info_cnt = len(func_info)
        self.prog_type = prog_type
        self.name = name
        self.license = license
        self.expected_attach_type = expected_attach_type
        self.prog_flags = prog_flags
        self.attach_btf_id = attach_btf_id
        self._insns = ctypes.create_string_buffer(bytecode, len(bytecode))
        self._license = ctypes.create_string_buffer(license.encode("ascii"))

    def attempt(self, log_level: int = 0, log_size: int = 0) -> Tuple[int, str, int]:
        """One BPF_PROG_LOAD. Returns (fd or -errno, log text, log_true_size)."""
        log = ctypes.create_string_buffer(log_size) if log_level else None
        attr = _sys.ProgLoadAttr(
            prog_type=self.prog_type, insn_cnt=len(self.bytecode) // isa.SLOT_SIZE,
            insns=_sys.address(self._insns), license=_sys.address(self._license),
            log_level=log_level, log_size=log_size if log else 0,
            log_buf=_sys.address(log) if log else 0, prog_flags=self.prog_flags,
            prog_name=_sys.obj_name(self.name), expected_attach_type=self.expected_attach_type,
            attach_btf_id=self.attach_btf_id, prog_btf_fd=self.btf_fd)
        if self._func_info is not None:
            attr.func_info_rec_size = consts.BPF_FUNC_INFO.size
            attr.func_info = _sys.address(self._func_info)
            attr.func_info_cnt = self.func_info_cnt
        ret = _sys.bpf_errno(_sys.BPF_PROG_LOAD, attr)
        text = log.value.decode("utf-8", "replace") if log else ""
        return ret, text, attr.log_true_size

    def attempt_with_log(self, log_level: int) -> Tuple[int, str, bool]:
        """Load with a log, growing the buffer until the log fits or reaches
        LOG_SIZE_MAX. Returns (fd or -errno, log, truncated)."""
        return log_buffer.attempt_with_log(lambda size: self.attempt(log_level, size))


def _as_bytecode(code: Code, maps: Optional[Mapping[str, Any]]) -> Tuple[bytes, AssembledProgram]:
    """The bytes to load, and an AssembledProgram to map slots to instructions
    (with source lines only when ``code`` was one)."""
    if isinstance(code, AssembledProgram):
        fds = {name: _sys.fileno_of(m) for name, m in (maps or {}).items()}
        return code.bytecode(fds), code
    if isinstance(code, (bytes, bytearray, memoryview)):
        raw = bytes(code)
        try:
            return raw, AssembledProgram(isa.decode(raw, validate=False))
        except ValueError:  # not whole instructions: let the kernel say so
            return raw, AssembledProgram(())
    instructions = list(code)
    return isa.encode(instructions), AssembledProgram(instructions)


def _source_of(program: AssembledProgram, failing: Optional[int], writer: Optional[int]):
    """(logical index of the failing slot, the source locations of the failing
    instruction and of the one that wrote the register it complains about,
    each once, and their text)."""
    def index(slot: Optional[int]) -> Optional[int]:
        if slot is None or not 0 <= slot < program.slot_count:
            return None
        return program.index_of_slot(slot)

    locations: List[SourceLocation] = []
    for insn_index in (index(failing), index(writer)):
        location = program.lines[insn_index] if insn_index is not None else None
        if location is not None and location not in locations:
            locations.append(location)
    texts = [linecache.getline(loc.filename, loc.line).strip() for loc in locations]
    return index(failing), locations, texts


@dataclass(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN reports. ``duration_ns`` is the mean time of one
    run over ``repeat`` runs; ``data_out``/``ctx_out`` are empty when no data /
    no context went in."""

    __test__ = False  # not a pytest test class, despite the name

    retval: int
    data_out: bytes
    ctx_out: bytes
    duration_ns: int


class Program(_sys.FDOwner):
    """One loaded BPF program; owns its file descriptor.

    Make one with :meth:`load`, :meth:`from_id` or :meth:`from_fd`. ``id``,
    ``tag`` and :meth:`info` ask the kernel (``kernel.objects``).
    """

    def __init__(self, fd: FD, prog_type: int, name: str = "",
                 code: Optional[AssembledProgram] = None, verifier_log: str = ""):
        self._fd = fd
        self.prog_type = prog_type
        self.name = name
        self.code = code
        self.verifier_log = verifier_log
        self.verifier_stats = parse_verifier_stats(verifier_log) if verifier_log else None
        self._identity: Optional[Tuple[int, str]] = None

    # -- construction ------------------------------------------------------------------

    @classmethod
    def load(cls, code: Code, *, prog_type: int, name: str = "", license: str = "GPL",
             expected_attach_type: int = 0, maps: Optional[Mapping[str, Any]] = None,
             prog_flags: int = 0, log_level: int = 0, attach_btf_id: int = 0,
             btf_fd: int = 0, func_info: Sequence[Tuple[int, int]] = ()) -> "Program":
        """Load ``code`` (an AssembledProgram, instructions, or raw bytecode).

        ``maps`` maps each map name the code references to an fd or an object
        with ``fileno()``. With ``log_level`` (BPF_LOG_LEVEL1/2, BPF_LOG_STATS)
        the log is kept even on success, in ``verifier_log`` and
        ``verifier_stats``; without it a log is only made after a failure.
        ``btf_fd`` and ``func_info`` ((slot, BTF FUNC id) per function, the
        first at slot 0) describe the functions; the kernel requires them of
        a program that takes a function's address (a ``bpf_loop`` callback).

        Raises VerifierError (rejected, with the log and source lines),
        BPFPermissionError, UnsupportedFeature (program type unknown to this
        kernel) or BPFError.
        """
        bytecode, program = _as_bytecode(code, maps)
        if not name and isinstance(code, AssembledProgram):
            name = code.name
        request = LoadRequest(bytecode, prog_type, name, license, expected_attach_type,
                              prog_flags, attach_btf_id, btf_fd=btf_fd, func_info=func_info)
        log, truncated = "", False
        ret = -1 if log_level else request.attempt()[0]
        if ret < 0:
            level = log_level or BPF_LOG_LEVEL1
            ret, log, truncated = request.attempt_with_log(level)
            if ret < 0 and not level & (BPF_LOG_LEVEL1 | BPF_LOG_LEVEL2):
                # BPF_LOG_STATS alone does not say why: ask again for the reasons.
                ret, log, truncated = request.attempt_with_log(level | BPF_LOG_LEVEL1)
        if ret < 0:
            raise _load_error(-ret, request, program, log, truncated)
        with _sys.closed_on_error(FD(ret)) as fd:
            return cls(fd, prog_type, name,
                       code if isinstance(code, AssembledProgram) else None, log)

    @classmethod
    def from_fd(cls, fd: Union[int, FD]) -> "Program":
        """A Program for an fd obtained elsewhere (pinned, passed in). The fd
        is duplicated: the caller keeps (and closes) its own."""
        return cls._adopt(_sys.dup_fd(fd.fileno() if isinstance(fd, FD) else fd))

    @classmethod
    def from_id(cls, prog_id: int) -> "Program":
        """Open the loaded program with kernel id ``prog_id``
        (:class:`~pybpf.errors.NotFoundError` if there is none)."""
        return cls._adopt(objects.PROGS.open(prog_id))

    @classmethod
    def _adopt(cls, owned: FD) -> "Program":
        """A Program for an fd we own, described by the kernel's info."""
        with _sys.closed_on_error(owned):
            info = objects.prog_info(owned.fileno())
            program = cls(owned, info.type, info.name)
        program._identity = (info.id, info.tag)
        return program

    # -- the fd (fileno, closed, close and ``with`` come from FDOwner) -----------------

    @property
    def fd(self) -> int:
        return self._fd.fileno()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "fd=%d" % self._fd.fileno()
        return "<Program %r %s %s>" % (self.name, PROG_TYPES.name(self.prog_type), state)

    # -- what the kernel knows ---------------------------------------------------------

    def info(self) -> objects.ProgInfo:
        """What the kernel reports now: id, tag, name, map ids, run_cnt and
        run_time_ns (counted while :func:`enable_stats` is on), sizes."""
        return objects.prog_info(self.fileno())

    def xlated(self) -> bytes:
        """The bytecode after the verifier's rewrites (decode with ``isa.decode``)."""
        return objects.prog_xlated(self.fileno())

    def jited(self) -> bytes:
        """The machine code the JIT made (empty with the JIT off)."""
        return objects.prog_jited(self.fileno())

    def _ids(self) -> Tuple[int, str]:
        if self._identity is None:  # both are fixed for the program's lifetime
            info = self.info()
            self._identity = (info.id, info.tag)
        return self._identity

    @property
    def id(self) -> int:
        return self._ids()[0]

    @property
    def tag(self) -> str:
        """The kernel's tag (hex SHA-1 prefix of the instructions), as bpftool shows it."""
        return self._ids()[1]

    # -- running -------------------------------------------------------------------------

    def test_run(self, data: bytes = b"", *, ctx: Optional[bytes] = None, repeat: int = 1,
                 data_out_size: Optional[int] = None, flags: int = 0,
                 cpu: int = 0) -> TestRunResult:
        """Run the program in the kernel on ``data`` (a packet) and/or ``ctx``
        without attaching it (BPF_PROG_TEST_RUN).

        ``data_out_size`` defaults to ``len(data) + TEST_RUN_HEADROOM``. Packet
        program types need at least an Ethernet header (14 bytes) of data.
        """
        data_in = ctypes.create_string_buffer(bytes(data), len(data)) if data else None
        out_size = (len(data) + TEST_RUN_HEADROOM if data_out_size is None
                    else data_out_size) if data else 0
        data_out = ctypes.create_string_buffer(out_size) if out_size else None
        ctx_in = ctypes.create_string_buffer(bytes(ctx), len(ctx)) if ctx else None
        # bpf_prog_test_run_raw_tp (net/bpf/test_run.c) refuses ctx_out and repeat.
        raw_tp = self.prog_type == BPF_PROG_TYPE_RAW_TRACEPOINT
        repeat = 0 if raw_tp else repeat
        ctx_out = ctypes.create_string_buffer(len(ctx)) if ctx and not raw_tp else None
        attr = _sys.TestRunAttr(
            prog_fd=self.fileno(), repeat=repeat, flags=flags, cpu=cpu,
            data_size_in=len(data), data_in=_sys.address(data_in) if data_in else 0,
            data_size_out=out_size, data_out=_sys.address(data_out) if data_out else 0,
            ctx_size_in=len(ctx) if ctx else 0, ctx_in=_sys.address(ctx_in) if ctx_in else 0,
            ctx_size_out=len(ctx) if ctx_out else 0,
            ctx_out=_sys.address(ctx_out) if ctx_out else 0)
        ret = _sys.bpf_errno(_sys.BPF_PROG_TEST_RUN, attr)
        if ret < 0:
            raise self._test_run_error(-ret, len(data), len(ctx) if ctx else 0, out_size)
        return TestRunResult(
            retval=attr.retval,
            data_out=data_out.raw[:attr.data_size_out] if data_out else b"",
            ctx_out=ctx_out.raw[:attr.ctx_size_out] if ctx_out else b"",
            duration_ns=attr.duration)

    def _test_run_error(self, err: int, data_len: int, ctx_len: int, out_size: int) -> BPFError:
        kind = PROG_TYPES.name(self.prog_type)
        if err == ENOTSUPP:
            return UnsupportedFeature("BPF_PROG_TEST_RUN for %s" % kind, op="BPF_PROG_TEST_RUN",
                                      err=err, detail="test_run is not available for this "
                                      "program type; attach it to run it")
        if err == _errno.ENOSPC:
            return BPFError(err, "BPF_PROG_TEST_RUN", "the output packet is larger than the "
                            "%d bytes given; pass a larger data_out_size" % out_size)
        if err == _errno.EINVAL:
            return BPFError(err, "BPF_PROG_TEST_RUN",
                            "the kernel refused the arguments for %s (data %d bytes, ctx %d bytes):"
                            " packet types need at least 14 bytes of data, context-only types "
                            "(raw tracepoint, syscall) take ctx and no data, and some types take "
                            "no ctx, repeat or flags" % (kind, data_len, ctx_len))
        return _sys.error_for(err, "BPF_PROG_TEST_RUN")


def enable_stats(stats_type: int = _sys.BPF_STATS_RUN_TIME) -> FD:
    """Switch on run-time statistics (``run_cnt``/``run_time_ns`` of every
    program) until the returned FD is closed; use it as a context manager::

        with enable_stats():
            ...   # programs that run now are counted

    Statistics stay on while any holder (this fd, or ``kernel.bpf_stats_enabled``)
    wants them; they cost about 50-60 ns per program run.
    """
    attr = _sys.EnableStatsAttr(type=stats_type)
    ret = _sys.bpf_errno(_sys.BPF_ENABLE_STATS, attr)
    if ret == -_errno.EINVAL and stats_type == _sys.BPF_STATS_RUN_TIME:
        from .features import SINCE  # features builds on this module
        raise UnsupportedFeature("BPF_ENABLE_STATS", SINCE["enable_stats"], op="BPF_ENABLE_STATS")
    if ret < 0:
        raise _sys.error_for(-ret, "BPF_ENABLE_STATS")
    return FD(ret)


# --- helpers ------------------------------------------------------------------------------

def _load_error(err: int, request: LoadRequest, program: AssembledProgram, log: str,
                truncated: bool) -> BPFError:
    """The exception for a failed load, from errno and log."""
    kind = PROG_TYPES.name(request.prog_type)
    op = "BPF_PROG_LOAD (%s %r)" % (kind, request.name)
    if log.strip():
        slot = failing_slot(log, request.bytecode)
        index, locations, texts = _source_of(program, slot, offending_writer_slot(log))
        if truncated:
            log = ("[log truncated: only the last %d bytes of the verifier log are kept]\n%s"
                   % (LOG_SIZE_MAX, log))
        complaints = _complaint_lines(log.splitlines())
        return VerifierError(err, request.name, log, index, locations, texts,
                             reason=complaints[0].strip() if complaints else "",
                             insn_slot=slot if index is not None else None)
    if err in (_errno.EPERM, _errno.EACCES):
        return BPFPermissionError(err, op, "the kernel refused to load a %s program: %s; %s"
                                  % (kind, strerror(err), PRIVILEGE_HINT))
    if err == _errno.E2BIG:
        return BPFError(err, op, "the program has %d instruction slots, more than this kernel "
                        "accepts (1,000,000 with CAP_BPF, 4,096 without)"
                        % (len(request.bytecode) // isa.SLOT_SIZE))
    if err == _errno.EINVAL:
        from .features import ABSENT, prog_type_answer
        answer = prog_type_answer(request.prog_type)
        if answer.state == ABSENT:
            return UnsupportedFeature(kind, PROG_TYPE_SINCE.get(request.prog_type),
                                      op="BPF_PROG_LOAD", err=err, detail=answer.detail)
        return BPFError(err, op, "the kernel refused the load attributes before verifying "
                        "(expected_attach_type=%s, prog_flags=%#x, attach_btf_id=%d, "
                        "license=%r)" % (ATTACH_TYPES.name(request.expected_attach_type),
                                         request.prog_flags, request.attach_btf_id,
                                         request.license))
    return _sys.error_for(err, op)
