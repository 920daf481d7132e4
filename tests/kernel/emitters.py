"""Programs that produce known records, for the reader tests and the reader benchmark.

:class:`Emitter` loads a tracepoint program on ``syscalls/sys_enter_getppid``
that, for the calling process only, takes a sequence number from a counter
(every attempt counts, so the counter is "what the program tried to emit")
and emits one record through a perf event array or a BPF ring buffer:

    u64 seq; u32 tgid; u32 cpu; then u64 words seq+2, seq+3, ... cut to size

Ring buffer records are reserved and submitted; a failed reserve bumps a
per-CPU counter (the ``lost`` map), the program side of loss counting that
:class:`pybpf.kernel.ringbuf.RingBufReader` reads. :func:`counter_program`
only counts calls, for the attach tests.

Written with :mod:`pybpf.asm` (the DSL does not exist yet); the C each block
mirrors is in the comments.
"""

import contextlib
import os
import platform
import struct
import threading
import time

import construct

from pybpf import asm, consts, isa
from pybpf.isa import R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10
from pybpf.kernel import features
from pybpf.kernel.link import attach_tracepoint
from pybpf.kernel.maps import Map, MapSpec
from pybpf.kernel.perf import PerfReader
from pybpf.kernel.prog import Program
from pybpf.consts import BPF_PROG_TYPE_TRACEPOINT
from pybpf.kernel.records import decoder_for
from pybpf.kernel.ringbuf import RingBufReader

PERF = "perf"
RINGBUF = "ringbuf"
TRACEPOINT = "syscalls/sys_enter_getppid"
NR_GETPPID = {"x86_64": 110, "aarch64": 173}[platform.machine()]
BPF_F_CURRENT_CPU = 0xFFFFFFFF
KEY_OFFSET = -4              # u32 key 0 lives at r10-4


def event_struct(size: int) -> construct.Struct:
    """The declaration of a ``size``-byte record (at least 16 bytes)."""
    return construct.Struct("seq" / construct.Int64ul, "tgid" / construct.Int32ul,
                            "cpu" / construct.Int32ul, "fill" / construct.Bytes(size - 16))


def expected_fill(seq: int, size: int) -> bytes:
    words = (size + 7) // 8
    return b"".join(struct.pack("<Q", (seq + k) & (2**64 - 1)) for k in range(2, words))[:size - 16]


def _filter_to_config_tgid(a: asm.Assembler) -> None:
    """r7 = tgid; exit unless it equals config[0]; leaves key 0 at r10-4."""
    a.emit(isa.mov(R6, R1))                          # r6 = ctx
    a.call("get_current_pid_tgid")
    a.emit(isa.alu(isa.BPF_RSH, R0, 32))
    a.emit(isa.mov(R7, R0))                          # r7 = tgid
    a.emit(isa.st(4, R10, KEY_OFFSET, 0))            # u32 key = 0
    _lookup(a, "config")                             # r0 = &config[0] or exit
    a.emit(isa.ldx(4, R1, R0, 0))
    a.jump(isa.BPF_JNE, R1, R7, "out")               # if (config[0] != tgid) return 0


def _lookup(a: asm.Assembler, map_name: str) -> None:
    """r0 = bpf_map_lookup_elem(&map_name, &key); if (!r0) goto out."""
    a.ld_map(R1, map_name)
    a.emit(isa.mov(R2, R10))
    a.emit(isa.alu(isa.BPF_ADD, R2, KEY_OFFSET))
    a.call("map_lookup_elem")
    a.jump(isa.BPF_JEQ, R0, 0, "out")


