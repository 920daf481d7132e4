"""What goes into the ring, and the counters of what could not be done.

Every record of :mod:`~sniffwrites.bpf.records` is made here: :func:`emit_io`
and :func:`emit_agg` reserve and fill one, :func:`send_capture` adds the
first bytes a read or write moved, :func:`read_text` / :func:`send_text`
carry the names of an operation ahead of its Io record. Every record goes
through :func:`reserve` or :func:`output`, which count it by kind in
``Counters.emitted_*`` before trying and in ``Counters.dropped_*`` (and the
ring's own ``events_lost``) when the ring had no room: the exact account
userspace checks at exit (received + dropped == emitted). :func:`count`
bumps the other per-CPU counters (map full, walk failed, ...).
"""

from contextlib import contextmanager

from pybpf.dsl import PerCPUArray, RingBuf, UserPtr, s32, sizeof, u8, u32, u64

from .records import (CAPTURE_MAX, IO_AUX_MEANINGS, IO_CAPTURE, KIND_NAMES, OP_CLOSE, PATH_MAX,
                      REC_AGG, REC_IO, REC_TEXT, TEXT_HEADER, Agg, Counters, Io, IoCapture, Text)
from .settings import settings
from .syscalls import VECTORED, syscall_number
from .walk import scratch_box

events = RingBuf(size=1 << 24)
counters = PerCPUArray(value=Counters, max_entries=1)
texts = PerCPUArray(value=Text, max_entries=2)
captures = PerCPUArray(value=IoCapture, max_entries=1)


def count(p, field):
    """counters.<field> += 1 on this CPU."""
    c = counters.lookup(0)
    with p.if_(c):
        p.atomic_add(getattr(p.addr(c), field), 1)


@contextmanager
def reserve(p, record_type, kind):
    """``with reserve(p, Io, REC_IO) as ev:``: ``events.reserve``, counting
    the record of ``kind`` as emitted, and as dropped when the ring is full
    (the block is then skipped). The block must not leave early."""
    name = KIND_NAMES[kind]
    count(p, "emitted_" + name)
    sent = p.var(u8, 0)
    with events.reserve(record_type) as ev:
        yield ev
        sent.set(1)
    with p.if_(sent == 0):
        count(p, "dropped_" + name)


def output(p, kind, data, size):
    """``bpf_ringbuf_output`` of ``size`` bytes of ``data``, a record of
    ``kind``: counted as emitted, and when the ring is full as dropped
    (by kind here, in total in the ring's ``events_lost``)."""
    name = KIND_NAMES[kind]
    count(p, "emitted_" + name)
    result = p.helpers.ringbuf_output(events, data, size, 0)
    with p.if_(result != 0):
        events.lost.count(p)
        count(p, "dropped_" + name)


def parent_tgid(p):
    """``current->real_parent->tgid``: what getppid() returns."""
    return p.current_task().real_parent.tgid


def fill_header(p, ev, kind, op, fd, flags):
    """What every record carries: who did what to which fd, and when."""
    pid_tgid = p.helpers.get_current_pid_tgid()
    ev.kind = kind
    ev.op = op
    ev.flags = flags
    ev.pid = u32(pid_tgid >> 32)
    ev.tid = u32(pid_tgid)
    ev.ppid = parent_tgid(p)
    ev.uid = u32(p.helpers.get_current_uid_gid())
    ev.fd = s32(fd)
    ev.ts = p.helpers.ktime_get_ns()
    p.helpers.get_current_comm(ev.comm)


def io_aux(op, meaning):
    """The value of ``Io.aux``, given as one keyword named for what it
    means (:data:`~sniffwrites.bpf.records.IO_AUX_MEANINGS`: ``open_flags=``,
    ``length=``, ...; ``aux=`` where the operation is only known at run
    time), or 0."""
    if not meaning:
        return 0
    if len(meaning) != 1:
        raise TypeError("Io.aux has one meaning at a time, not %s" % ", ".join(meaning))
    (name, value), = meaning.items()
    if name != "aux" and IO_AUX_MEANINGS.get(op) != name:
        raise TypeError("Io.aux of operation %r is %s, not %s"
                        % (op, IO_AUX_MEANINGS.get(op, "unused"), name))
    return value


