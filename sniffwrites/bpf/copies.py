"""Data that reaches a file without passing through the process's memory:
copies, splices and space changes.

``copy_file_range`` and ``splice`` (in: fd, offset pointer; out: fd,
offset pointer) and ``sendfile`` (out fd, in fd, the in end's offset
pointer) move bytes between two fds inside the kernel: :func:`copy_call`
reports each watched end, a ``write`` on the destination and a ``read`` on
the source, with the bytes moved, the offset where one was given and the
other end's file id (walked and sent once, :func:`~.fdcache.name_fd`, when
it is not reported itself). ``fallocate`` (:func:`fallocate_call`) is op
``fallocate`` with its offset, length and mode. Both go out as an
:class:`~sniffwrites.bpf.records.IoExtent`; with ``--aggregate`` a copy
only adds to the counts of each watched end.

The offset pointers are read at exit, when the kernel has advanced them
past the bytes moved: the offset given is that value less the result.
"""

from pybpf.dsl import Ptr, UserPtr, s64, subprogram, u8, u32, u64

from .emit import fill_io, reserve
from .fdcache import count_io, fd_file, fds, file_id_of, name_fd
from .records import OP_FALLOCATE, OP_READ, OP_WRITE, REC_EXTENT, FdKey, IoExtent
from .settings import op_wanted, process_filtered_out, reported, settings
from .syscalls import CL_READ, CL_SENDFILE, CL_WRITE, Call
from .walk import scratch_box


def emit_extent(p, op, fd, ret, file_id, nr, peer_id, offset, length, mode):
    """An IoExtent record."""
    with reserve(p, IoExtent, REC_EXTENT) as ev:
        fill_io(p, ev.io, op, fd, ret, file_id, nr, 0)
        ev.io.kind = REC_EXTENT
        ev.extent.peer_id = peer_id
        ev.extent.offset = offset
        ev.extent.length = length
        ev.extent.mode = mode


def known(tracked):
    """The condition: an :func:`~.fdcache.fd_file` answer is a reported file."""
    return (tracked >= 0) & reported(tracked)


@subprogram
def copy_call(p, call: Ptr(Call)) -> s64:
    """copy_file_range, splice, sendfile: each reported end, once."""
    with p.if_((call.ret < 0) & (settings.failed == 0)):
        p.return_(0)
    with p.if_(process_filtered_out(p, call.tgid)):
        p.return_(0)
    with p.if_(call.cls == CL_SENDFILE):
        # as copy_file_range's: in fd, its offset pointer, out fd, none
        out_fd = p.var(u64, call.a0)
        call.a0 = call.a1
        call.a1 = call.a2
        call.a2 = out_fd
        call.a3 = 0
    source = p.var(s64, fd_file(p, call.a0))
    target = p.var(s64, fd_file(p, call.a2))
    copy_end(p, call, OP_WRITE, target, source)
    copy_end(p, call, OP_READ, source, target)
    p.return_(0)


@subprogram
def copy_end(p, call: Ptr(Call), op: u64, this: s64, peer: s64) -> s64:
    """One end of a copy (``op`` write: the destination, a2/a3; read: the
    source, a0/a1), if it is reported."""
    with p.if_(~known(this)):
        p.return_(0)
    fd = p.var(u64, call.a0)
    offset_at = p.var(u64, call.a1)
    peer_fd = p.var(u64, call.a2)
    cls = p.var(u8, CL_READ)
    with p.if_(op == OP_WRITE):
        fd.set(call.a2)
        offset_at.set(call.a3)
        peer_fd.set(call.a0)
        cls.set(CL_WRITE)
    with p.if_(settings.aggregate != 0):
        key = p.stack(FdKey)
        key.tgid = call.tgid
        key.fd = u32(fd)
        info = fds.lookup(key)
        with p.if_(info):
            count_io(p, info, cls, call.ret)
        p.return_(0)
    with p.if_(((settings.ops >> u32(op)) & 1) == 0):
        p.return_(0)
    peer_id = p.var(u64, 0)
    with p.if_(known(peer)):
        peer_id.set(file_id_of(peer))
    with p.elif_(peer >= 0):
        named = name_fd(p, peer_fd)
        with p.if_(named > 0):
            peer_id.set(u64(named))
    offset = p.var(s64, -1)
    with p.if_(offset_at != 0):
        box = scratch_box(p, s64)
        p.helpers.probe_read_user(box, UserPtr(offset_at))
        offset.set(box[0])
        with p.if_(call.ret > 0):
            offset.set(box[0] - call.ret)
    emit_extent(p, op, fd, call.ret, file_id_of(this), call.nr, peer_id, offset, 0, 0)
    p.return_(0)


def wanted_fd_op(p, call, op):
    """The filters of an operation ``op`` on fd ``call.a0`` (failed calls,
    ``-o``, the process, the file), in a subprogram that returns when one
    says no: what :func:`~.fdcache.fd_file` answered for the fd."""
    with p.if_((call.ret < 0) & (settings.failed == 0)):
        p.return_(0)
    with p.if_(~op_wanted(op) & (settings.report_all == 0)):
        p.return_(0)
    with p.if_(process_filtered_out(p, call.tgid)):
        p.return_(0)
    tracked = fd_file(p, call.a0)
    with p.if_(~known(tracked)):
        p.return_(0)
    return tracked


@subprogram
def fallocate_call(p, call: Ptr(Call)) -> s64:
    """fallocate(fd, mode, offset, len) on a reported file."""
    this = wanted_fd_op(p, call, OP_FALLOCATE)
    emit_extent(p, OP_FALLOCATE, call.a0, call.ret, file_id_of(this), call.nr, 0, s64(call.a2),
                call.a3, call.a1)
    p.return_(0)
