"""The syscalls ``sniff_sys_exit`` hands on: one subprogram per class.

The hot path (a read or write of an fd the cache knows) stays in the hook
(:mod:`~sniffwrites.bpf.hooks`); everything else gets the syscall copied
into the per-CPU :class:`~sniffwrites.bpf.syscalls.Call` slot
(:func:`fill_call`) and one of these: :func:`report_io` and :func:`io_miss`
for reads and writes, :func:`slow_path` dispatching opens, dups,
close_range, ftruncate, copies and fallocate (:mod:`~sniffwrites.bpf.copies`)
and the path-based operations (truncate, unlink,
rename: no fd, only names, matched by :func:`path_start`).
"""

from pybpf.dsl import PerCPUArray, Ptr, UserPtr, s64, subprogram, u8, u16, u32, u64

from .copies import copy_call, fallocate_call, wanted_fd_op
from .emit import count, emit_io, read_text, report_path_op, send_capture, send_text, texts
from .fdcache import (AT_FDCWD, SWEEP_CLOSE_RANGE, count_io, fds, file_id_of,
                      raise_max_fd, report_close, sweep, track_dir, track_fd)
from .records import (IO_IMPLICIT, IO_PATH_OP, OP_DUP, OP_OPEN, OP_READ, OP_RENAME,
                      OP_TRUNCATE, OP_UNLINK, OP_WRITE, TEXT_GIVEN, TEXT_NAME, TEXT_NEW_NAME,
                      FdInfo, FdKey)
from .settings import (MAX_PREFIXES, op_wanted, process_filtered_out, process_wanted, reported,
                       settings)
from .syscalls import (CL_CLOSE_RANGE, CL_COPY, CL_DUP2, CL_FALLOCATE, CL_FCNTL, CL_FTRUNCATE,
                       CL_OPEN, CL_OPENAT2, CL_RENAMEAT, CL_TRUNCATE, CL_UNLINK, CL_UNLINKAT, CL_WRITE, Call,
                       syscall_number)
from .walk import scratch_box

# include/uapi/linux/fcntl.h, include/uapi/asm-generic/fcntl.h, include/uapi/linux/close_range.h
F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030
O_WRONLY, O_CREAT, O_TRUNC = 0o1, 0o100, 0o1000
AT_REMOVEDIR = 0x200
CLOSE_RANGE_CLOEXEC = 4

calls = PerCPUArray(value=Call, max_entries=1)        # the syscall, for the slow paths


def fill_call(p, regs, ret, tgid, cls):
    """The syscall into the per-CPU ``calls`` slot, for a slow path."""
    call = calls.lookup(0)
    with p.if_(call.is_null):
        p.return_(0)
    regs.read_all(p, call)
    call.ret = ret
    call.tgid = tgid
    call.cls = cls
    return call


@subprogram
def report_io(p, call: Ptr(Call), file_id: u64) -> s64:
    """A read or write on a reported file: the filters, then the record."""
    ret = call.ret
    with p.if_(process_filtered_out(p, call.tgid)):
        p.return_(0)
    with p.if_((ret < 0) & (settings.failed == 0)):
        p.return_(0)
    op = p.var(u8, OP_READ)
    with p.if_(call.cls == CL_WRITE):
        op.set(OP_WRITE)
    with p.if_(((settings.ops >> u32(op)) & 1) == 0):
        p.return_(0)
    with p.if_((settings.capture != 0) & (ret > 0)):
        send_capture(p, op, call, file_id)
        p.return_(0)
    emit_io(p, op, call.a0, ret, file_id, call.nr)
    p.return_(0)


@subprogram
def io_miss(p, call: Ptr(Call)) -> s64:
    """A read or write on an fd not in the cache: walk it once."""
    with p.if_(process_filtered_out(p, call.tgid)):
        p.return_(0)
    tracked = track_fd(p, call.a0, 0)
    with p.if_(tracked < 0):
        with p.if_(call.ret >= 0):
            count(p, "walk_failed")      # it worked, but the fd was gone when we looked
        p.return_(0)
    with p.if_(~reported(tracked)):
        p.return_(0)
    with p.if_(settings.aggregate != 0):
        key = p.stack(FdKey)
        key.tgid = call.tgid
        key.fd = u32(call.a0)
        info = fds.lookup(key)
        with p.if_(info):
            count_io(p, info, call.cls, call.ret)
            p.return_(0)
        count(p, "aggregate_untracked")
        p.return_(0)
    report_io(p, call, file_id_of(tracked))
    p.return_(0)


