"""Attaching programs to tracepoints and raw tracepoints, and detaching them.

A tracepoint program is attached through a perf event of type
``PERF_TYPE_TRACEPOINT`` (the tracepoint's id from tracefs as ``config``).
One event on CPU 0 is enough: the program is attached to the tracepoint,
not to a CPU, and runs on every CPU. Where the kernel has BPF links for
perf events (Linux 5.15; :mod:`~pybpf.kernel.features` finds out) the
program is attached with ``BPF_LINK_CREATE``, else with
``PERF_EVENT_IOC_SET_BPF``; either way the event is then enabled.
Raw tracepoints take ``BPF_RAW_TRACEPOINT_OPEN`` and the tracepoint's name.

Every attachment is a :class:`Link` that owns its file descriptors (or,
for what netlink attached, the way to detach); closing it detaches the
program. Network interfaces (XDP, tc) are :mod:`~pybpf.kernel.netattach`'s.
"""

import ctypes
import errno as _errno
from typing import Any, Callable, Optional

from ..errors import BPFError, NotFoundError
from .. import consts
from . import features, tracefs
from . import sys as _sys

# How a Link is attached (Link.method)
VIA_BPF_LINK = "BPF_LINK_CREATE"
VIA_IOCTL = "PERF_EVENT_IOC_SET_BPF"
VIA_RAW_TRACEPOINT = "BPF_RAW_TRACEPOINT_OPEN"


def perf_links_supported() -> bool:
    """Whether ``BPF_LINK_CREATE`` takes perf events here (the features
    probe asks the kernel once per process)."""
    return "BPF_LINK_TYPE_PERF_EVENT" in features.probe().link_types


class Link:
    """An attached program. :meth:`close` (or leaving a ``with`` block)
    detaches it; the program itself may be closed independently.

    ``target`` names what it is attached to (``"syscalls/sys_enter_openat"``),
    ``method`` how (``VIA_BPF_LINK``, ``VIA_IOCTL``, ``VIA_RAW_TRACEPOINT``,
    ``netattach.VIA_NETLINK``). ``detach`` undoes an attachment that no fd
    holds (a netlink request); it runs once, on close.
    """

    def __init__(self, target: str, method: str, link_fd: Optional[_sys.FD] = None,
                 perf_fd: Optional[_sys.FD] = None,
                 detach: Optional[Callable[[], None]] = None):
        self.target = target
        self.method = method
        self._link_fd = link_fd
        self._perf_fd = perf_fd
        self._detach = detach

    def fileno(self) -> int:
        """The BPF link's fd, or the perf event's when attached by ioctl."""
        owner = self._link_fd or self._perf_fd
        if owner is None:
            raise ValueError("link to %s is %s" % (self.target, "closed" if self.closed else
                                                   "held by netlink, not by a file descriptor"))
        return owner.fileno()

    @property
    def closed(self) -> bool:
        """Whether the link is detached and every fd it held is closed."""
        return self._link_fd is None and self._perf_fd is None and self._detach is None

    def close(self) -> None:
        """Detach: drop the BPF link, then the perf event (disabled first, so
        the program stops before the fd goes), or run ``detach``. Safe to
        call twice."""
        link_fd, self._link_fd = self._link_fd, None
        perf_fd, self._perf_fd = self._perf_fd, None
        detach, self._detach = self._detach, None
        try:
            if link_fd is not None:
                link_fd.close()
            if detach is not None:
                detach()
        finally:
            if perf_fd is not None:
                try:
                    _sys.ioctl(perf_fd.fileno(), _sys.PERF_EVENT_IOC_DISABLE, 0,
                               "PERF_EVENT_IOC_DISABLE")
                finally:
                    perf_fd.close()

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        owner = self._link_fd or self._perf_fd
        state = "closed" if self.closed else "fd %d" % owner.fileno() if owner else "attached"
        return "<Link %s via %s, %s>" % (self.target, self.method, state)


def _prog_fd(prog: Any) -> int:
    return prog if isinstance(prog, int) else prog.fileno()


