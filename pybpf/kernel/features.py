"""What the running kernel supports, found by asking it, never by reading
its version number.

Each probe is a tiny request the kernel either grants or refuses: create a
map of each type with minimal valid parameters, load ``r0 = 0; exit`` as each
program type, load a call of a helper and read the verifier's complaint, and
so on. A refusal is one of two answers (:class:`Answer`): the kernel does not
know the thing (:data:`ABSENT`), or knows it and refuses it to this process
(:data:`REFUSED`: EPERM/EACCES from a capability check, an LSM, lockdown). One
VM build of the same kernel answered EPERM for ARENA maps where another said
EINVAL, so callers must handle all three. Kernels are patched and configured
in too many ways for a version to say which of these work (a distribution's
5.14 may have 6.1's ring buffer; a 6.18 may refuse TRACING programs, as this
project's test VM does).

Everything made to ask is closed at once: probing leaves no object behind.
The tests that other modules ask when the kernel refuses them live with
those modules, lazily run and cached (:mod:`.feature_test`): a map type in
:mod:`.map_spec`, a program type in :mod:`.prog`; this module builds on
them. :func:`probe` runs all eager probes once per process (a few
milliseconds) and caches the answer; :meth:`Features.has_helper` probes other helpers lazily,
one cached load each. This module is not for policy: callers decide what to
do without a feature, typically ``features.require("ringbuf")`` or falling
back to the perf buffer.

>>> f = probe()                                           # doctest: +SKIP
>>> f.ringbuf, "BPF_PROG_TYPE_XDP" in f.prog_types        # doctest: +SKIP
(True, True)
>>> f.require("BPF_LINK_TYPE_NETKIT")                     # doctest: +SKIP
Traceback (most recent call last):
UnsupportedFeature: feature probe failed (EINVAL): this kernel does not support ...
>>> f.answer("BPF_MAP_TYPE_ARENA")                        # doctest: +SKIP
Answer(state='refused', detail='EPERM')
"""

import ctypes
import errno as _errno
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple, Union

from .. import isa
from ..asm import helper_id
from ..errors import FeatureRefused, UnsupportedFeature
from .. import consts
from ..consts import (ATTACH_TYPES, LINK_TYPES, MAP_TYPES, PROG_TYPES, BPF_CGROUP_INET_INGRESS,
                      BPF_NETKIT_PRIMARY, BPF_PERF_EVENT, BPF_SK_LOOKUP, BPF_TCX_INGRESS, BPF_XDP)
from . import sys as _sys
from .btf_writer import BTFBuilder
# The answers, re-exported: callers read them as features.ABSENT, features.Answer...
from .feature_test import (ABSENT, PRESENT, REFUSED, STATES, YES, Answer, load_btf,  # noqa: F401
                           minimal_btf)
from .map_spec import MAP_TYPE_SINCE, PROBE_PARAMS, map_type_answer
from .prog import (ENABLE_STATS_SINCE, PROG_TYPE_SINCE, probe_load,  # noqa: F401
                   prog_type_answer)
from .sys import FD

# First mainline release with each feature, for UnsupportedFeature messages.
SINCE: Dict[str, str] = {
    "btf": "4.18", "btf_enum64": "6.0", "enable_stats": ENABLE_STATS_SINCE, "bounded_loops": "5.3",
    "ringbuf": "5.8",
    "bpf_loop": "5.17", "bpf_probe_read_kernel": "5.5", "atomic_fetch": "5.12", "cpu_v4": "6.6",
    "BPF_LINK_TYPE_CGROUP": "5.7", "BPF_LINK_TYPE_RAW_TRACEPOINT": "5.8",
    "BPF_LINK_TYPE_NETNS": "5.8", "BPF_LINK_TYPE_XDP": "5.9", "BPF_LINK_TYPE_PERF_EVENT": "5.15",
    "BPF_LINK_TYPE_TCX": "6.6", "BPF_LINK_TYPE_NETKIT": "6.7",
}
SINCE.update((PROG_TYPES.name(value), since) for value, since in PROG_TYPE_SINCE.items())
SINCE.update((MAP_TYPES.name(value), since) for value, since in MAP_TYPE_SINCE.items())

_GROUPS = ("map_types", "prog_types", "link_types", "other")


