"""Attaching programs to network interfaces: XDP, and tc on the clsact hooks.

XDP programs attach with a BPF link where the kernel has them (Linux 5.9,
``BPF_LINK_TYPE_XDP`` in :mod:`~pybpf.kernel.features`): ``BPF_LINK_CREATE``
with ``BPF_XDP`` and the interface's index. Elsewhere they attach through
netlink (``IFLA_XDP``), with ``XDP_FLAGS_UPDATE_IF_NOEXIST`` so that another
owner's program is never replaced, and detach with ``XDP_FLAGS_REPLACE``
naming our program, so that only ours is removed. The mode is one of

* ``"generic"`` (``XDP_FLAGS_SKB_MODE``): any interface, run after the
  kernel has made an skb;
* ``"driver"`` (``XDP_FLAGS_DRV_MODE``): in the driver's receive path, for
  drivers with native XDP (veth has it, lo does not);
* ``"offload"`` (``XDP_FLAGS_HW_MODE``): on the NIC, for a program loaded
  for that device;
* ``None``: the kernel's choice, driver mode where the driver has it.

tc programs (``sched_cls``) attach with a tcx link where the kernel has one
(Linux 6.6, ``BPF_LINK_TYPE_TCX``: ``BPF_TCX_INGRESS``/``BPF_TCX_EGRESS``),
else as a direct-action ``bpf`` filter under a ``clsact`` qdisc, which is
added when missing and removed again on detach when we added it and no
filter is left under it. Either way the program returns ``TC_ACT_*``.

Interfaces are looked up in the calling thread's network namespace. A
netlink attachment keeps its netlink socket, which stays in that namespace,
so it detaches there wherever it is closed. Every attachment is a
:class:`~pybpf.kernel.link.Link`; closing it detaches.

pyroute2 is imported here only, and only when netlink is used.

>>> with attach_xdp(prog, "eth0", mode="generic") as attached:   # doctest: +SKIP
...     ...
"""

import errno as _errno
import fcntl
import os
import socket
from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

from ..errors import BPFError, NotFoundError, ProgramTypeError, UnsupportedFeature
from . import features, objects
from . import sys as _sys
from .link import VIA_BPF_LINK, Link
from ..consts import (BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_XDP, BPF_TCX_EGRESS, BPF_TCX_INGRESS,
                      BPF_XDP, PROG_TYPES)

#: How an attachment was made when no BPF link holds it (Link.method).
VIA_NETLINK = "netlink"

# --- XDP flags (include/uapi/linux/if_link.h) ---------------------------------------------
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
XDP_MODES = {None: 0, "generic": XDP_FLAGS_SKB_MODE, "driver": XDP_FLAGS_DRV_MODE,
             "offload": XDP_FLAGS_HW_MODE}

# --- tc (include/uapi/linux/pkt_sched.h, if_ether.h) --------------------------------------
TC_H_CLSACT = 0xFFFFFFF1
# TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / TC_H_MIN_EGRESS): the clsact hooks
CLSACT_PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
TCX_ATTACH_TYPES = {"ingress": BPF_TCX_INGRESS, "egress": BPF_TCX_EGRESS}
ETH_P_ALL = 0x0003
#: The handle of our filter within its priority (libbpf's default too).
TC_FILTER_HANDLE = 1


@dataclass(frozen=True)
class Interface:
    """A network interface of the calling thread's namespace."""
    name: str
    index: int

    def __str__(self) -> str:
        return self.name


def find_interface(interface: Union[str, int]) -> Interface:
    """The interface named ``interface``, or with that index;
    :class:`NotFoundError` naming it when there is none."""
    try:
        if isinstance(interface, int):
            return Interface(socket.if_indextoname(interface), interface)
        return Interface(interface, socket.if_nametoindex(interface))
    except OSError:
        what = "index %d" % interface if isinstance(interface, int) else "named %r" % interface
        raise NotFoundError(_errno.ENODEV, "find_interface",
                            "no network interface %s in this network namespace" % what) from None


