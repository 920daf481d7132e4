"""What the perf buffer and ring buffer readers share: waiting and handing out batches.

A transport (:mod:`~pybpf.kernel.perf`, :mod:`~pybpf.kernel.ringbuf`) owns
its rings and knows their record format; each ring offers ``fetch`` (walk
the records that are ready and say where their payloads are) and ``commit``
(give the space back to the kernel). :class:`RingReader` does the rest once
for both: one epoll set over every ring fd plus a wake-up pipe, so
:meth:`RingReader.close` from another thread wakes a blocked reader (the
pattern of pyroute2's ``inotify_fd.py``); what to do with a corrupt ring;
counters; teardown.

Records reach the caller through one protocol, :meth:`RingReader.consume`
(libbpf's ``ring_buffer__consume`` with its sample callback, cilium's
``ReadInto``): the handler is called with a :class:`Lease` per ring batch,
the records where they lie in the ring, valid until it returns. Decoded
records (:meth:`RingReader.read`, through a
:class:`~pybpf.kernel.records.RecordDecoder`) and raw views
(:meth:`RingReader.read_raw`) are two handlers built on it.

Not here: how records are laid out, or any kernel call besides epoll.
"""

import os
import select
import threading
import time
from contextlib import ExitStack
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from ..errors import PyBPFError
from .records import RecordDecoder


class CorruptRingError(PyBPFError, ValueError):
    """A ring whose contents cannot be framed into records (a length past the
    data area, a position going backwards). The reader has skipped what was
    in the ring after the damage, so the next read starts clean."""


class ReaderStats(NamedTuple):
    """Counters of a reader since it was opened.

    ``received``: records handed out. ``lost``: records the kernel could not
    store (None when nobody counts them). ``short``: records shorter than the
    size the reading handler asked for, dropped. ``unknown``: records of a type we do not know
    (perf only), skipped.
    """

    received: int
    lost: Optional[int]
    short: int
    unknown: int