@subprogram
def slow_path(p, call: Ptr(Call)) -> s64:
    cls = call.cls
    with p.if_(cls <= CL_OPENAT2):
        open_call(p, call)
        p.return_(0)
    with p.if_(cls <= CL_FCNTL):
        dup_call(p, call)
        p.return_(0)
    with p.if_(cls == CL_CLOSE_RANGE):
        close_range_call(p, call)
        p.return_(0)
    with p.if_(cls == CL_FTRUNCATE):
        ftruncate_call(p, call)
        p.return_(0)
    with p.if_(cls == CL_FALLOCATE):
        fallocate_call(p, call)
        p.return_(0)
    with p.if_(cls >= CL_COPY):
        copy_call(p, call)
        p.return_(0)
    path_call(p, call)
    p.return_(0)


@subprogram
def close_range_call(p, call: Ptr(Call)) -> s64:
    with p.if_((call.ret != 0) | ((call.a2 & CLOSE_RANGE_CLOEXEC) != 0)):
        p.return_(0)
    sweep(p, call.tgid, u32(call.a0), u32(call.a1), SWEEP_CLOSE_RANGE)
    p.return_(0)


@subprogram
def open_call(p, call: Ptr(Call)) -> s64:
    """open, creat, openat, openat2: on success the new fd is walked (the
    cache entry of its number is replaced); the name as given goes in a
    Text record before the Io."""
    cls = call.cls
    ret = call.ret
    dirfd = p.var(u64, call.a0)
    name = p.var(u64, call.a1)
    flags = p.var(u64, call.a2)
    with p.if_(cls == CL_OPEN):
        dirfd.set(u64(AT_FDCWD))
        name.set(call.a0)
        flags.set(call.a1)
        creat = syscall_number("creat")
        if creat is not None:
            with p.if_(call.nr == creat):
                flags.set(O_CREAT | O_WRONLY | O_TRUNC)
    with p.if_(cls == CL_OPENAT2):
        how = scratch_box(p, u64)
        p.helpers.probe_read_user(how, UserPtr(call.a2))   # open_how.flags
        flags.set(how[0])
    with p.if_(ret < 0):
        with p.if_(settings.failed == 0):
            p.return_(0)
        with p.if_(settings.report_all == 0):
            with p.if_(process_wanted(p, call.tgid) == 0):
                p.return_(0)
            with p.if_(~op_wanted(OP_OPEN)):
                p.return_(0)
        read_text(p, 0, TEXT_GIVEN, name)
        start = path_start(p, 0, dirfd)
        with p.if_(start < 0):
            p.return_(0)
        report_path_op(p, 1, OP_OPEN, ret, file_id_of(start), call.nr, IO_PATH_OP, flags)
    key = p.stack(FdKey)
    key.tgid = call.tgid
    key.fd = u32(ret)
    with p.if_(process_filtered_out(p, call.tgid)):
        fds.delete(key)          # an old answer for this fd number is stale now
        p.return_(0)
    tracked = track_fd(p, u64(ret), flags)
    with p.if_(tracked < 0):
        p.return_(0)
    with p.if_(~reported(tracked)):
        p.return_(0)
    with p.if_(~op_wanted(OP_OPEN) | (settings.aggregate != 0)):
        p.return_(0)
    t = read_text(p, 0, TEXT_GIVEN, name)
    send_text(p, t)
    emit_io(p, OP_OPEN, ret, ret, file_id_of(tracked), call.nr, open_flags=flags)
    p.return_(0)


@subprogram
def dup_call(p, call: Ptr(Call)) -> s64:
    """dup, dup2, dup3, fcntl(F_DUPFD*): the new fd is the old one's file.
    dup2/dup3 closed what the new fd was (an implicit close)."""
    cls = call.cls
    with p.if_(call.ret < 0):
        p.return_(0)
    with p.if_(cls == CL_FCNTL):
        with p.if_((call.a1 != F_DUPFD) & (call.a1 != F_DUPFD_CLOEXEC)):
            p.return_(0)
    old = u32(call.a0)
    new = u32(call.ret)
    with p.if_(old == new):
        p.return_(0)
    key = p.stack(FdKey)
    key.tgid = call.tgid
    key.fd = new
    with p.if_(cls == CL_DUP2):
        gone = fds.lookup(key)
        with p.if_(gone):
            report_close(p, gone, new, IO_IMPLICIT)
            fds.delete(key)
    source = p.stack(FdKey)
    source.tgid = call.tgid
    source.fd = old
    info = fds.lookup(source)
    with p.if_(info.is_null):
        with p.if_(process_filtered_out(p, call.tgid)):
            p.return_(0)
        track_fd(p, u64(new), 0)
        p.return_(0)
    copy = p.stack(FdInfo, zero=True)
    copy.file_id = info.file_id
    copy.flags = info.flags
    copy.watched = info.watched
    with p.if_(fds.update(key, copy) != 0):
        count(p, "fd_map_full")
        p.return_(0)
    raise_max_fd(p, call.tgid, new, create=False)
    with p.if_(reported(copy.flags)):
        emit_io(p, OP_DUP, new, call.ret, copy.file_id, call.nr, source_fd=old)
    p.return_(0)