def attach_xdp(prog: Any, interface: Union[str, int], *, mode: Optional[str] = None,
               use_link: Optional[bool] = None) -> Link:
    """Attach the XDP program ``prog`` (a ``Program`` or a program fd) to
    ``interface`` (a name or an index) in ``mode`` (see the module
    docstring). ``use_link`` None uses a BPF link where the kernel has
    them; True or False forces one way.

    Raises :class:`ProgramTypeError` for a program of another type (before
    asking the kernel), :class:`NotFoundError` for a missing interface,
    :class:`UnsupportedFeature` naming the mode and the interface when its
    driver cannot run XDP that way, and :class:`BPFError` when another
    program holds the interface's XDP hook.
    """
    if mode not in XDP_MODES:
        raise ValueError("XDP mode %r: use \"generic\", \"driver\", \"offload\" or None" % mode)
    prog_fd, _name = _program(prog, BPF_PROG_TYPE_XDP, "attach_xdp")
    dev = find_interface(interface)
    target = "xdp on %s" % dev + (" (%s mode)" % mode if mode else "")
    if use_link is None:
        use_link = "BPF_LINK_TYPE_XDP" in features.probe().link_types
    flags = XDP_MODES[mode]
    if not use_link:
        return _netlink_xdp(prog_fd, dev, mode, target)
    attr = _sys.LinkCreateAttr(prog_fd=prog_fd, target_fd=dev.index, attach_type=BPF_XDP,
                               flags=flags)
    ret = _sys.bpf_errno(_sys.BPF_LINK_CREATE, attr)
    if ret < 0:
        raise _xdp_error(-ret, "BPF_LINK_CREATE", dev, mode)
    return Link(target, VIA_BPF_LINK, _sys.FD(ret))


def attach_tc(prog: Any, interface: Union[str, int], direction: str = "ingress", *,
              use_link: Optional[bool] = None, priority: int = 1) -> Link:
    """Attach the tc program ``prog`` (``sched_cls``, a ``Program`` or a
    program fd) to the ``"ingress"`` or ``"egress"`` hook of ``interface``.
    ``use_link`` None uses a tcx link where the kernel has them; True or
    False forces one way. ``priority`` places the clsact filter among
    others (tcx links append to the hook's chain).

    Raises :class:`ProgramTypeError`, :class:`NotFoundError` or
    :class:`BPFError` (a filter already at that priority) as
    :func:`attach_xdp` does.
    """
    if direction not in CLSACT_PARENTS:
        raise ValueError("tc direction %r: use \"ingress\" or \"egress\"" % direction)
    prog_fd, name = _program(prog, BPF_PROG_TYPE_SCHED_CLS, "attach_tc")
    dev = find_interface(interface)
    target = "tc %s on %s" % (direction, dev)
    if use_link is None:
        use_link = "BPF_LINK_TYPE_TCX" in features.probe().link_types
    if not use_link:
        return _clsact_filter(prog_fd, name, dev, direction, priority, target)
    attr = _sys.LinkCreateAttr(prog_fd=prog_fd, target_fd=dev.index,
                               attach_type=TCX_ATTACH_TYPES[direction])
    ret = _sys.bpf_errno(_sys.BPF_LINK_CREATE, attr)
    if ret < 0:
        raise _interface_error(-ret, "BPF_LINK_CREATE", "attaching %s" % target)
    return Link(target, VIA_BPF_LINK, _sys.FD(ret))


# --- checks and errors ----------------------------------------------------------------------

def _program(prog: Any, prog_type: int, what: str) -> Tuple[int, str]:
    """(fd, name) of ``prog`` after checking its type, so that a program of
    the wrong type gets a clear message rather than the kernel's EINVAL."""
    if isinstance(prog, int):
        info = objects.prog_info(prog)
        actual, name, fd = info.type, info.name, prog
    else:
        actual, name, fd = prog.prog_type, prog.name, prog.fileno()
    if actual != prog_type:
        raise ProgramTypeError("%s needs a %s program; %r is %s"
                               % (what, PROG_TYPES.name(prog_type), name,
                                  PROG_TYPES.name(actual)))
    return fd, name


def _interface_error(err: int, op: str, doing: str) -> BPFError:
    if err == _errno.ENODEV:
        return NotFoundError(err, op, "%s: the interface is gone" % doing)
    return _sys.error_for(err, op, "%s: %s" % (doing, os.strerror(err)))


def _xdp_error(err: int, op: str, dev: Interface, mode: Optional[str]) -> BPFError:
    if err in (_errno.EBUSY, _errno.EEXIST):
        return BPFError(err, op, "%s already has an XDP program (attached by someone else, or "
                        "in another mode); detach it first" % dev)
    if mode in ("driver", "offload") and err in (_errno.EOPNOTSUPP, _errno.EINVAL):
        why = ("its driver has no native XDP (try mode=\"generic\")" if mode == "driver" else
               "offload needs a NIC that runs BPF and a program loaded for that device")
        return UnsupportedFeature("XDP %s mode on %s" % (mode, dev), op=op, err=err, detail=why)
    return _interface_error(err, op, "attaching XDP to %s in %s mode"
                            % (dev, mode or "the default"))