def attach_tracepoint(prog: Any, tracepoint: str, *, use_link: Optional[bool] = None,
                      tracefs_root: Optional[str] = None) -> Link:
    """Attach ``prog`` (a ``Program``, or a program fd) to ``tracepoint``
    (``"category/name"``).

    ``use_link`` None uses a BPF link when :func:`perf_links_supported`,
    else the ioctl; True or False forces one way. A missing tracepoint or
    tracefs raises :class:`NotFoundError` naming it.
    """
    category, name = tracefs.split_name(tracepoint)
    target = "%s/%s" % (category, name)
    tp_id = tracefs.tracepoint_id(category, name, tracefs_root)
    if use_link is None:
        use_link = perf_links_supported()
    elif use_link and not perf_links_supported():
        answer = features.probe().answer("BPF_LINK_TYPE_PERF_EVENT")
        features.raise_unless_present(
            "BPF_LINK_TYPE_PERF_EVENT", features.Answer(
                answer.state, "tracepoint %s cannot be attached with a BPF link (%s); "
                "use_link=None attaches with PERF_EVENT_IOC_SET_BPF instead"
                % (target, answer.detail)), op="BPF_LINK_CREATE")
    attr = _sys.PerfEventAttr(type=_sys.PERF_TYPE_TRACEPOINT, config=tp_id,
                              sample_period=1, wakeup_events=1)
    try:
        perf_fd = _sys.perf_event_open(attr, pid=-1, cpu=0)
    except BPFError as exc:
        raise _sys.error_for(exc.errno, "perf_event_open",
                             "tracepoint %s (id %d): %s" % (target, tp_id, exc.message)) from None
    link_fd = None
    try:
        if use_link:
            attr = _sys.LinkCreateAttr(prog_fd=_prog_fd(prog), target_fd=perf_fd.fileno(),
                                       attach_type=consts.BPF_PERF_EVENT)
            try:
                link_fd = _sys.bpf_fd(_sys.BPF_LINK_CREATE, attr)
            except BPFError as exc:
                raise _sys.error_for(exc.errno, "BPF_LINK_CREATE",
                                     "tracepoint %s: %s" % (target, exc.message)) from None
        else:
            _sys.ioctl(perf_fd.fileno(), _sys.PERF_EVENT_IOC_SET_BPF, _prog_fd(prog),
                       "PERF_EVENT_IOC_SET_BPF on tracepoint %s" % target)
        _sys.ioctl(perf_fd.fileno(), _sys.PERF_EVENT_IOC_ENABLE, 0,
                   "PERF_EVENT_IOC_ENABLE on tracepoint %s" % target)
    except BaseException:
        if link_fd is not None:
            link_fd.close()
        perf_fd.close()
        raise
    return Link(target, VIA_BPF_LINK if use_link else VIA_IOCTL, link_fd, perf_fd)


def attach_raw_tracepoint(prog: Any, name: str) -> Link:
    """Attach a ``BPF_PROG_TYPE_RAW_TRACEPOINT`` program to the raw
    tracepoint ``name`` (``"sys_enter"``, no category). Its context is the
    tracepoint's arguments as ``u64 args[]``."""
    encoded = ctypes.create_string_buffer(name.encode())
    attr = _sys.RawTracepointAttr(name=ctypes.addressof(encoded), prog_fd=_prog_fd(prog))
    try:
        link_fd = _sys.bpf_fd(_sys.BPF_RAW_TRACEPOINT_OPEN, attr)
    except BPFError as exc:
        if exc.errno == _errno.ENOENT:
            raise NotFoundError(exc.errno, "BPF_RAW_TRACEPOINT_OPEN",
                                "raw tracepoint %r does not exist" % name) from None
        raise _sys.error_for(exc.errno, "BPF_RAW_TRACEPOINT_OPEN",
                             "raw tracepoint %r: %s" % (name, exc.message)) from None
    return Link(name, VIA_RAW_TRACEPOINT, link_fd)
