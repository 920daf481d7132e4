"""The one exception hierarchy of pybpf.

Two families hang off :class:`PyBPFError`:

* mistakes found before the kernel is asked (bad bytes, bad assembly, bad DSL),
  which are also ``ValueError``;
* failures reported by the kernel (:class:`BPFError` and children), which are
  also ``OSError`` and keep ``errno``, the operation that failed and a hint a
  user can act on.

CLIs print ``str(exc)`` as one line and exit non-zero; nothing here needs a
traceback to be understood.
"""

import errno as _errno
import os
from typing import List, Optional, Sequence, Tuple


class PyBPFError(Exception):
    """Root of every error pybpf raises on purpose."""


# --- before the kernel --------------------------------------------------------


class UnsafePath(PyBPFError, PermissionError):
    """A path another user could redirect or write, refused before use: a
    cache directory that is not private, a symlink planted by someone else,
    an output file that is not ours (see :mod:`pybpf.safe_files`)."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(_errno.EPERM, "refused as unsafe: %s" % reason, path)


class DecodeError(PyBPFError, ValueError):
    """Bytes that are not valid eBPF bytecode."""

    def __init__(self, offset: int, data: bytes, problem: str):
        self.offset = offset
        self.data = bytes(data)
        self.problem = problem
        super().__init__("byte offset %d (instruction slot %d): %s [bytes: %s]"
                         % (offset, offset // 8, problem, self.data.hex(" ") or "none"))


class EncodeError(PyBPFError, ValueError):
    """An instruction whose fields do not fit the encoding."""


class SourceLocation(Tuple[str, int]):
    """(file, line) of the Python or assembly source that emitted something."""

    __slots__ = ()

    def __new__(cls, filename: str, line: int):
        return tuple.__new__(cls, (filename, line))

    @property
    def filename(self) -> str:
        """The source file, as Python names it."""
        return self[0]

    @property
    def line(self) -> int:
        """The line number in :attr:`filename`, from 1."""
        return self[1]

    def __str__(self) -> str:
        return "%s:%d" % self


class AssemblyError(PyBPFError, ValueError):
    """Bad assembly: unknown label, jump out of range, bad register or immediate.

    ``location`` names the source line (assembly text or Python) at fault.
    """

    def __init__(self, message: str, location: Optional[SourceLocation] = None,
                 text: Optional[str] = None):
        self.message = message
        self.location = location
        self.text = text
        where = "%s: " % (location,) if location else ""
        shown = " (in %r)" % text.strip() if text else ""
        super().__init__("%s%s%s" % (where, message, shown))


class ProgramTypeError(PyBPFError, ValueError):
    """A program handed to what cannot take its type (a tracepoint program
    to ``attach_xdp``), found before the kernel is asked."""


class ProgramBuildError(AssemblyError):
    """A mistake in a DSL program found at build time (type mismatch, unknown
    field, unchecked nullable pointer, stack overflow)."""


# --- from the kernel ----------------------------------------------------------

# The kernel-internal "operation not supported" (include/linux/errno.h) that
# some bpf commands leak to userspace; os.strerror and errno.errorcode do not
# know it.
ENOTSUPP = 524


def errno_name(err: int) -> str:
    """``"EINVAL"`` for 22, ``"ENOTSUPP"`` for 524, the number for the unknown."""
    if err == ENOTSUPP:
        return "ENOTSUPP"
    return _errno.errorcode.get(err, str(err))


def strerror(err: int) -> str:
    """``os.strerror``, knowing ENOTSUPP too."""
    if err == ENOTSUPP:
        return "Operation not supported (ENOTSUPP)"
    return os.strerror(err)


_POLICY_HINT = ("it has the feature, so privileges or a policy stand in the way: run as root "
                "with CAP_SYS_ADMIN, or look for an LSM (SELinux, AppArmor, BPF LSM), kernel "
                "lockdown or a sysctl (kernel.unprivileged_bpf_disabled) that denies it")
PRIVILEGE_HINT = ("run as root, or grant CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels "
                   "before 5.8); also check kernel.unprivileged_bpf_disabled and "
                   "kernel.perf_event_paranoid")


class BPFError(PyBPFError, OSError):
    """A kernel call failed. ``op`` names the call (``BPF_MAP_CREATE``,
    ``perf_event_open``), ``errno`` is the kernel's answer."""

    def __init__(self, err: int, op: str, message: str = ""):
        self.op = op
        self.message = message or strerror(err)
        OSError.__init__(self, err, "%s: %s" % (op, self.message))

    def __str__(self) -> str:
        return "%s failed (%s): %s" % (self.op, errno_name(self.errno), self.message)

    def __reduce__(self):
        return (type(self)._rebuild, (self.__dict__.copy(), self.errno, self.op, self.message))

    @classmethod
    def _rebuild(cls, state, err, op, message):
        obj = BPFError.__new__(cls)
        BPFError.__init__(obj, err, op, message)
        obj.__dict__.update(state)
        return obj


