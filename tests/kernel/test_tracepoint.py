"""Tracefs layouts and tracepoint / raw tracepoint attachment on the running kernel."""

import os

import pytest
from emitters import TRACEPOINT, config_maps, counter_program

from pybpf.errors import BPFError, FeatureRefused, NotFoundError, UnsupportedFeature
from pybpf.kernel import link, mounts, tracefs
from pybpf.kernel.prog import Program
from pybpf.consts import BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_TRACEPOINT

CALLS = 500



def test_tracefs_is_found_or_mounted():
    root = tracefs.tracefs_root()
    assert mounts.mounted_filesystems().get(root) == "tracefs" or \
        os.path.isdir(os.path.join(root, "events"))


def test_real_format_matches_the_id_file():
    fmt = tracefs.tracepoint_format("syscalls", "sys_enter_openat")
    with open(os.path.join(tracefs.tracefs_root(), "events/syscalls/sys_enter_openat/id")) as f:
        assert fmt.id == int(f.read())
    assert fmt.field("filename")[2:4] == (24, 8)
    assert fmt.field("common_pid").signed


def _count(maps) -> int:
    return maps["counter"][0]


@pytest.mark.parametrize("use_link, method", [(True, link.VIA_BPF_LINK),
                                              (False, link.VIA_IOCTL)])
def test_tracepoint_attach_runs_until_closed(use_link, method, probe_says, no_leaks):
    answer = probe_says("BPF_LINK_TYPE_PERF_EVENT").answer("BPF_LINK_TYPE_PERF_EVENT")
    maps = config_maps()
    try:
        prog = Program.load(counter_program(), prog_type=BPF_PROG_TYPE_TRACEPOINT,
                            name="count_tp", maps=maps)
        with prog:
            if use_link and not answer.available:
                # Linux < 5.15 (absent) or a policy (refused): forcing a BPF
                # link names the feature and which of the two it is
                error = UnsupportedFeature if answer.state == "absent" else FeatureRefused
                with pytest.raises(error, match="BPF_LINK_TYPE_PERF_EVENT"):
                    link.attach_tracepoint(prog, TRACEPOINT, use_link=True)
                return
            if use_link and not probe_says.host("BPF_LINK_TYPE_PERF_EVENT").available:
                with pytest.raises(BPFError):     # told yes, wrongly: the kernel's own error
                    link.attach_tracepoint(prog, TRACEPOINT, use_link=True)
                return
            attached = link.attach_tracepoint(prog, TRACEPOINT, use_link=use_link)
        # the program stays attached after its own fd is closed
        with attached:
            assert attached.method == method and not attached.closed
            for _ in range(CALLS):
                os.getppid()
            assert _count(maps) == CALLS
        assert attached.closed
        for _ in range(CALLS):
            os.getppid()
        assert _count(maps) == CALLS
        attached.close()  # twice is harmless
    finally:
        for m in maps.values():
            m.close()


def test_default_follows_the_features_probe(probe_says, no_leaks):
    """A BPF link where the kernel has perf links (Linux >= 5.15), else the
    ioctl, whether the answer is absent or refused."""
    answer = probe_says("BPF_LINK_TYPE_PERF_EVENT").answer("BPF_LINK_TYPE_PERF_EVENT")
    maps = config_maps()
    try:
        with Program.load(counter_program(), prog_type=BPF_PROG_TYPE_TRACEPOINT,
                          name="count_tp", maps=maps) as prog:
            if answer.available and not probe_says.host("BPF_LINK_TYPE_PERF_EVENT").available:
                with pytest.raises(BPFError):     # told yes, wrongly: the kernel's own error
                    link.attach_tracepoint(prog, TRACEPOINT)
                return
            expected = link.VIA_BPF_LINK if answer.available else link.VIA_IOCTL
            with link.attach_tracepoint(prog, TRACEPOINT) as attached:
                assert attached.method == expected
    finally:
        for m in maps.values():
            m.close()


def test_raw_tracepoint_attach_runs_until_closed(no_leaks):
    maps = config_maps()
    try:
        with Program.load(counter_program(raw_syscall=True),
                          prog_type=BPF_PROG_TYPE_RAW_TRACEPOINT, name="count_raw",
                          maps=maps) as prog:
            with link.attach_raw_tracepoint(prog, "sys_enter") as attached:
                assert attached.method == link.VIA_RAW_TRACEPOINT
                for _ in range(CALLS):
                    os.getppid()
                    os.getpid()  # another syscall, not counted
                assert _count(maps) == CALLS
        for _ in range(CALLS):
            os.getppid()
        assert _count(maps) == CALLS
    finally:
        for m in maps.values():
            m.close()


def test_missing_tracepoints_are_named(no_leaks):
    with pytest.raises(NotFoundError, match="tracepoint syscalls/sys_enter_no_such_call "
                                            "does not exist"):
        link.attach_tracepoint(0, "syscalls/sys_enter_no_such_call")
    maps = config_maps()
    try:
        with Program.load(counter_program(raw_syscall=True),
                          prog_type=BPF_PROG_TYPE_RAW_TRACEPOINT, name="count_raw",
                          maps=maps) as prog:
            with pytest.raises(NotFoundError, match="raw tracepoint 'no_such_tracepoint' "
                                                    "does not exist"):
                link.attach_raw_tracepoint(prog, "no_such_tracepoint")
    finally:
        for m in maps.values():
            m.close()


def test_failed_attach_leaves_nothing(no_leaks):
    """A program of the wrong type: the kernel refuses both ways; the perf
    event opened for it is closed again."""
    maps = config_maps()
    try:
        with Program.load(counter_program(raw_syscall=True),
                          prog_type=BPF_PROG_TYPE_RAW_TRACEPOINT, name="count_raw",
                          maps=maps) as prog:
            for use_link in (True, False):
                with pytest.raises(OSError, match="tracepoint syscalls/sys_enter_getppid"):
                    link.attach_tracepoint(prog, TRACEPOINT, use_link=use_link)
    finally:
        for m in maps.values():
            m.close()
