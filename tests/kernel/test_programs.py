"""The programs in ``programs/``, loaded into this kernel and doing their job."""

import ctypes
import errno
import os
import struct
import tempfile

import pytest
from kernel_objects import assert_no_new_fds, assert_no_new_objects, open_fds, snapshot

import pybpf.programs.count_syscalls as count_syscalls
import pybpf.programs.feature_tour as tour
import pybpf.programs.opensnoop as opensnoop
from pybpf.dsl import collection_spec
from pybpf.loader import Collection
from pybpf.kernel.records import to_builtin

MODULES = [count_syscalls, opensnoop, tour]
SYS_openat2 = 437  # x86_64 and aarch64 (the generic table)


def comm() -> bytes:
    with open("/proc/self/comm", "rb") as f:
        return f.read().strip()


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_program_loads_and_leaves_nothing_behind(module):
    before, fds = snapshot(), open_fds()
    with Collection(collection_spec(module)) as loaded:
        assert set(loaded.programs) == set(collection_spec(module).programs)
    assert_no_new_objects(before)
    assert_no_new_fds(fds)


# --- count_syscalls --------------------------------------------------------------------------

def test_count_syscalls_counts_at_least_our_syscalls():
    calls = 300
    pid = os.getpid()
    with Collection(collection_spec(count_syscalls)).attach() as loaded:
        first = loaded.maps.counts.get(pid, 0)
        for _ in range(calls):
            os.getppid()
        last = loaded.maps.counts[pid]
    assert last - first >= calls


# --- opensnoop -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def snoop():
    with Collection(collection_spec(opensnoop)).attach() as loaded:
        with loaded.reader(opensnoop.events, opensnoop.Event) as reader:
            yield reader


def events_for(reader, paths):
    """Our events whose path is one of ``paths``, by path (read until all came)."""
    wanted = set(paths)
    found = {}
    for _ in range(50):
        for event in reader.read(timeout=0.1):
            assert len(event.path.raw.split(b"\0")[0]) == max(event.path_len - 1, 0)
            if event.pid == os.getpid() and event.path in wanted:
                found[event.path] = event
        if len(found) == len(wanted):
            break
    assert reader.lost() == 0
    return found


def deep_path(root, length):
    """A path of about ``length`` bytes under ``root``, made of directories
    (names of 200 bytes, each under NAME_MAX)."""
    path = root
    while len(path) + 201 + 20 < length:
        path = os.path.join(path, "d" * 200)
        os.mkdir(path)
    return os.path.join(path, "f" * (length - len(path) - 1))


def test_opensnoop_reports_each_open(snoop):
    with tempfile.TemporaryDirectory() as root:
        created = os.path.join(root, "created")
        fd = os.open(created, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        missing = os.path.join(root, "missing")
        with pytest.raises(FileNotFoundError):
            os.open(missing, os.O_RDONLY)
        long_path = deep_path(root, 3500)
        fd2 = os.open(long_path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd2)
        found = events_for(snoop, [created, missing, long_path])

    me = comm()
    event = found[created]
    assert (event.pid, event.tid) == (os.getpid(), os.getpid())
    assert event.uid == os.getuid()
    assert event.comm == os.fsdecode(me)
    assert event.flags & (os.O_WRONLY | os.O_CREAT | os.O_TRUNC) == \
        os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    assert event.ret == fd and event.syscall == opensnoop.OPENAT
    assert found[missing].ret == -errno.ENOENT

    event = found[long_path]
    assert len(long_path) >= 3000
    assert event.path_len == len(long_path) + 1 and not event.truncated
    assert event.path == long_path
    assert event.ret == fd2


def test_opensnoop_flags_a_path_longer_than_the_buffer(snoop):
    name = "/" + "x" * (opensnoop.PATH_MAX + 100)
    with pytest.raises(OSError) as error:
        os.open(name, os.O_RDONLY)
    assert error.value.errno == errno.ENAMETOOLONG
    for _ in range(50):
        events = [e for e in snoop.read(timeout=0.1)
                  if e.pid == os.getpid() and e.path.startswith("/xxxx")]
        if events:
            break
    (event,) = events
    assert event.truncated == 1
    assert event.path_len == opensnoop.PATH_MAX
    assert event.path.raw == name.encode()[:opensnoop.PATH_MAX - 1] + b"\0"
    assert event.ret == -errno.ENAMETOOLONG


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def test_opensnoop_reports_openat2(snoop):
    libc = ctypes.CDLL(None, use_errno=True)
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "two")
        how = OpenHow(flags=os.O_RDWR | os.O_CREAT, mode=0o600)
        fd = libc.syscall(SYS_openat2, -100, path.encode(), ctypes.byref(how),
                          ctypes.sizeof(how))
        assert fd >= 0, os.strerror(ctypes.get_errno())
        os.close(fd)
        event = events_for(snoop, [path])[path]
    assert event.syscall == opensnoop.OPENAT2
    assert event.flags == os.O_RDWR | os.O_CREAT
    assert event.ret == fd