class BPFPermissionError(BPFError, PermissionError):
    """EPERM/EACCES from a call that needs privileges."""

    def __init__(self, err: int, op: str, message: str = ""):
        super().__init__(err, op, message or "%s; %s" % (strerror(err), PRIVILEGE_HINT))


class UnsupportedFeature(BPFError):
    """The running kernel lacks something we need.

    ``feature`` names it (``BPF_MAP_TYPE_RINGBUF``); ``since`` is the first
    kernel version that has it, when known.
    """

    def __init__(self, feature: str, since: Optional[str] = None, op: str = "feature probe",
                 err: int = _errno.EINVAL, detail: str = ""):
        self.feature = feature
        self.since = since
        hint = "this kernel does not support %s" % feature
        if since:
            hint += " (added in Linux %s)" % since
        if detail:
            hint += ": %s" % detail
        super().__init__(err, op, hint)


class FeatureRefused(BPFPermissionError):
    """The running kernel knows ``feature`` but refuses it to this process
    (EPERM/EACCES before anything was checked): privileges or a policy (an
    LSM, lockdown, a sysctl), not the kernel's age, stand in the way."""

    def __init__(self, feature: str, op: str = "feature probe", err: int = _errno.EPERM,
                 detail: str = ""):
        self.feature = feature
        message = "this kernel refuses %s to this process" % feature
        if detail:
            message += " (%s)" % detail
        super().__init__(err, op, "%s; %s" % (message, _POLICY_HINT))


class MapFullError(BPFError):
    """An update failed because the map holds ``max_entries`` entries (E2BIG)."""

    def __init__(self, map_name: str, max_entries: int, op: str = "BPF_MAP_UPDATE_ELEM"):
        self.map_name = map_name
        self.max_entries = max_entries
        super().__init__(_errno.E2BIG, op,
                         "map %r is full (max_entries=%d): delete entries or create it larger"
                         % (map_name, max_entries))


class NotFoundError(BPFError):
    """A named kernel object (tracepoint, pinned path, id) does not exist."""


class VerifierError(BPFError):
    """The verifier rejected a program.

    ``log`` is the whole verifier log; ``insn_index`` the logical index of the
    instruction it stopped at (or None) and ``insn_slot`` its 8-byte slot, the
    number the log itself uses (they differ after an ld_imm64);
    ``source_lines`` the source locations that instruction came from, from the
    assembler's line table.
    """

    def __init__(self, err: int, program_name: str, log: str, insn_index: Optional[int],
                 source_lines: Sequence[SourceLocation] = (), source_text: Sequence[str] = (),
                 reason: str = "", insn_slot: Optional[int] = None):
        self.program_name = program_name
        self.log = log
        self.insn_index = insn_index
        self.insn_slot = insn_slot
        self.source_lines: List[SourceLocation] = list(source_lines)
        self.source_text: List[str] = list(source_text)
        reason = reason or last_log_message(log) or strerror(err)
        where = ""
        if insn_index is not None:
            where = " at instruction %d" % insn_index
            if insn_slot is not None and insn_slot != insn_index:
                where += " (slot %d in the log)" % insn_slot
        if self.source_lines:
            where += " (%s)" % ", ".join(str(loc) for loc in self.source_lines)
        super().__init__(err, "BPF_PROG_LOAD",
                         "verifier rejected program %r%s: %s" % (program_name, where, reason))


def last_log_message(log: str) -> str:
    """The verifier's closing complaint: the last line that is neither a
    statistic nor a dump of register state."""
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if line and not line.startswith(("processed ", "verification time", "stack depth",
                                          "max_states_per_insn", "mark_precise",
                                          "cur state:", "old state:")):
            return line
    return ""