@subprogram
def ftruncate_call(p, call: Ptr(Call)) -> s64:
    tracked = wanted_fd_op(p, call, OP_TRUNCATE)
    emit_io(p, OP_TRUNCATE, call.a0, call.ret, file_id_of(tracked), call.nr, length=call.a1)
    p.return_(0)


@subprogram
def path_call(p, call: Ptr(Call)) -> s64:
    """truncate, unlink, rmdir, unlinkat, rename, renameat, renameat2: no
    fd, only names; the directory each starts from is walked."""
    cls = call.cls
    with p.if_((call.ret < 0) & (settings.failed == 0)):
        p.return_(0)
    with p.if_(process_filtered_out(p, call.tgid)):
        p.return_(0)
    op = p.var(u8, OP_UNLINK)
    dirfd = p.var(u64, u64(AT_FDCWD))
    name = p.var(u64, call.a0)
    aux = p.var(u64, 0)         # Io.aux: the length, the unlink flags or the new name's directory
    new_dirfd = p.var(u64, u64(AT_FDCWD))
    new_name = p.var(u64, call.a1)
    with p.if_(cls == CL_TRUNCATE):
        op.set(OP_TRUNCATE)
        aux.set(call.a1)
    with p.elif_(cls == CL_UNLINKAT):
        dirfd.set(call.a0)
        name.set(call.a1)
        aux.set(call.a2)
    with p.elif_(cls == CL_UNLINK):
        rmdir = syscall_number("rmdir")
        if rmdir is not None:
            with p.if_(call.nr == rmdir):
                aux.set(AT_REMOVEDIR)
    with p.elif_(cls == CL_RENAMEAT):
        op.set(OP_RENAME)
        dirfd.set(call.a0)
        name.set(call.a1)
        new_dirfd.set(call.a2)
        new_name.set(call.a3)
    with p.else_():
        op.set(OP_RENAME)
    with p.if_(((settings.ops >> u32(op)) & 1 == 0) & (settings.report_all == 0)):
        p.return_(0)
    read_text(p, 0, TEXT_NAME, name)
    start = path_start(p, 0, dirfd)
    flags = p.var(u16, IO_PATH_OP)
    file_id = p.var(u64, 0)
    with p.if_(start > 0):
        file_id.set(file_id_of(start))
    with p.if_(op == OP_RENAME):
        read_text(p, 1, TEXT_NEW_NAME, new_name)
        start2 = path_start(p, 1, new_dirfd)
        with p.if_((start < 0) & (start2 < 0)):
            p.return_(0)
        with p.if_(start2 > 0):
            aux.set(file_id_of(start2))
        report_path_op(p, 2, op, call.ret, file_id, call.nr, flags, aux)
    with p.if_(start < 0):
        p.return_(0)
    report_path_op(p, 1, op, call.ret, file_id, call.nr, flags, aux)


def absolute_watched(p, t):
    """u8: an absolute name starts with one of the watched directories."""
    hit = p.var(u8, 0)
    for i in p.range(MAX_PREFIXES, unroll=True):
        prefix = getattr(settings, "prefix%d" % i)
        with p.if_(prefix[0] != 0):
            with p.if_(p.str_prefix_eq(t.text, prefix)):
                hit.set(1)
    return hit


@subprogram
def path_start(p, slot: u64, dirfd: u64) -> s64:
    """A path-based operation's name is in texts[slot]: does it concern a
    watched directory? An absolute name is compared with the watched
    directories' paths; a relative one by walking the directory it starts
    from (``dirfd``, or the cwd), sent as a FileRec if watched. Returns -1
    (not wanted), 0 (wanted, no directory) or ``dir id << 8 | flags``."""
    t = texts.lookup(slot)
    with p.if_(t.is_null):
        p.return_(-1)
    with p.if_(t.text[0] == ord("/")):
        with p.if_((settings.all_files != 0) | (settings.report_all != 0)):
            p.return_(0)
        with p.if_(absolute_watched(p, t) != 0):
            p.return_(0)
        p.return_(-1)
    result = track_dir(p, dirfd, 0)
    with p.if_(result < 0):
        p.return_(-1)
    with p.if_(~reported(result)):
        p.return_(-1)
    p.return_(result)
