"""BPF programs in the kernel: load (with the verifier log mapped back to
source lines), test runs, run statistics and program info.

A :class:`Program` owns the file descriptor of one loaded program and closes
it exactly once (``close()``, ``with``, or garbage collection as a last
resort). Loading asks the kernel without a log first, because a log costs
verifier time and memory and is only needed when something goes wrong; on a
failure it loads again with a log that grows until the whole log fits, and
turns the log into a :class:`~pybpf.errors.VerifierError` that names the
instruction the verifier stopped at and the Python line that emitted it.

Reading the verifier's log is :mod:`.verifier_log`'s job. Whether the
kernel knows a program type at all is a lazy, cached feature test kept here
(:func:`prog_type_answer`), which a refused load asks. Attaching programs is
not here (see ``kernel.link``); neither is listing the kernel's programs
(``kernel.objects``).

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
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .. import isa
from ..asm import AssembledProgram
from ..errors import (PRIVILEGE_HINT, BPFError, BPFPermissionError, SourceLocation,
                      UnsupportedFeature, VerifierError, strerror)
from . import log_buffer, objects
from .log_buffer import LOG_SIZE_MAX, LOG_SIZE_START
from .verifier_log import (complaint_lines, failing_slot, offending_writer_slot,
                           parse_verifier_stats)
from . import sys as _sys
from .. import consts
from ..consts import (ATTACH_TYPES, BPF_CGROUP_GETSOCKOPT, BPF_CGROUP_INET4_CONNECT,
                      BPF_F_SLEEPABLE, BPF_LIRC_MODE2, BPF_LOG_LEVEL1, BPF_LOG_LEVEL2, BPF_LSM_MAC,
                      BPF_NETFILTER, BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_SK_LOOKUP,
                      BPF_TRACE_FENTRY, PROG_TYPES)
from .feature_test import ABSENT, PRESENT, YES, Answer, FeatureTest
from .sys import ENOTSUPP, FD

__all__ = [
    "Program", "TestRunResult", "LoadRequest", "enable_stats", "PROG_TYPE_SINCE",
    "LOG_SIZE_START", "LOG_SIZE_MAX", "ENOTSUPP", "TEST_RUN_HEADROOM", "prog_type_answer",
    "probe_load", "PROBE_ATTRS",
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

#: First mainline release with BPF_ENABLE_STATS.
ENABLE_STATS_SINCE = "5.8"


# --- loading ------------------------------------------------------------------------------

Code = Union[AssembledProgram, Sequence[isa.Instruction], bytes]


def _records(layout: Any, rows: Sequence[Tuple[int, ...]]) -> Optional[ctypes.Array]:
    """``rows`` packed with ``layout`` one after another, in a buffer the
    attr can point at (None when there are none)."""
    if not rows:
        return None
    return ctypes.create_string_buffer(b"".join(layout.pack(*row) for row in rows),
                                       layout.size * len(rows))


class LoadRequest:
    """Everything one BPF_PROG_LOAD needs, with the buffers the attr points at
    kept alive for as long as the request is. :meth:`attempt` returns errno
    instead of raising: ``features`` probes with it, where failing is an answer."""

    def __init__(self, bytecode: bytes, prog_type: int, name: str, license: str,
                 expected_attach_type: int, prog_flags: int, attach_btf_id: int, *,
                 btf_fd: int = 0, func_info: Sequence[Tuple[int, int]] = (),
                 line_info: Sequence[Tuple[int, int, int, int]] = ()):
        self.bytecode = bytecode
        self.btf_fd = btf_fd
        # one struct bpf_func_info per function, one struct bpf_line_info per line
        self._func_info = _records(consts.BPF_FUNC_INFO, func_info)
        self.func_info_cnt = len(func_info)
        self._line_info = _records(consts.BPF_LINE_INFO, line_info)
        self.line_info_cnt = len(line_info)
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
        if self._line_info is not None:
            attr.line_info_rec_size = consts.BPF_LINE_INFO.size
            attr.line_info = _sys.address(self._line_info)
            attr.line_info_cnt = self.line_info_cnt
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
             btf_fd: int = 0, func_info: Sequence[Tuple[int, int]] = (),
             line_info: Sequence[Tuple[int, int, int, int]] = ()) -> "Program":
        """Load ``code`` (an AssembledProgram, instructions, or raw bytecode).

        ``maps`` maps each map name the code references to an fd or an object
        with ``fileno()``. With ``log_level`` (BPF_LOG_LEVEL1/2, BPF_LOG_STATS)
        the log is kept even on success, in ``verifier_log`` and
        ``verifier_stats``; without it a log is only made after a failure.
        ``btf_fd`` and ``func_info`` ((slot, BTF FUNC id) per function, the
        first at slot 0) describe the functions; the kernel requires them of
        a program that takes a function's address (a ``bpf_loop`` callback).
        ``line_info`` ((slot, file name offset, line offset, line << 10 |
        column) in that BTF's strings) gives the verifier's log C lines.

        Raises VerifierError (rejected, with the log and source lines),
        BPFPermissionError, UnsupportedFeature (program type unknown to this
        kernel) or BPFError.
        """
        bytecode, program = _as_bytecode(code, maps)
        if not name and isinstance(code, AssembledProgram):
            name = code.name
        request = LoadRequest(bytecode, prog_type, name, license, expected_attach_type,
                              prog_flags, attach_btf_id, btf_fd=btf_fd, func_info=func_info,
                              line_info=line_info)
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
        """The program's fd, for attaching and for the bpf(2) commands that name it."""
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
        """The kernel's id of the program, as bpftool lists it."""
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
        raise UnsupportedFeature("BPF_ENABLE_STATS", ENABLE_STATS_SINCE, op="BPF_ENABLE_STATS")
    if ret < 0:
        raise _sys.error_for(-ret, "BPF_ENABLE_STATS")
    return FD(ret)


# --- the program type feature test -------------------------------------------------------

_RETURN_0 = isa.encode([isa.mov(isa.R0, 0), isa.exit_()])

#: Load attributes without which a type refuses even the empty program.
PROBE_ATTRS: Dict[int, Dict[str, int]] = {
    consts.BPF_PROG_TYPE_CGROUP_SOCK_ADDR: {"expected_attach_type": BPF_CGROUP_INET4_CONNECT},
    consts.BPF_PROG_TYPE_SK_LOOKUP: {"expected_attach_type": BPF_SK_LOOKUP},
    consts.BPF_PROG_TYPE_LIRC_MODE2: {"expected_attach_type": BPF_LIRC_MODE2},
    consts.BPF_PROG_TYPE_CGROUP_SOCKOPT: {"expected_attach_type": BPF_CGROUP_GETSOCKOPT},
    consts.BPF_PROG_TYPE_NETFILTER: {"expected_attach_type": BPF_NETFILTER},
    consts.BPF_PROG_TYPE_SYSCALL: {"prog_flags": BPF_F_SLEEPABLE},
    # These need a BTF attach target; id 1 is never a valid one, so a kernel
    # that knows the type answers with a verifier complaint (as libbpf probes).
    consts.BPF_PROG_TYPE_TRACING: {"expected_attach_type": BPF_TRACE_FENTRY, "attach_btf_id": 1},
    consts.BPF_PROG_TYPE_LSM: {"expected_attach_type": BPF_LSM_MAC, "attach_btf_id": 1},
    consts.BPF_PROG_TYPE_EXT: {"attach_btf_id": 1},
}
_NEEDS_TARGET = {consts.BPF_PROG_TYPE_TRACING: "a kernel function (BTF id) to attach to",
                 consts.BPF_PROG_TYPE_LSM: "an LSM hook (BTF id) to attach to",
                 consts.BPF_PROG_TYPE_EXT: "a BPF function to replace",
                 consts.BPF_PROG_TYPE_STRUCT_OPS: "a struct_ops map"}


def probe_load(prog_type: int, bytecode: bytes = _RETURN_0) -> Tuple[int, str]:
    """(fd or -errno, verifier log) for a probe program, with the attributes
    its type needs. Probe programs are tiny: their logs fit in 4 KiB."""
    attrs = PROBE_ATTRS.get(prog_type, {})
    request = LoadRequest(bytecode, prog_type, "", "GPL", attrs.get("expected_attach_type", 0),
                          attrs.get("prog_flags", 0), attrs.get("attach_btf_id", 0))
    ret, log, _ = request.attempt(log_level=1, log_size=4096)
    return ret, log


def _probe_prog_type(prog_type: int) -> Answer:
    """Whether this kernel loads ``r0 = 0; exit`` as ``prog_type``."""
    ret, log = probe_load(prog_type)
    if ret >= 0:
        FD(ret).close()
        return YES
    err = -ret
    needs = _NEEDS_TARGET.get(prog_type)
    # The verifier (or ENOTSUPP from the struct_ops lookup) spoke: the type is known.
    if needs and (log.strip() or err == ENOTSUPP):
        return Answer(PRESENT, "known; loading one needs %s" % needs)
    answer = Answer.from_errno(err, log)
    if needs:
        return Answer(answer.state, "%s before verification; loading one needs %s"
                      % (answer.detail, needs))
    return answer


#: Whether this kernel loads programs of a type (probed on first use, then
#: cached; ``features.probe()`` asks for every type it knows).
prog_type_answer: FeatureTest[int] = FeatureTest(_probe_prog_type)


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
        complaints = complaint_lines(log.splitlines())
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
