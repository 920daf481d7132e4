"""Kernel structs read through BTF offsets, in this kernel: the current task's
identity, and descriptors walked to their paths (``programs/lib_paths.py``),
compared with what the kernel itself says through /proc and fstat."""

import os
import select
import socket
import threading

import pytest

from pybpf.dsl import ArrayMap, Config, Struct, char, collection_spec, s32, tracepoint, u32
from pybpf.loader import Collection
from pybpf.dsl.kernel_types import kernel_has_helper
from pybpf.kernel.btf import vmlinux
from pybpf.programs import lib_paths
from pybpf.programs.lib_paths import (MAX_LEVELS_BOUNDED, PATH_DELETED, PATH_PSEUDO,
                                      PATH_TRUNCATED, display_path, kernel_dev, user_dev)

import path_walkers
from older_kernels import without_bpf_loop
from path_walkers import SMALL_PATH, Walker, walk_fd_short, walk_fd_small


class Identity(Struct):
    pid: s32
    tgid: s32
    ppid: s32
    state: u32
    comm: char[16]


identity = ArrayMap(value=Identity, max_entries=1)
me = Config(pid=u32)


@tracepoint("syscalls", "sys_enter_getppid")
def whoami(p, ctx):
    task = p.current_task()
    with p.if_(u32(task.tgid) != me.pid):
        p.return_(0)
    out = identity.lookup(u32(0))
    with p.if_(out):
        out.pid = task.pid
        out.tgid = task.tgid
        out.ppid = task.real_parent.tgid
        out.state = p.field(task, "__state", "state")
        out.comm = task.comm


def test_current_task_reads_pid_tgid_parent_and_comm():
    assert threading.get_native_id() == os.getpid(), "run from the main thread"
    with Collection(collection_spec([whoami]), config={"pid": os.getpid()}).attach() as loaded:
        os.getppid()
        seen = loaded.maps.identity[0]
    with open("/proc/self/comm", "rb") as f:
        comm = f.read().rstrip(b"\n")
    assert (seen.pid, seen.tgid, seen.ppid) == (os.getpid(), os.getpid(), os.getppid())
    # up to the first NUL: before ~5.9 exec leaves the old name's tail behind it
    assert seen.comm.raw.split(b"\0")[0] == comm
    assert seen.state == 0                     # TASK_RUNNING: it is making the syscall


def test_the_generated_code_reads_this_kernels_offsets():
    @tracepoint("syscalls", "sys_enter_getppid")
    def chain(p, ctx):
        out = identity.lookup(u32(0))
        with p.if_(out):
            out.ppid = p.current_task().real_parent.tgid
    text = chain.disasm(source=False)
    btf = vmlinux()
    for path in ("task_struct.real_parent", "task_struct.tgid"):
        assert "r3 += %d\n" % btf.resolve(path).offset in text, (path, text)


# --- descriptors to paths -------------------------------------------------------------------

@pytest.fixture(scope="module", params=["bpf_loop", "bounded"])
def walker(request):
    """The walkers as this kernel builds them (two ``bpf_loop`` passes), and
    as a kernel without ``bpf_loop`` does (bounded loops, MAX_LEVELS_BOUNDED
    levels): every walk test runs in both."""
    if request.param == "bpf_loop":
        loaded = Walker()
    else:
        with without_bpf_loop():
            loaded = Walker()
            assert "call bpf_loop" not in path_walkers.walk_fd.disasm()
    loaded.bounded = request.param == "bounded" or not kernel_has_helper("bpf_loop")
    yield loaded
    loaded.close()


@pytest.fixture
def opened():
    """``opened(path, flags)``: a descriptor closed after the test."""
    fds = []

    def open_(path, flags=os.O_RDONLY):
        fds.append(os.open(path, flags, 0o600))
        return fds[-1]
    yield open_
    for fd in fds:
        os.close(fd)


def assert_walks_like_readlink(walker, fd, flags=0):
    info, path, _ = walker.walk(fd)
    assert display_path(path, info) == os.readlink("/proc/self/fd/%d" % fd)
    assert info.flags == flags
    assert info.length == len(path)
    st = os.fstat(fd)
    assert (user_dev(info.dev), info.ino) == (st.st_dev, st.st_ino)
    return info, path


def test_a_plain_file(walker, opened, tmp_path):
    fd = opened(str(tmp_path / "plain"), os.O_CREAT | os.O_RDWR)
    _, path = assert_walks_like_readlink(walker, fd)
    assert path == os.fsencode(tmp_path / "plain")