def _store_record(a: asm.Assembler, base: isa.Reg, offset: int, size: int) -> None:
    """Write the record for seq (r8), tgid (r7), cpu (r9) at base+offset,
    exactly ``size`` bytes (the last word is cut with 4/2/1-byte stores)."""
    a.emit(isa.stx(8, base, offset, R8))
    a.emit(isa.mov(R1, R9))
    a.emit(isa.alu(isa.BPF_LSH, R1, 32))
    a.emit(isa.alu(isa.BPF_OR, R1, R7))
    a.emit(isa.stx(8, base, offset + 8, R1))
    for word in range(2, (size + 7) // 8):
        a.emit(isa.mov(R1, R8))
        a.emit(isa.alu(isa.BPF_ADD, R1, word))
        at, left = offset + 8 * word, min(8, size - 8 * word)
        for piece in (8, 4, 2, 1):
            if left >= piece:
                a.emit(isa.stx(piece, base, at, R1))
                if left > piece:
                    a.emit(isa.alu(isa.BPF_RSH, R1, piece * 8))
                at, left = at + piece, left - piece


def emitter_program(transport: str, size: int) -> asm.AssembledProgram:
    if size < 16:
        raise ValueError("records have at least 16 bytes")
    a = asm.Assembler("emit_%s" % transport)
    _filter_to_config_tgid(a)
    _lookup(a, "counter")
    if features.probe().atomic_fetch:
        a.emit(isa.mov(R8, 1))
        a.emit(isa.atomic(8, isa.BPF_ADD | isa.BPF_FETCH, R0, 0, R8))  # seq = counter++
    else:
        # No fetching atomics before Linux 5.12: seq = *counter; *counter = seq + 1.
        # Not atomic, so trigger_on_cpus() lets the CPUs take turns there.
        a.emit(isa.ldx(8, R8, R0, 0))
        a.emit(isa.mov(R1, R8))
        a.emit(isa.alu(isa.BPF_ADD, R1, 1))
        a.emit(isa.stx(8, R0, 0, R1))
    a.call("get_smp_processor_id")
    a.emit(isa.mov(R9, R0))                                       # r9 = cpu
    if transport == PERF:
        stack = -(8 + (size + 7) // 8 * 8)
        _store_record(a, R10, stack, size)
        # bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &record, size)
        a.emit(isa.mov(R1, R6))
        a.ld_map(R2, "events")
        a.emit(isa.mov(R3, -1, alu64=False))                      # 0xffffffff, zero-extended
        a.emit(isa.mov(R4, R10))
        a.emit(isa.alu(isa.BPF_ADD, R4, stack))
        a.emit(isa.mov(R5, size))
        a.call("perf_event_output")
    else:
        # record = bpf_ringbuf_reserve(&events, size, 0); if (!record) { lost[cpu]++; return 0; }
        a.ld_map(R1, "events")
        a.emit(isa.mov(R2, size))
        a.emit(isa.mov(R3, 0))
        a.call("ringbuf_reserve")
        a.jump(isa.BPF_JEQ, R0, 0, "lost")
        _store_record(a, R0, 0, size)
        a.emit(isa.mov(R1, R0))
        a.emit(isa.mov(R2, 0))
        a.call("ringbuf_submit")
        a.goto("out")
        a.label("lost")
        _lookup(a, "lost")
        a.emit(isa.mov(R1, 1))
        a.emit(isa.atomic(8, isa.BPF_ADD, R0, 0, R1))
    a.label("out")
    a.emit(isa.mov(R0, 0))
    a.emit(isa.exit_())
    return a.assemble()


def counter_program(raw_syscall: bool = False) -> asm.AssembledProgram:
    """counter[0]++ for each event of the test process; on the raw
    ``sys_enter`` tracepoint only for getppid (args[1] is the syscall number)."""
    a = asm.Assembler("count")
    if raw_syscall:
        a.emit(isa.ldx(8, R1, R1, 8))
        a.jump(isa.BPF_JNE, R1, NR_GETPPID, "out")
    _filter_to_config_tgid(a)
    _lookup(a, "counter")
    a.emit(isa.mov(R1, 1))
    a.emit(isa.atomic(8, isa.BPF_ADD, R0, 0, R1))
    a.label("out")
    a.emit(isa.mov(R0, 0))
    a.emit(isa.exit_())
    return a.assemble()


def array(name: str, value_size: int, map_type: int = consts.BPF_MAP_TYPE_ARRAY) -> Map:
    return Map.create(MapSpec(map_type, key_size=4, value_size=value_size, max_entries=1,
                              name=name))


def config_maps() -> dict:
    """``config`` (u32 tgid = this process) and ``counter`` (u64)."""
    maps = {"config": array("config", 4), "counter": array("counter", 8)}
    maps["config"][0] = os.getpid()
    return maps


class Emitter:
    """The maps, the loaded emitter program and its attachment.

    ``ring_size``: ring buffer bytes (the perf reader picks its own pages).
    ``tried()`` is how many records the program attempted.
    """

    def __init__(self, transport: str, record_size: int = 128, ring_size: int = 64 * 4096):
        self.transport = transport
        self.record_size = record_size
        self.maps = config_maps()
        try:
            if transport == PERF:
                self.maps["events"] = Map.create(MapSpec(consts.BPF_MAP_TYPE_PERF_EVENT_ARRAY,
                                                         name="events"))
            else:
                self.maps["events"] = Map.create(MapSpec(consts.BPF_MAP_TYPE_RINGBUF,
                                                         max_entries=ring_size, name="events"))
                self.maps["lost"] = array("lost", 8, consts.BPF_MAP_TYPE_PERCPU_ARRAY)
            self.prog = Program.load(emitter_program(transport, record_size),
                                     prog_type=BPF_PROG_TYPE_TRACEPOINT, name="emit",
                                     maps=self.maps)
            self.link = attach_tracepoint(self.prog, TRACEPOINT)
        except BaseException:
            self.close()
            raise

    @property
    def events(self) -> Map:
        return self.maps["events"]

    @property
    def lost_counter(self) -> Map:
        return self.maps["lost"]

    def reader(self, **options):
        """A reader of this emitter's records, decoding them."""
        decoder = decoder_for(event_struct(self.record_size), "Event")
        if self.transport == PERF:
            return PerfReader(self.events, decoder=decoder, **options)
        return RingBufReader(self.events, lost_counter_map=self.lost_counter, decoder=decoder,
                             **options)

    @staticmethod
    def trigger(count: int) -> None:
        getppid = os.getppid
        for _ in range(count):
            getppid()

    def tried(self) -> int:
        return self.maps["counter"][0]

    def close(self) -> None:
        for name in ("link", "prog"):
            if hasattr(self, name):
                getattr(self, name).close()
        for m in self.maps.values():
            m.close()

    def __enter__(self) -> "Emitter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def pinned(cpu: int):
    """Run the calling thread on ``cpu`` only (perf records land in its ring)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def collect(reader, count: int, timeout: float = 5.0) -> list:
    """Read until ``count`` records arrived or ``timeout`` seconds passed."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += reader.read(timeout=max(0.0, deadline - time.monotonic()))
    return got


def drain(reader) -> list:
    """Every record ready now."""
    got: list = []
    while True:
        batch = reader.read(timeout=0)
        if not batch:
            return got
        got += batch


def check_chunked_reads(emitter: "Emitter", reader, chunk: int, chunks: int) -> None:
    """Emit and read ``chunks`` batches of ``chunk`` records, so that the
    records walk around the ring; every one arrives intact, none is lost."""
    records: list = []
    for _ in range(chunks):
        emitter.trigger(chunk)
        records += collect(reader, chunk)
    check_records(records, emitter.record_size, chunk * chunks)
    assert reader.lost() == 0


def check_close_wakes_a_blocked_read(reader) -> None:
    """``reader.close()`` from another thread ends a ``read()`` that waits
    without a timeout, which returns no records."""
    result = []
    thread = threading.Thread(target=lambda: result.append(reader.read()))
    thread.start()
    thread.join(0.05)
    assert thread.is_alive()
    reader.close()
    thread.join(2)
    assert not thread.is_alive() and result == [[]]


def check_records(records: list, size: int, count: int) -> None:
    """Exactly sequence numbers 0..count-1, each once, increasing within
    each CPU, with this process's tgid and the expected fill."""
    pid = os.getpid()
    assert sorted(r.seq for r in records) == list(range(count))
    last: dict = {}
    for r in records:
        assert (r.tgid, r.fill) == (pid, expected_fill(r.seq, size)), r
        assert r.seq > last.get(r.cpu, -1), "CPU %d: %d after %d" % (r.cpu, r.seq, last[r.cpu])
        last[r.cpu] = r.seq


def trigger_on_cpus(count: int, cpus) -> None:
    """``count`` getppid calls split over threads pinned to ``cpus``."""
    def run(cpu: int, calls: int) -> None:
        with pinned(cpu):
            Emitter.trigger(calls)
    share, extra = divmod(count, len(cpus))
    threads = [threading.Thread(target=run, args=(cpu, share + (i < extra)))
               for i, cpu in enumerate(cpus)]
    if not features.probe().atomic_fetch:   # the emitter's counter is not atomic
        for thread in threads:
            thread.start()
            thread.join()
        return
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def straddles(record_bytes: int, count: int, ring_bytes: int) -> bool:
    """Whether some of ``count`` back-to-back records crosses the ring's end."""
    return any(i * record_bytes % ring_bytes + record_bytes > ring_bytes for i in range(count))