# --- BTF ----------------------------------------------------------------------------------

def _enum64_btf() -> bytes:
    """BTF with the enum kinds of Linux 6.0: a signed enum (``kind_flag``
    set) and a ``BTF_KIND_ENUM64``; older kernels refuse both ("Invalid
    btf_info kind_flag", "Invalid kind")."""
    builder = BTFBuilder()
    builder.enum("delta", {"DOWN": -1}, size=1)
    builder.enum("big", {"HUGE": 1 << 40}, size=8)
    return builder.encode()


# --- links --------------------------------------------------------------------------------
# BPF_LINK_CREATE checks the program, then dispatches on its type to the code
# that finds the attach target. A kernel without that kind of link refuses at
# the dispatch with EINVAL; one that has it goes on to look up the target we
# give, which is deliberately wrong, and fails there with a different errno.
# Nothing is attached:
#   perf_event  target_fd -1 -> EBADF (perf_event_get)        (libbpf's probe_perf_link)
#   cgroup      target_fd -1 -> EBADF (cgroup_get_from_fd)
#   netns       target_fd -1 -> EBADF (get_net_ns_by_fd)
#   tcx/netkit  ifindex 0    -> ENODEV (__dev_get_by_index)
#   xdp         lo in XDP_FLAGS_HW_MODE -> EOPNOTSUPP (lo has no driver XDP); an
#               unknown ifindex would say EINVAL, like a kernel without XDP links
# raw_tracepoint links come from BPF_RAW_TRACEPOINT_OPEN, not LINK_CREATE, and
# since Linux 5.8 its fd is a link: we attach to bpf_test_finish (fires only in
# BPF_PROG_TEST_RUN), ask BPF_OBJ_GET_INFO_BY_FD for link info, and detach.

XDP_FLAGS_HW_MODE = 1 << 3
_BAD_FD = 0xFFFFFFFF


@dataclass(frozen=True)
class _LinkProbe:
    prog_type: int
    attach_type: int
    target: Union[int, Callable[[], int]]
    supported_errno: int
    flags: int = 0


_LINK_PROBES: Dict[str, _LinkProbe] = {
    "PERF_EVENT": _LinkProbe(consts.BPF_PROG_TYPE_TRACEPOINT, BPF_PERF_EVENT, _BAD_FD,
                             _errno.EBADF),
    "CGROUP": _LinkProbe(consts.BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS, _BAD_FD,
                         _errno.EBADF),
    "NETNS": _LinkProbe(consts.BPF_PROG_TYPE_SK_LOOKUP, BPF_SK_LOOKUP, _BAD_FD, _errno.EBADF),
    "XDP": _LinkProbe(consts.BPF_PROG_TYPE_XDP, BPF_XDP, lambda: socket.if_nametoindex("lo"),
                      _errno.EOPNOTSUPP, XDP_FLAGS_HW_MODE),
    "TCX": _LinkProbe(consts.BPF_PROG_TYPE_SCHED_CLS, BPF_TCX_INGRESS, 0, _errno.ENODEV),
    "NETKIT": _LinkProbe(consts.BPF_PROG_TYPE_SCHED_CLS, BPF_NETKIT_PRIMARY, 0, _errno.ENODEV),
}


def _probe_link(probe: _LinkProbe) -> Answer:
    ret, log = probe_load(probe.prog_type)
    if ret < 0:
        return Answer.from_errno(-ret, log, "cannot load a %s program"
                                 % PROG_TYPES.short(probe.prog_type))
    with FD(ret) as prog_fd:
        target = probe.target() if callable(probe.target) else probe.target
        attr = _sys.LinkCreateAttr(prog_fd=prog_fd.fileno(), target_fd=target,
                                   attach_type=probe.attach_type, flags=probe.flags)
        ret = _sys.bpf_errno(_sys.BPF_LINK_CREATE, attr)
    if ret >= 0:  # never expected with these targets, but then it surely works
        FD(ret).close()
        return YES
    if -ret == probe.supported_errno:
        return YES
    return Answer.from_errno(-ret, context="BPF_LINK_CREATE with %s"
                             % ATTACH_TYPES.name(probe.attach_type))