class Ring:
    """One ring as :class:`RingReader` sees it; transports subclass it.

    :meth:`fetch` returns a buffer and the offsets of the payloads in it,
    not one memoryview per record: decoding straight from offsets is what
    makes the hot path fast (a view per record costs an allocation the
    garbage collector then tracks; about 30% of the time on 128-byte
    records). :meth:`payloads` makes the views when a caller wants them.

    A subclass implements ``_walk`` (the records between the consumer and
    producer positions), ``_skip`` (forget everything published, after a
    corruption), ``payload_length`` and ``commit`` (store the consumer
    position).
    """

    short = 0       # records shorter than the handler's min_size, dropped
    unknown = 0     # records of an unknown type, skipped

    def fetch(self, min_size: int) -> Tuple[memoryview, List[int], Optional[CorruptRingError]]:
        """``(buffer, offsets, error)``: where the payloads of the records
        ready in the ring start (each at least ``min_size`` bytes), valid
        until :meth:`commit` gives the space back to the kernel. When the
        ring is corrupt, ``error`` says how, the offsets are those of the
        records before the damage, and the next commit skips the rest."""
        buffer, offsets, problem = self._walk(min_size)
        if not problem:
            return buffer, offsets, None
        self._skip()
        return buffer, offsets, CorruptRingError("%s: %s; skipped the rest of the ring"
                                                 % (self, problem))

    def payloads(self, buffer: memoryview, offsets: List[int]) -> List[memoryview]:
        """One memoryview per payload, from what :meth:`fetch` returned."""
        length = self.payload_length
        return [buffer[offset:offset + length(buffer, offset)] for offset in offsets]

    def payload_length(self, buffer: memoryview, offset: int) -> int:
        """The length of the payload at ``offset``, from its record header."""
        raise NotImplementedError

    def _walk(self, min_size: int) -> Tuple[memoryview, List[int], str]:
        raise NotImplementedError

    def _skip(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        """Store the consumer position: the kernel may reuse what was read."""
        raise NotImplementedError


class Poller:
    """An epoll set plus a pipe whose read end sits in the set, so that
    :meth:`wake` (from any thread) ends a :meth:`wait`."""

    def __init__(self):
        self._epoll = select.epoll()
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            self._epoll.close()
            raise
        self._epoll.register(self._wake_r, select.EPOLLIN)

    def register(self, fd: int) -> None:
        """Add a ring's fd: readable when the kernel wakes its readers."""
        self._epoll.register(fd, select.EPOLLIN)

    def wait(self, timeout: Optional[float]) -> None:
        """Wait for a ring, a wake-up, or the end of ``timeout`` seconds."""
        for fd, _ in self._epoll.poll(-1 if timeout is None else timeout):
            if fd == self._wake_r:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass

    def fileno(self) -> int:
        """The epoll fd, for an outer event loop."""
        return self._epoll.fileno()

    def wake(self) -> None:
        """End a :meth:`wait` in another thread (for close)."""
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway

    def close(self) -> None:
        """Close the epoll fd and the wake-up pipe."""
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


class Lease:
    """Records lent to a handler by :meth:`RingReader.consume`.

    ``buffer`` holds the payloads, starting at ``offsets`` (each at least
    the ``min_size`` asked for): the ring itself, or a copy of a stretch
    that wraps around its end. Everything is valid until the handler
    returns; then the space goes back to the kernel, and the views
    :meth:`views` made are released. Copy what must outlive the call.
    Reading from offsets, not from a view per record, is what makes the hot
    path fast (a view per record costs an allocation the garbage collector
    then tracks; about 30% of the time on 128-byte records).
    """

    __slots__ = ("buffer", "offsets", "_ring", "_views")

    def __init__(self, ring: Ring, buffer: memoryview, offsets: List[int]):
        self.buffer = buffer
        self.offsets = offsets
        self._ring = ring
        self._views: List[memoryview] = []

    def payloads(self, buffer: memoryview, offsets: List[int]) -> List[memoryview]:
        """One memoryview per payload at ``offsets`` of ``buffer`` (the
        ``payloads`` argument of :meth:`RecordDecoder.decode_from`)."""
        views = self._ring.payloads(buffer, offsets)
        self._views.extend(views)
        return views

    def views(self) -> List[memoryview]:
        """One memoryview per record, exactly its payload (perf payloads may
        carry up to 7 bytes of padding after the record)."""
        return self.payloads(self.buffer, self.offsets)

    def release(self) -> None:
        """Release the views handed out, so the ring's mapping can be closed."""
        for view in self._views:
            view.release()
        self._views.clear()


Handler = Callable[[Lease], None]


class RingReader:
    """Reads records from a set of rings and lends them to a handler
    (:meth:`consume`), or hands them out decoded (:meth:`read`) or as views
    (:meth:`read_raw`).

    Subclasses fill ``self._rings`` and register their fds with
    ``self._poller``, pushing their teardown onto ``self._resources``
    (an ``ExitStack``) so that a constructor failing half-way can call
    :meth:`close` and release what it made.
    """

    def __init__(self, decoder: Optional[RecordDecoder] = None):
        self.decoder = decoder
        self._rings: List[Ring] = []
        self._received = 0
        self._error: Optional[CorruptRingError] = None   # to raise on the next read
        self._closed = False
        self._lock = threading.Lock()
        self._resources = ExitStack()
        self._poller = Poller()
        self._resources.callback(self._poller.close)

    # -- reading ---------------------------------------------------------------------

    def consume(self, handler: Handler, *, min_size: int = 0,
                timeout: Optional[float] = None) -> int:
        """Call ``handler(lease)`` with each ring's batch of records (a
        :class:`Lease`, valid until it returns), in ring order, waiting up
        to ``timeout`` seconds for the first (None: until there is one; 0:
        do not wait). Returns how many records the handler was given.

        Records shorter than ``min_size`` bytes are not handed out: they
        are counted in :meth:`stats` (``short``). A corrupt ring is reported
        by raising :class:`CorruptRingError`, but only once the good records
        read with it were handed out: on this call if it has none, else on
        the next.
        """
        with self._lock:
            if self._closed:
                return 0
            self._raise_error()
            deadline = None if timeout is None else time.monotonic() + timeout
            count = self._drain(handler, min_size)
            # A wake-up may bring nothing to hand out (a lost-record notice,
            # a record still being written): then wait again, to the deadline.
            while not count:
                self._raise_error()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._poller.wait(remaining)
                if self._closed:
                    break
                count = self._drain(handler, min_size)
            return count

    def read(self, timeout: Optional[float] = None) -> list:
        """Records that are ready, waiting as :meth:`consume` does.

        Records are decoded with the reader's decoder, or are ``bytes``
        copies of the payloads when it has none. An empty list means the
        time ran out or the reader was closed.
        """
        out: list = []
        decoder = self.decoder
        if decoder is not None:
            def handle(lease: Lease) -> None:
                out.extend(decoder.decode_from(lease.buffer, lease.offsets, lease.payloads))
            self.consume(handle, min_size=decoder.size, timeout=timeout)
        else:
            self.consume(lambda lease: out.extend(map(bytes, lease.views())), timeout=timeout)
        return out

    def __iter__(self) -> Iterator[Any]:
        """``for record in reader:``: records as they come, until the reader
        is closed (another thread's ``close()``, or the Collection's)."""
        while not self._closed:
            yield from self.read()

    def poll(self, callback: Callable[[Any], None], timeout: Optional[float] = None) -> int:
        """Hand each record ready within ``timeout`` seconds (as :meth:`read`)
        to ``callback``, in order (libbpf's ``ring_buffer__poll``); returns
        how many there were."""
        records = self.read(timeout)
        for record in records:
            callback(record)
        return len(records)

    def read_raw(self, handler: Callable[[List[memoryview]], None],
                 timeout: Optional[float] = None) -> int:
        """Call ``handler(views)`` with each ring's batch of payloads, one
        memoryview each (:meth:`Lease.views`, released when the handler
        returns), and return how many records it was given."""
        return self.consume(lambda lease: handler(lease.views()), timeout=timeout)

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _drain(self, handler: Handler, min_size: int) -> int:
        """Every ring is looked at, not only those epoll named: a ring that
        wakes the reader every N records may hold fewer than N."""
        count = 0
        for ring in self._rings:
            buffer, offsets, error = ring.fetch(min_size)
            try:
                if offsets:
                    lease = Lease(ring, buffer, offsets)
                    try:
                        handler(lease)
                    finally:
                        lease.release()
            finally:
                ring.commit()
            count += len(offsets)
            self._error = self._error or error
        self._received += count
        return count

    def fileno(self) -> int:
        """The epoll fd over all rings: readable when a ring woke us. For
        an outer event loop (``selectors``, asyncio's ``add_reader``); then
        call ``read(timeout=0)``, which looks at every ring anyway."""
        return self._poller.fileno()

    # -- counters --------------------------------------------------------------------

    def lost(self) -> Optional[int]:
        """Records the kernel side could not store, or None when not counted."""
        counts = self.lost_per_cpu()
        return None if counts is None else sum(counts.values())

    def lost_per_cpu(self) -> Optional[Dict[int, int]]:
        """Records the kernel dropped, per CPU, or None when not counted."""
        raise NotImplementedError

    def stats(self) -> ReaderStats:
        """Received, lost, too short and unknown records, in one tuple."""
        return ReaderStats(self._received, self.lost(),
                           sum(ring.short for ring in self._rings),
                           sum(ring.unknown for ring in self._rings))

    # -- teardown ---------------------------------------------------------------------

    def close(self) -> None:
        """Wake a blocked reader, then release every ring, fd and mapping.
        Safe to call twice and from another thread."""
        if self._closed:
            return
        self._closed = True
        self._poller.wake()
        with self._lock:
            self._resources.close()  # the rings stay, for their counters

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def release_mapping(mapping) -> None:
    """Unmap ``mapping``. A view a caller kept (against the read_raw
    contract) keeps the mapping alive instead of making close() fail; it is
    unmapped when that view dies."""
    try:
        mapping.close()
    except BufferError:
        pass