def fill_io(p, ev, op, fd, ret, file_id, nr, flags, aux=0):
    """The common part of an Io record."""
    fill_header(p, ev, REC_IO, op, fd, flags)
    ev.ret = ret
    ev.file_id = file_id
    ev.aux = aux
    ev.syscall = u32(nr)
    ev.cap_len = 0


def emit_io(p, op, fd, ret, file_id, nr, flags=0, **aux):
    """An Io record; ``aux`` names the value of ``Io.aux`` (see :func:`io_aux`)."""
    with reserve(p, Io, REC_IO) as ev:
        fill_io(p, ev, op, fd, ret, file_id, nr, flags, io_aux(op, aux))


def emit_agg(p, info, fd, flags):
    """A closing file's Agg record: its close event and (--aggregate) its counts."""
    with reserve(p, Agg, REC_AGG) as ev:
        fill_header(p, ev, REC_AGG, OP_CLOSE, fd, flags)
        ev.file_id = info.file_id
        ev.reads = info.reads
        ev.read_bytes = info.read_bytes
        ev.writes = info.writes
        ev.write_bytes = info.write_bytes


def send_capture(p, op, call, file_id):
    """An Io with the first ``settings.capture`` bytes moved (readv/writev:
    of the first iovec)."""
    c = captures.lookup(0)
    with p.if_(c.is_null):
        p.return_(0)
    fill_io(p, c.io, op, call.a0, call.ret, file_id, call.nr, IO_CAPTURE)
    n = p.var(u64, u64(call.ret))
    with p.if_(n > settings.capture):
        n.set(settings.capture)
    buf = p.var(u64, call.a1)
    vectored = p.var(u8, 0)
    for name in VECTORED:
        number = syscall_number(name)
        if number is not None:
            with p.if_(call.nr == number):
                vectored.set(1)
    with p.if_(vectored != 0):
        vec = p.stack(u64[2])       # struct iovec { iov_base, iov_len }
        p.helpers.probe_read_user(vec, UserPtr(call.a1))
        buf.set(vec[0])
        with p.if_(n > vec[1]):
            n.set(vec[1])
    size = p.var(u32, u32(n) & (CAPTURE_MAX - 1))
    with p.if_(n >= CAPTURE_MAX):
        size.set(CAPTURE_MAX - 1)
    p.helpers.probe_read_user(c.data, size, UserPtr(buf))
    c.io.cap_len = size
    output(p, REC_IO, c, sizeof(Io) + size)


def read_text(p, slot, which, address):
    """A user string into texts[slot]; returns the Ref (or returns from the
    function if the scratch space is missing)."""
    t = texts.lookup(slot)
    with p.if_(t.is_null):
        p.return_(0)
    t.kind = REC_TEXT
    t.which = which
    t.tid = u32(p.helpers.get_current_pid_tgid())
    t.truncated = 0
    length = p.helpers.probe_read_user_str(t.text, UserPtr(address))
    t.length = s32(length)
    with p.if_(length == PATH_MAX):
        next_byte = scratch_box(p, u8)
        p.helpers.probe_read_user(next_byte, UserPtr(address) + PATH_MAX)
        with p.if_(next_byte[0] != 0):
            t.truncated = 1
    return t


def send_text(p, t):
    """The Text record: its header and the string's bytes (with the NUL)."""
    size = p.var(u32, u32(t.length))
    with p.if_(t.length < 0):
        size.set(0)
    output(p, REC_TEXT, t, TEXT_HEADER + (size & (PATH_MAX - 1)) + 1)


def report_path_op(p, names, op, ret, file_id, nr, flags, aux):
    """A path-based operation: the Text records of its ``names`` (1, or 2
    for a rename: ``texts`` slots 0 and 1), then its Io record. Returns from
    the program."""
    slots = [texts.lookup(slot) for slot in range(names)]
    missing = slots[0].is_null
    for t in slots[1:]:
        missing = missing | t.is_null
    with p.if_(missing):
        p.return_(0)
    for t in slots:
        send_text(p, t)
    emit_io(p, op, -1, ret, file_id, nr, flags, aux=aux)
    p.return_(0)