def _probe_raw_tracepoint_link() -> Answer:
    ret, log = probe_load(consts.BPF_PROG_TYPE_RAW_TRACEPOINT)
    if ret < 0:
        return Answer.from_errno(-ret, log, "cannot load a raw_tracepoint program")
    name = ctypes.create_string_buffer(b"bpf_test_finish")
    with FD(ret) as prog_fd:
        attr = _sys.RawTracepointAttr(name=_sys.address(name), prog_fd=prog_fd.fileno())
        ret = _sys.bpf_errno(_sys.BPF_RAW_TRACEPOINT_OPEN, attr)
    if ret < 0:
        return Answer.from_errno(-ret, context="BPF_RAW_TRACEPOINT_OPEN(bpf_test_finish)")
    with FD(ret) as link_fd:
        info = _sys.BPFLinkInfo()
        attr = _sys.InfoAttr(bpf_fd=link_fd.fileno(), info_len=ctypes.sizeof(info),
                             info=_sys.address(info))
        ret = _sys.bpf_errno(_sys.BPF_OBJ_GET_INFO_BY_FD, attr)
    if ret < 0:
        return Answer.from_errno(-ret, context="the raw tracepoint fd is not a link")
    return YES


# --- helpers ------------------------------------------------------------------------------
# The verifier checks that a helper exists, and that this program type may call
# it, before it looks at any argument, so "call <id>; exit" is enough: its
# complaint then is "invalid func" / "unknown func" (no such helper) or
# "program of this type cannot use helper"; any other complaint (bad arguments)
# means the call itself was accepted. This is libbpf's probe too.

_NO_HELPER = ("invalid func ", "unknown func ", "cannot use helper")


def _probe_helper(prog_type: int, helper: int) -> Answer:
    code = isa.encode([isa.call_helper(helper), isa.exit_()])
    ret, log = probe_load(prog_type, code)
    if ret >= 0:
        FD(ret).close()
        return YES
    if not log.strip():
        return Answer.from_errno(-ret, context="cannot load a %s program"
                                 % PROG_TYPES.short(prog_type))
    if any(words in log for words in _NO_HELPER):
        return Answer.from_errno(-ret, log)
    return YES


# --- the rest -----------------------------------------------------------------------------

def _probe_enable_stats() -> Answer:
    attr = _sys.EnableStatsAttr(type=_sys.BPF_STATS_RUN_TIME)
    ret = _sys.bpf_errno(_sys.BPF_ENABLE_STATS, attr)
    if ret < 0:
        return Answer.from_errno(-ret)
    FD(ret).close()
    return YES


def _verifier_accepts(code: bytes) -> Answer:
    """Whether the verifier takes ``code`` as a socket filter (the program
    type every kernel has): instruction-set probes differ only in code."""
    ret, log = probe_load(consts.BPF_PROG_TYPE_SOCKET_FILTER, code)
    if ret < 0:
        return Answer.from_errno(-ret, log)
    FD(ret).close()
    return YES


def _probe_atomic_fetch() -> Answer:
    """``BPF_ATOMIC | BPF_FETCH`` (atomic_fetch_add and friends, xchg, cmpxchg):
    older verifiers refuse it with "BPF_STX uses reserved fields"."""
    code = isa.encode([isa.mov(isa.R1, 0), isa.stx(8, isa.R10, -8, isa.R1),
                       isa.mov(isa.R1, 1),
                       isa.atomic(8, isa.BPF_ADD | isa.BPF_FETCH, isa.R10, -8, isa.R1),
                       isa.mov(isa.R0, 0), isa.exit_()])
    return _verifier_accepts(code)


def _probe_cpu_v4() -> Answer:
    """The instructions of cpu v4 (sdiv/smod, movsx, ldsx, bswap, gotol);
    older verifiers refuse ``r0 s/= 2`` with "BPF_ALU uses reserved fields"."""
    code = isa.encode([isa.mov(isa.R0, 7), isa.alu(isa.BPF_DIV, isa.R0, 2, off=1),
                       isa.exit_()])
    return _verifier_accepts(code)


def _probe_bounded_loops() -> Answer:
    """A loop the verifier can prove ends (kernels before 5.3 refuse any
    back-edge: "back-edge from insn 2 to 1")."""
    code = isa.encode([isa.mov(isa.R0, 0),
                       isa.alu(isa.BPF_ADD, isa.R0, 1),
                       isa.jump(isa.BPF_JLT, isa.R0, 4, -2),
                       isa.exit_()])
    return _verifier_accepts(code)