def test_a_path_longer_than_a_name(walker, opened, tmp_path):
    deep = tmp_path
    for letter in "abcdef":
        deep = deep / (letter * 200)
    deep.mkdir(parents=True)
    fd = opened(str(deep / "file"), os.O_CREAT | os.O_RDWR)
    _, path = assert_walks_like_readlink(walker, fd)
    assert len(path) > 1200


def test_a_file_reached_through_a_symlinked_directory(walker, opened, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    fd = opened(str(tmp_path / "link" / "file"), os.O_CREAT | os.O_RDWR)
    _, path = assert_walks_like_readlink(walker, fd)
    assert path == os.fsencode(tmp_path / "real" / "file")


def test_a_file_on_tmpfs_crosses_mounts(walker, opened):
    name = "/dev/shm/pybpf-walk-%d" % os.getpid()
    fd = opened(name, os.O_CREAT | os.O_RDWR)
    try:
        _, path = assert_walks_like_readlink(walker, fd)
    finally:
        os.unlink(name)
    assert path == name.encode()


def test_a_deleted_file_is_flagged(walker, opened, tmp_path):
    fd = opened(str(tmp_path / "gone"), os.O_CREAT | os.O_RDWR)
    os.unlink(tmp_path / "gone")
    _, path = assert_walks_like_readlink(walker, fd, PATH_DELETED)
    assert path == os.fsencode(tmp_path / "gone")


def test_the_root_directory(walker, opened):
    _, path = assert_walks_like_readlink(walker, opened("/"))
    assert path == b"/"


def test_a_pipe_is_named_from_its_inode(walker):
    read_end, write_end = os.pipe()
    try:
        info, _ = assert_walks_like_readlink(walker, read_end, PATH_PSEUDO)
        assert info.magic == lib_paths.PIPEFS_MAGIC
        assert display_path(b"", info) == "pipe:[%d]" % os.fstat(read_end).st_ino
    finally:
        os.close(read_end)
        os.close(write_end)


def test_sockets_anonymous_inodes_and_memfds(walker):
    with socket.socket() as sock:
        assert_walks_like_readlink(walker, sock.fileno(), PATH_PSEUDO)
    epoll = select.epoll()                                   # anon_inode:[eventpoll]
    try:
        assert_walks_like_readlink(walker, epoll.fileno(), PATH_PSEUDO)
    finally:
        epoll.close()
    memfd = os.memfd_create("pybpf-walk")                    # /memfd:pybpf-walk (deleted)
    try:
        assert_walks_like_readlink(walker, memfd, PATH_PSEUDO | PATH_DELETED)
    finally:
        os.close(memfd)


def test_no_file_behind_the_descriptor(walker, tmp_path):
    closed = os.open(str(tmp_path / "closed"), os.O_CREAT | os.O_RDWR, 0o600)
    os.close(closed)
    for fd in (closed, -1, 1 << 20):
        assert walker.run(fd) == path_walkers.NO_FILE


def test_a_walk_deeper_than_its_bound_is_the_truncated_tail(walker, opened, tmp_path):
    deep = tmp_path.joinpath(*("d%d" % i for i in range(16)))
    deep.mkdir(parents=True)
    fd = opened(str(deep / "file"), os.O_CREAT | os.O_RDWR)
    info, path, _ = walker.walk(fd, walk_fd_short)
    assert info.flags == PATH_TRUNCATED
    expected = os.readlink("/proc/self/fd/%d" % fd).encode()
    assert expected.endswith(path) and path.endswith(b"/d15/file")
    assert path.count(b"/") == path_walkers.SHORT_STEPS


def test_the_default_bound_without_bpf_loop_cuts_and_flags(walker, opened, tmp_path):
    """MAX_LEVELS_BOUNDED levels where the walk is bounded loops; the whole
    path where it is bpf_loop (MAX_LEVELS)."""
    deep = tmp_path.joinpath(*("d%d" % i for i in range(MAX_LEVELS_BOUNDED + 6)))
    deep.mkdir(parents=True)
    fd = opened(str(deep / "file"), os.O_CREAT | os.O_RDWR)
    if not walker.bounded:
        assert_walks_like_readlink(walker, fd)
        return
    info, path, _ = walker.walk(fd)
    assert info.flags == PATH_TRUNCATED
    assert os.readlink("/proc/self/fd/%d" % fd).encode().endswith(path)
    assert path.endswith(b"/d%d/file" % (MAX_LEVELS_BOUNDED + 5))
    assert path.count(b"/") == MAX_LEVELS_BOUNDED


def test_a_path_longer_than_path_max_is_the_truncated_tail(walker, tmp_path):
    """Deeper than PATH_MAX: made with descriptors of each level, since no
    single name reaches it (and readlink fails with ENAMETOOLONG)."""
    name = "n" * 255
    fds = [os.open(str(tmp_path), os.O_RDONLY)]
    try:
        for _ in range(17):                                  # 17 * 256 > 4096
            os.mkdir(name, dir_fd=fds[-1])
            fds.append(os.open(name, os.O_RDONLY, dir_fd=fds[-1]))
        fds.append(os.open("file", os.O_CREAT | os.O_RDWR, 0o600, dir_fd=fds[-1]))
        info, path, _ = walker.walk(fds[-1])
    finally:
        for fd in fds:
            os.close(fd)
    assert info.flags == PATH_TRUNCATED
    assert path.endswith(b"/" + name.encode() + b"/file")
    assert lib_paths.PATH_MAX - 256 < len(path) <= lib_paths.PATH_MAX


def test_a_buffer_shorter_than_the_path_keeps_its_tail(walker, opened, tmp_path):
    fd = opened(str(tmp_path / "a-file-with-a-long-enough-name"), os.O_CREAT | os.O_RDWR)
    info, path, _ = walker.walk(fd, walk_fd_small)
    full = os.fsencode(tmp_path / "a-file-with-a-long-enough-name")
    assert info.flags == PATH_TRUNCATED
    assert info.length == len(full)
    assert path == full[-(SMALL_PATH - 1):]


def test_the_walk_tests_each_directory_against_a_map(walker, opened, tmp_path):
    (tmp_path / "sub" / "subsub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    fd = opened(str(tmp_path / "sub" / "subsub" / "file"), os.O_CREAT | os.O_RDWR)
    name = "/dev/shm/pybpf-watch-%d" % os.getpid()
    shm_fd = opened(name, os.O_CREAT | os.O_RDWR)
    os.unlink(name)
    bits = {str(tmp_path / "sub"): 1, str(tmp_path / "elsewhere"): 2, "/dev/shm": 4,
            str(tmp_path / "sub" / "subsub" / "file"): 8}
    for directory, bit in bits.items():
        st = os.stat(directory)
        walker.maps.watched[dict(dev=kernel_dev(st.st_dev), ino=st.st_ino)] = bit
    try:
        assert walker.walk(fd)[2] == 1 | 8          # its directory's parent, and itself
        assert walker.walk(shm_fd)[2] == 4          # a mount's root, not what it covers
    finally:
        walker.maps.watched.clear()


def test_paths_are_relative_to_a_chroot(walker, tmp_path):
    """Like d_path: in a chroot the walk stops at the process's root."""
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "file").write_bytes(b"")
    results, sink = os.pipe()
    child = os.fork()
    if child == 0:                                   # pragma: no cover (the child)
        try:
            os.chroot(str(tmp_path))
            fd = os.open("/inside/file", os.O_RDONLY)
            _, path, _ = walker.walk(fd)
            os.write(sink, path)
        finally:
            os._exit(0)
    os.close(sink)
    try:
        path = os.read(results, 4096)
    finally:
        os.close(results)
        os.waitpid(child, 0)
    assert path == b"/inside/file"


class Written(Struct):
    info: lib_paths.PathInfo
    path: char[256]


written = ArrayMap(value=Written, max_entries=1)


@tracepoint("syscalls", "sys_enter_fsync")
def fsynced(p, ctx):
    """The walk in a tracepoint program, on a real syscall of this process."""
    with p.if_(u32(p.helpers.get_current_pid_tgid() >> 32) != me.pid):
        p.return_(0)
    out = written.lookup(u32(0))
    with p.if_(out.is_null):
        p.return_(0)
    file = lib_paths.file_of_fd(p, p.current_task(), ctx.fd)
    with p.if_(file):
        lib_paths.emit_path(p, file, out.path, out.info)


def test_the_walk_in_an_attached_tracepoint_program(opened, tmp_path):
    fd = opened(str(tmp_path / "synced"), os.O_CREAT | os.O_RDWR)
    with Collection(collection_spec([fsynced]), config={"pid": os.getpid()}).attach() as loaded:
        os.fsync(fd)
        seen = loaded.maps.written[0]
    assert seen.path == os.fsdecode(tmp_path / "synced")
    assert seen.info.ino == os.fstat(fd).st_ino
