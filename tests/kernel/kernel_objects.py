"""Leak checks for kernel tests: which BPF objects and fds a test left behind.

Use from any test in ``tests/kernel`` (pytest puts this directory on
``sys.path``)::

    from kernel_objects import snapshot, assert_no_new_objects, open_fds, assert_no_new_fds

    before, fds = snapshot(), open_fds()
    ...                       # create, use and close programs, maps, links
    assert_no_new_objects(before)
    assert_no_new_fds(fds)

The kernel frees a closed object asynchronously (after an RCU grace period,
sometimes a workqueue), so ``assert_no_new_objects`` polls for a while
before it complains. Other processes on the machine (another test run, a
daemon) may create objects at the same time: new objects that another
process holds open, or that hang off one it holds (a program's maps, a
link's program), are not ours and are not reported. Programs held only by a
perf event fd of another process cannot be attributed and would be reported.
"""

import ctypes
import os
import re
import time
from dataclasses import dataclass
from typing import Dict, FrozenSet, Set

from pybpf.kernel import objects, sys
from pybpf import consts

KINDS = {"progs": objects.PROGS, "maps": objects.MAPS, "links": objects.LINKS,
         "btfs": objects.BTFS}


@dataclass(frozen=True)
class Snapshot:
    """The ids of every program, map, link and BTF object at one moment."""
    progs: FrozenSet[int]
    maps: FrozenSet[int]
    links: FrozenSet[int]
    btfs: FrozenSet[int]


def snapshot() -> Snapshot:
    return Snapshot(**{name: frozenset(kind.ids()) for name, kind in KINDS.items()})


_FDINFO_ID = re.compile(r"^(prog|map|link|btf)_id:\s*(\d+)$", re.M)


def held_by_other_processes() -> Dict[str, Set[int]]:
    """Ids that another process holds an fd to (from ``/proc/*/fdinfo``),
    plus the maps of those programs and the BTF of those programs and maps."""
    held: Dict[str, Set[int]] = {name: set() for name in KINDS}
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            fdinfo = "/proc/%s/fdinfo" % pid
            for fd in os.listdir(fdinfo):
                with open(os.path.join(fdinfo, fd)) as f:
                    for kind, object_id in _FDINFO_ID.findall(f.read()):
                        held[kind + "s"].add(int(object_id))
        except OSError:   # the process or fd went away, or is not ours to read
            continue
    for prog_id in list(held["progs"]):
        _add_dependencies(objects.PROGS, prog_id, held)
    for map_id in list(held["maps"]):
        _add_dependencies(objects.MAPS, map_id, held)
    return held


def _add_dependencies(kind: objects.ObjectKind, object_id: int, held: Dict[str, Set[int]]) -> None:
    try:
        info = kind.info_by_id(object_id)
    except OSError:
        return
    held["maps"].update(getattr(info, "map_ids", ()))
    if info.btf_id:
        held["btfs"].add(info.btf_id)


def new_objects(before: Snapshot) -> Dict[str, Set[int]]:
    """Ids present now and not in ``before`` that no other process explains."""
    now = snapshot()
    fresh = {name: set(getattr(now, name)) - getattr(before, name) for name in KINDS}
    if any(fresh.values()):
        others = held_by_other_processes()
        fresh = {name: ids - others[name] for name, ids in fresh.items()}
    return {name: ids for name, ids in fresh.items() if ids}


def assert_no_new_objects(before: Snapshot, timeout: float = 2.0) -> None:
    """Fail if objects created since ``before`` are still alive after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        left = new_objects(before)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, "BPF objects leaked (still in the kernel after %.1fs): %s" % (
        timeout, ", ".join("%s %s" % (name, sorted(ids)) for name, ids in sorted(left.items())))


def wait_gone(kind: objects.ObjectKind, ids, timeout: float = 2.0) -> Set[int]:
    """Poll until none of ``ids`` of ``kind`` exists; return those still there."""
    deadline = time.monotonic() + timeout
    while True:
        left = set(ids) & set(kind.ids())
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def open_fds() -> FrozenSet[int]:
    """This process's open fd numbers."""
    return frozenset(int(fd) for fd in os.listdir("/proc/self/fd"))


def assert_no_new_fds(before: FrozenSet[int]) -> None:
    # listdir's own directory fd is closed again before we look at the result.
    leaked = open_fds() - before
    assert not leaked, "file descriptors leaked: %s" % ", ".join(
        "%d -> %s" % (fd, _readlink("/proc/self/fd/%d" % fd)) for fd in sorted(leaked))


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


# --- a program to have one (prog.py is the real loader) --------------------------------------

def load_trivial_program(prog_type: int = consts.BPF_PROG_TYPE_SOCKET_FILTER, r0: int = 0,
                         name: str = "pybpf_test", expected_attach_type: int = 0) -> sys.FD:
    """Load ``r0 = <r0>; exit`` with raw BPF_PROG_LOAD."""
    insns = bytes.fromhex(
        "b7000000" + (r0 & 0xFFFFFFFF).to_bytes(4, "little").hex()   # mov r0, <r0>
        + "9500000000000000")                                          # exit
    code = ctypes.create_string_buffer(insns, len(insns))
    license = ctypes.create_string_buffer(b"GPL")
    attr = sys.ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // 8,
                            insns=sys.address(code), license=sys.address(license),
                            prog_name=sys.obj_name(name),
                            expected_attach_type=expected_attach_type)
    return sys.bpf_fd(sys.BPF_PROG_LOAD, attr)