# --- the answer ---------------------------------------------------------------------------

class Features:
    """The answers of one probe of the running kernel.

    Feature names are the kernel's for types (``BPF_MAP_TYPE_RINGBUF``,
    ``BPF_PROG_TYPE_XDP``, ``BPF_LINK_TYPE_TCX``) and these for the rest:
    ``btf``, ``enable_stats``, ``bounded_loops``, ``ringbuf`` (the map and
    ``bpf_ringbuf_output`` from tracepoints), ``bpf_loop`` and
    ``bpf_probe_read_kernel`` (callable from tracepoint programs).
    """

    def __init__(self, groups: Dict[str, Dict[str, Answer]], probe_seconds: float):
        self._groups = groups
        self._answers: Dict[str, Answer] = {}
        for answers in groups.values():
            self._answers.update(answers)
        self.probe_seconds = probe_seconds

    def _available(self, group: str) -> FrozenSet[str]:
        return frozenset(name for name, answer in self._groups[group].items() if answer.available)

    @property
    def map_types(self) -> FrozenSet[str]:
        """The ``BPF_MAP_TYPE_*`` names this kernel creates for us."""
        return self._available("map_types")

    @property
    def prog_types(self) -> FrozenSet[str]:
        """The ``BPF_PROG_TYPE_*`` names this kernel loads for us."""
        return self._available("prog_types")

    @property
    def link_types(self) -> FrozenSet[str]:
        """The ``BPF_LINK_TYPE_*`` names this kernel creates for us."""
        return self._available("link_types")

    btf = property(lambda self: self._answers["btf"].available)
    btf_enum64 = property(lambda self: self._answers["btf_enum64"].available)
    enable_stats = property(lambda self: self._answers["enable_stats"].available)
    bounded_loops = property(lambda self: self._answers["bounded_loops"].available)
    atomic_fetch = property(lambda self: self._answers["atomic_fetch"].available)
    cpu_v4 = property(lambda self: self._answers["cpu_v4"].available)
    ringbuf = property(lambda self: self._answers["ringbuf"].available)
    bpf_loop = property(lambda self: self._answers["bpf_loop"].available)
    bpf_probe_read_kernel = property(lambda self: self._answers["bpf_probe_read_kernel"].available)

    def answer(self, name: str) -> Answer:
        """The answer for one feature; ``KeyError`` for a name never probed."""
        return self._answers[name]

    def require(self, name: str) -> None:
        """Return if ``name`` is available; else raise ``UnsupportedFeature``
        (absent: with the version that added it and the kernel's words) or
        ``FeatureRefused`` (the kernel has it and refuses it to us)."""
        raise_unless_present(name, self.answer(name))

    def assuming(self, answers: Dict[str, Answer]) -> "Features":
        """A copy with some answers replaced: how a caller's handling of each
        answer is tested on a kernel that gives only one of them."""
        groups = {group: {name: answers.get(name, answer) for name, answer in found.items()}
                  for group, found in self._groups.items()}
        unknown = set(answers) - set(self._answers)
        if unknown:
            raise KeyError("never probed: %s" % ", ".join(sorted(unknown)))
        return Features(groups, self.probe_seconds)

    @staticmethod
    def has_helper(prog_type: int, helper: Union[str, int]) -> bool:
        """Whether programs of ``prog_type`` may call ``helper`` (a name, with
        or without ``bpf_``, or an id); probed on first use, then cached."""
        return _helper_answer(prog_type, helper_id(helper)).available

    @staticmethod
    def require_helper(prog_type: int, helper: Union[str, int]) -> None:
        """Return if programs of ``prog_type`` may call ``helper``; else raise
        as :meth:`require` does."""
        raise_unless_present("helper %s in %s programs" % (helper, PROG_TYPES.name(prog_type)),
                             _helper_answer(prog_type, helper_id(helper)))

    def as_dict(self) -> Dict[str, object]:
        """For ``pybpf features --json``."""
        return {"probe_ms": round(self.probe_seconds * 1000, 3),
                **{group: {name: {"available": a.available, "state": a.state,
                                  "detail": a.detail}
                           for name, a in answers.items()}
                   for group, answers in self._groups.items()}}

    def as_table(self) -> str:
        """For ``pybpf features``: one line per feature, grouped."""
        lines: List[str] = []
        width = max(len(name) for name in self._answers)
        for group in _GROUPS:
            lines.append("%s:" % group.replace("_", " "))
            for name, answer in self._groups[group].items():
                verdict = _VERDICTS[answer.state]
                detail = "  (%s)" % answer.detail if answer.detail else ""
                lines.append("  %-*s  %s%s" % (width, name, verdict, detail))
        lines.append("probed in %.1f ms" % (self.probe_seconds * 1000))
        return "\n".join(lines)