# --- netlink (pyroute2) ---------------------------------------------------------------------

def _iproute() -> Any:
    """A netlink socket in the calling thread's network namespace."""
    from pyroute2 import IPRoute
    return IPRoute()


def _netlink_error() -> Any:
    from pyroute2.netlink.exceptions import NetlinkError
    return NetlinkError


def _netlink_xdp(prog_fd: int, dev: Interface, mode: Optional[str], target: str) -> Link:
    """``ip link set dev DEV xdp{generic,drv,offload} fd PROG``, never
    replacing a program already there; the Link detaches only ours."""
    NetlinkError = _netlink_error()
    flags = XDP_MODES[mode]
    ipr = _iproute()
    # Our own reference to the program, to name it as the expected one on
    # detach even after the caller has closed theirs.
    own = _sys.FD(fcntl.fcntl(prog_fd, fcntl.F_DUPFD_CLOEXEC, 0))
    try:
        ipr.link("set", index=dev.index, xdp={"attrs": [
            ("IFLA_XDP_FD", prog_fd), ("IFLA_XDP_FLAGS", flags | XDP_FLAGS_UPDATE_IF_NOEXIST)]})
    except BaseException as exc:
        own.close()
        ipr.close()
        if isinstance(exc, NetlinkError):
            raise _xdp_error(exc.code, "RTM_SETLINK (IFLA_XDP)", dev, mode) from None
        raise

    def detach() -> None:
        try:
            ipr.link("set", index=dev.index, xdp={"attrs": [
                ("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", flags | XDP_FLAGS_REPLACE),
                ("IFLA_XDP_EXPECTED_FD", own.fileno())]})
        except NetlinkError as exc:
            # EEXIST: ours is no longer the program there; ENODEV: no interface.
            if exc.code not in (_errno.EEXIST, _errno.ENODEV):
                raise _interface_error(exc.code, "RTM_SETLINK (IFLA_XDP)",
                                       "detaching XDP from %s" % dev) from None
        finally:
            own.close()
            ipr.close()

    return Link(target, VIA_NETLINK, detach=detach)


def _clsact_filter(prog_fd: int, name: str, dev: Interface, direction: str, priority: int,
                   target: str) -> Link:
    """``tc qdisc add dev DEV clsact`` (unless there is one) and ``tc filter
    add dev DEV DIRECTION prio PRIORITY handle 1 bpf da fd PROG``."""
    NetlinkError = _netlink_error()
    parent = CLSACT_PARENTS[direction]
    filter_id = dict(parent=parent, prio=priority, protocol=ETH_P_ALL)
    ipr = _iproute()
    created = False
    try:
        created = _add_clsact(ipr, dev, NetlinkError)
        ipr.tc("add-filter", "bpf", dev.index, TC_FILTER_HANDLE, fd=prog_fd,
               name=name or "pybpf", direct_action=True, **filter_id)
    except BaseException as exc:
        try:
            if created:
                ipr.tc("del", "clsact", dev.index)
        finally:
            ipr.close()
        if isinstance(exc, NetlinkError):
            raise _tc_error(exc.code, dev, direction, priority) from None
        raise

    def detach() -> None:
        try:
            try:
                ipr.tc("del-filter", "bpf", dev.index, TC_FILTER_HANDLE, **filter_id)
            except NetlinkError as exc:
                if exc.code != _errno.ENODEV:   # gone with its interface
                    raise _interface_error(exc.code, "RTM_DELTFILTER",
                                           "detaching %s" % target) from None
                return
            if created and not any(ipr.get_filters(dev.index, parent=p)
                                   for p in CLSACT_PARENTS.values()):
                ipr.tc("del", "clsact", dev.index)
        finally:
            ipr.close()

    return Link(target, VIA_NETLINK, detach=detach)


def _add_clsact(ipr: Any, dev: Interface, NetlinkError: Any) -> bool:
    """Add the clsact qdisc; False when there already is one."""
    try:
        ipr.tc("add", "clsact", dev.index)
    except NetlinkError as exc:
        if exc.code == _errno.EEXIST:
            return False
        raise
    return True


def _tc_error(err: int, dev: Interface, direction: str, priority: int) -> BPFError:
    if err == _errno.EEXIST:
        return BPFError(err, "RTM_NEWTFILTER", "the %s hook of %s already has a filter at "
                        "priority %d; pass another priority" % (direction, dev, priority))
    return _interface_error(err, "RTM_NEWTFILTER",
                            "attaching a tc filter to %s %s" % (dev, direction))