# --- the feature tour -----------------------------------------------------------------------------

def s64(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def signed(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def expected_report(x, arg, me, scale, prefix):
    """What ``tour`` should report, computed in Python."""
    u = x & (1 << 64) - 1
    flags = (x < 0) | (u > 1000) << 1 | (signed(x, 32) >= -5) << 2 \
        | ((x & 0xFFFF) == 0xFFFF) << 3 | ((x & 0xFF) < 200 and x != 1) << 4
    values = [signed(signed(x, 16) - i, 16) for i in range(4)]
    arg_bytes = arg[:31]
    return {
        "pid": os.getpid(), "kind": 1 if x < 0 else 2 if x == 0 else 3, "flags": flags,
        "is_py": int(me.startswith(b"py")), "matched": int(me.startswith(prefix.rstrip(b"\0"))),
        "arg_len": len(arg_bytes) + 1,
        "ops": [x >> 2, u >> 60, u // 7, u % 8, s64((x * scale + 20) & (1 << 64) - 1),
                min(u, 1000), signed(-signed(x, 32), 32), values[3]],
        "arg_sum": sum(arg_bytes), "unrolled": 720, "loop_sum": sum(i * i for i in range(10)),
        "loops": 10, "big_sum": 7 + (x & 0xFF),
        "comm": me.decode(), "kcomm": me.decode(), "arg": arg_bytes.decode(),
        "samples": [{"values": [0] * 4, "tag": ""}, {"values": values, "tag": "tour"}],
    }


@pytest.fixture(scope="module")
def tour_loaded():
    me = comm()
    settings = {"prefix": me[:3], "scale": 5, "target_pid": os.getpid()}
    with Collection(collection_spec(tour), config=settings) as loaded:
        with loaded.reader(tour.reports, tour.Report) as reader:
            yield loaded, reader, settings


def run_tour(loaded, arg, x, command=0):
    buffer = ctypes.create_string_buffer(arg)
    ctx = struct.pack("<QQQ", ctypes.addressof(buffer), x & (1 << 64) - 1, command)
    return loaded.programs["tour"].test_run(ctx=ctx).retval


@pytest.mark.parametrize("x", [-3, 0, 1, 999, 1001, 0xFFFF, -(1 << 40) - 7, 123456789])
def test_tour_reports_what_python_predicts(tour_loaded, x):
    loaded, reader, settings = tour_loaded
    arg = b"the feature tour, long enough to be cut"
    assert run_tour(loaded, arg, x) == 0
    (report,) = reader.read(timeout=1.0)
    assert to_builtin(report) == expected_report(x, arg, comm(), settings["scale"],
                                                 settings["prefix"])


def test_tour_counts_calls_and_returns_early(tour_loaded):
    loaded, reader, _settings = tour_loaded
    before = loaded.maps.calls.get(os.getpid(), 0)
    assert run_tour(loaded, b"", 5, command=tour.STOP) == tour.STOPPED
    assert reader.read(timeout=0.1) == []
    assert loaded.maps.calls.get(os.getpid(), 0) == before   # returned before counting
    run_tour(loaded, b"x", 5)
    reader.read(timeout=1.0)
    assert loaded.maps.calls[os.getpid()] == before + 1


def test_tour_prefix_setting_decides_matched():
    with Collection(collection_spec(tour), config={"prefix": b"no-such-comm"}) as loaded:
        with loaded.reader(tour.reports, tour.Report) as reader:
            run_tour(loaded, b"x", 1)
            (report,) = reader.read(timeout=1.0)
    assert report.matched == 0 and report.is_py == int(comm().startswith(b"py"))


def test_tour_tracepoint_reads_a_field_by_name():
    with Collection(collection_spec(tour), config={"target_pid": os.getpid()}) as loaded:
        loaded.attach("tour_getppid")
        parent = os.getppid()
        assert loaded.maps.ppids[0] == parent