_VERDICTS = {PRESENT: "yes", ABSENT: "no", REFUSED: "refused"}


def raise_unless_present(name: str, answer: Answer, op: str = "feature probe") -> None:
    """The one place an answer becomes an exception: ``UnsupportedFeature``
    for :data:`ABSENT`, ``FeatureRefused`` for :data:`REFUSED`."""
    if answer.state == ABSENT:
        raise UnsupportedFeature(name, SINCE.get(name), op=op, detail=answer.detail)
    if answer.state == REFUSED:
        raise FeatureRefused(name, op=op, detail=answer.detail)


# --- caches (per process) -----------------------------------------------------------------

_lock = threading.Lock()
_features: Optional[Features] = None
_helpers: Dict[Tuple[int, int], Answer] = {}

_EAGER_HELPERS = {"bpf_loop": "bpf_loop", "bpf_probe_read_kernel": "bpf_probe_read_kernel"}


def _helper_answer(prog_type: int, helper: int) -> Answer:
    with _lock:
        key = (prog_type, helper)
        if key not in _helpers:
            _helpers[key] = _probe_helper(prog_type, helper)
        return _helpers[key]


def probe(*, refresh: bool = False) -> Features:
    """Probe the kernel (once per process) and return the answers;
    ``refresh`` forgets every cached answer and asks again."""
    global _features
    if refresh:
        with _lock:
            _features = None
            _helpers.clear()
        prog_type_answer.forget()
        map_type_answer.forget()
    if _features is not None:
        return _features
    started = time.perf_counter()
    tracepoint = consts.BPF_PROG_TYPE_TRACEPOINT
    groups: Dict[str, Dict[str, Answer]] = {group: {} for group in _GROUPS}
    btf_fd, groups["other"]["btf"] = load_btf(minimal_btf())
    enum64_fd, groups["other"]["btf_enum64"] = load_btf(_enum64_btf())
    if enum64_fd is not None:
        enum64_fd.close()
    if btf_fd is not None:
        btf_fd.close()
    for short in PROBE_PARAMS:
        value = MAP_TYPES.value(short)
        groups["map_types"][MAP_TYPES.name(value)] = map_type_answer(value)
    for value, name in PROG_TYPES.items():
        if value != consts.BPF_PROG_TYPE_UNSPEC:
            groups["prog_types"][name] = prog_type_answer(value)
    for short, link_probe in _LINK_PROBES.items():
        groups["link_types"][LINK_TYPES.name(LINK_TYPES.value(short))] = _probe_link(link_probe)
    groups["link_types"]["BPF_LINK_TYPE_RAW_TRACEPOINT"] = _probe_raw_tracepoint_link()
    other = groups["other"]
    other["enable_stats"] = _probe_enable_stats()
    other["bounded_loops"] = _probe_bounded_loops()
    other["atomic_fetch"] = _probe_atomic_fetch()
    other["cpu_v4"] = _probe_cpu_v4()
    ringbuf_map = groups["map_types"]["BPF_MAP_TYPE_RINGBUF"]
    ringbuf_call = _helper_answer(tracepoint, helper_id("bpf_ringbuf_output"))
    other["ringbuf"] = ringbuf_map if not ringbuf_map.available else ringbuf_call
    for feature, helper in _EAGER_HELPERS.items():
        other[feature] = _helper_answer(tracepoint, helper_id(helper))
    features = Features(groups, time.perf_counter() - started)
    with _lock:
        if _features is None:
            _features = features
        return _features
