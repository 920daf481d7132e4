"""Load, attach, read, report, and take everything down again.

:class:`Monitor` owns the kernel side for one run: it builds the programs of
:mod:`pybpf.programs.sniffwrites` (the config becomes their frozen
``settings``), fills the watched-directory map, attaches, and reads the ring
buffer into a :class:`~sniffwrites.process.Processor`, whose lines go to a
:class:`~sniffwrites.sink.Sink`. Every ``interval`` it reports losses that
happened since the last look (``{"type": "lost"}``) and, with
``--aggregate``, the counts of files still open. On stop (SIGINT, SIGTERM,
``--duration``, a closed pipe) it detaches first, drains what the ring still
holds, and closes every program, map and link it made: no BPF object
outlives the process.

The BPF ring buffer (Linux 5.8) is the only transport: the programs also
need kernel BTF and ``bpf_probe_read_kernel`` (5.5), and no LTS kernel has
those without the ring buffer, so a perf-buffer fallback would never run.
Without ``bpf_loop`` (before 5.17) the programs are built with bounded
loops instead (``pybpf.programs.lib_paths``).
"""

import gc
import os
import signal
import sys
import time
from contextlib import ExitStack
from typing import Any, Dict, List, Optional

from .config import Config
from .events import OPERATIONS, Aggregate, Lost
from .output import Formatter
from .process import Processor
from .sink import OutputClosed, Sink

#: Longest wait for records before looking at signals and timers.
POLL_SECONDS = 0.1


def collection(cfg: Config) -> Any:
    """The programs this configuration needs (``sniff_fork`` only to follow)."""
    from pybpf.dsl import Collection

    from .bpf import hooks
    specs = [hooks.sniff_sys_exit, hooks.sniff_close, hooks.sniff_exec, hooks.sniff_proc_exit]
    if cfg.follow and not cfg.debug:
        specs.append(hooks.sniff_fork)
    return Collection(specs)


def prebuild_all() -> bool:
    """Every program of the kernel side from the build cache (or built and
    cached): see :mod:`sniffwrites.buildcache`."""
    from .bpf import hooks
    from .buildcache import prebuild
    return prebuild(list(hooks.PROGRAMS), list(hooks.SOURCE_MODULES))


def dump_bytecode(cfg: Config) -> str:
    """The annotated disassembly of every program ``cfg`` would load."""
    parts = []
    for program in collection(cfg).specs:
        code = program.build()
        parts.append("; ---- %s: %s (%d instructions) ----"
                     % (program.name, program.target, len(code.instructions)))
        parts.append(program.disasm(source=True))
    return "\n".join(parts)


def descendants(pid: int) -> List[int]:
    """``pid``'s descendants now alive (from /proc), for --follow."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


class Monitor:
    def __init__(self, cfg: Config, sink: Optional[Sink] = None,
                 formatter: Optional[Formatter] = None, log=None):
        self.cfg = cfg
        self.sink = sink if sink is not None else Sink(cfg.output)
        self.formatter = formatter or Formatter(cfg.fmt, verbose=cfg.verbose or cfg.debug)
        self.log = log or (lambda message: print("sniffwrites: " + message, file=sys.stderr,
                                                 flush=True))
        from .bpf.syscalls import syscall_names
        self.processor = Processor(cfg, self.formatter, syscall_names())
        self._stack = ExitStack()
        self._collection: Any = None
        self.reader: Any = None
        self._stop = False
        self._reopen = False
        self.exit_reason = ""
        self.startup_seconds = 0.0
        self._ring_lost = 0
        self._counters: Dict[str, int] = {}
        self._reported_lost = (0, 0)
        self._snapshots: Dict[Any, tuple] = {}
        self._cut_sweeps_seen = 0

    # -- set up ---------------------------------------------------------------------------

    def start(self) -> None:
        """Build, load, fill the maps, attach, open the reader. Everything
        made is closed again if a step fails."""
        started = time.perf_counter()
        cfg = self.cfg
        from .bpf.emit import events
        from .bpf.fdcache import fds
        from .bpf.syscalls import syscall_table
        try:
            events.max_entries = cfg.ring_size
            fds.max_entries = cfg.fd_cache_size
            prebuild_all()
            coll = collection(cfg)
            coll.load(config=cfg.kernel_settings(os.getpid(), syscall_table()))
            self._stack.callback(coll.close)
            self._collection = coll
            watched = coll.maps["watched"]
            for index, w in enumerate(cfg.dirs, 1):
                watched[{"dev": w.kernel_dev, "pad": 0, "ino": w.ino}] = index
            if cfg.follow and not cfg.debug:
                followed = coll.maps["followed"]
                for pid in [cfg.pid] + descendants(cfg.pid):
                    followed[pid] = 1
            coll.attach()
            from pybpf.kernel.ringbuf import RingBufReader
            self.reader = self._stack.enter_context(RingBufReader(
                coll.maps["events"], lost_counter_map=coll.maps["events_lost"],
                decoder=self.processor))
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.perf_counter() - started
        if cfg.ready_file:
            with open(cfg.ready_file, "w") as f:
                f.write("%d\n" % os.getpid())
        what = ", ".join(w.path for w in cfg.dirs) or "every file"
        self.log("attached in %.0f ms, watching %s%s" % (
            self.startup_seconds * 1000, what, " (Ctrl-C to stop)" if sys.stdin.isatty() else ""))

    # -- running --------------------------------------------------------------------------

    def request_stop(self, reason: str = "") -> None:
        self._stop = True
        self.exit_reason = self.exit_reason or reason

    def request_reopen(self) -> None:
        self._reopen = True

    def install_signals(self) -> None:
        def stop(signum, frame):
            self.request_stop(signal.Signals(signum).name)
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, stop)
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP,
                                                lambda signum, frame: self.request_reopen())
        self._stack.callback(lambda: [signal.signal(s, h) for s, h in previous.items()])

    def run(self) -> None:
        """Read until asked to stop, then drain and write the summary."""
        cfg = self.cfg
        header = self.formatter.header()
        if header:
            self.sink.write_lines([header])
        deadline = time.monotonic() + cfg.duration if cfg.duration else None
        interval = cfg.interval or 1.0
        next_tick = time.monotonic() + interval
        eager = self.sink.path is None
        read = self.reader.read
        # What start-up made (the DSL, the programs, BTF) lives until exit:
        # keep it out of the collector's full passes, which would otherwise
        # pause the reader while the ring fills.
        gc.freeze()
        try:
            while not self._stop:
                read(timeout=POLL_SECONDS)
                self._write(self.processor.take_lines())
                if eager:
                    self.sink.flush()
                if self._reopen:
                    self._reopen = False
                    self.sink.reopen()
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + interval
                    self.tick()
                if deadline is not None and now >= deadline:
                    self.request_stop("duration")
            self.finish()
        except OutputClosed:
            self.exit_reason = "output closed"
            self._detach()

    def tick(self) -> None:
        """Once per interval: losses and aggregate snapshots; flush."""
        self._report_losses()
        self._purge_after_cut_sweeps()
        if self.cfg.aggregate:
            self._snapshot()
        self._write(self.processor.take_lines())
        self.sink.flush()

    def finish(self) -> None:
        """Detach, drain the ring, report the last losses and the summary."""
        self._detach()
        before = -1
        while self.processor.records != before:     # until a read brings nothing
            before = self.processor.records
            self.reader.read(timeout=0)
            self._write(self.processor.take_lines())
        self._write(self.processor.take_lines())
        if self.cfg.aggregate:
            self._snapshot()
        self._report_losses()
        self._write(self.processor.take_lines())
        self.write_summary()
        self.sink.flush()

    def _detach(self) -> None:
        """Stop the programs (the maps and ring stay readable)."""
        coll = self._collection
        if coll is not None:
            for link in list(coll.links):
                link.close()

    def _write(self, lines: List[str]) -> None:
        if lines:
            self.sink.write_lines(lines)

    # -- losses and counts ----------------------------------------------------------------

    def kernel_counters(self) -> Dict[str, int]:
        totals: Dict[str, int] = {}
        if self._collection is None:
            return dict(self._counters)
        try:
            per_cpu = self._collection.maps["counters"][0]
        except (KeyError, OSError):
            return dict(self._counters)
        for values in per_cpu:
            for name, value in values.items():
                if not name.startswith("_"):
                    totals[name] = totals.get(name, 0) + value
        self._counters = totals
        return totals

    def losses(self) -> Dict[str, int]:
        counters = self.kernel_counters()
        ring = self.reader.lost() if self.reader is not None and not self.reader.closed \
            else self._ring_lost
        self._ring_lost = ring or 0
        return {"lost_records": self._ring_lost,
                "map_full": counters.get("fd_map_full", 0) + counters.get("proc_map_full", 0),
                "walk_failed": counters.get("walk_failed", 0),
                "sweep_incomplete": counters.get("sweep_incomplete", 0),
                "aggregate_untracked": counters.get("aggregate_untracked", 0)}

    def _report_losses(self) -> None:
        now = self.losses()
        ring, full = now["lost_records"], now["map_full"]
        last_ring, last_full = self._reported_lost
        if ring > last_ring or full > last_full:
            self._reported_lost = (ring, full)
            self.processor.lines.append(self.formatter.lost(
                Lost(time.monotonic_ns(), ring - last_ring, full - last_full)))

    def _purge_after_cut_sweeps(self) -> None:
        """A sweep cut short (``sweep_incomplete``: past MAX_SWEEP_BOUNDED fds
        on a kernel without bpf_loop) leaves fd cache entries of a process
        that exited, where a reused pid would find them: drop the entries of
        every process that is gone. A deleted entry costs one walk, never a
        wrong answer."""
        cut = self._counters.get("sweep_incomplete", 0)
        if cut == self._cut_sweeps_seen or self._collection is None:
            return
        self._cut_sweeps_seen = cut
        fds = self._collection.maps["fds"]
        gone = [key for key in fds.keys() if not os.path.exists("/proc/%d" % key.tgid)]
        for key in gone:
            try:
                del fds[key]
            except KeyError:    # the kernel's own sweep got there first
                pass

    def _snapshot(self) -> None:
        """--aggregate: the counts of files still open, when they changed."""
        coll = self._collection
        if coll is None:
            return
        fds = coll.maps["fds"]
        processor = self.processor
        now = time.monotonic_ns()
        for (pid, fd), file_id in list(processor.open_files.items()):
            value = fds.get({"tgid": pid, "fd": fd})
            if value is None or value.file_id != file_id:
                continue
            counts = (value.reads, value.read_bytes, value.writes, value.write_bytes)
            if self._snapshots.get((pid, fd, file_id)) == counts:
                continue
            self._snapshots[(pid, fd, file_id)] = counts
            info, _ = processor.table.lookup(file_id, pid, fd)
            processor.emit_aggregate(Aggregate(now, pid, pid, 0, 0, self._comm(pid), fd,
                                               info.path, *counts, False, info.truncated))
        live = set(processor.open_files.items())
        for key in list(self._snapshots):
            if ((key[0], key[1]), key[2]) not in live:
                del self._snapshots[key]

    def _comm(self, pid: int) -> bytes:
        """A process's name for a snapshot (the kernel sent none)."""
        try:
            with open("/proc/%d/comm" % pid, "rb") as f:
                return f.read().rstrip(b"\n")
        except OSError:
            return b"?"

    def summary(self) -> Dict[str, int]:
        processor = self.processor
        ops = processor.ops
        counts = {"events": sum(v for k, v in ops.items() if k != "aggregate")}
        order = list(OPERATIONS) + sorted(set(ops) - set(OPERATIONS))
        for op in order:
            if ops.get(op):
                counts[op if op == "aggregate" else "op_" + op] = ops[op]
        counts.update(self.losses())
        counts["unresolved_files"] = processor.table.unresolved
        return counts

    def write_summary(self) -> None:
        """JSON: a ``{"type": "summary"}`` record in the stream (every key,
        always). Text and table: one line on stderr."""
        counts = self.summary()
        if self.cfg.fmt == "json":
            self._write([self.formatter.summary(counts)])
            return
        ops = ", ".join("%s %d" % (key[3:], n) for key, n in counts.items()
                        if key.startswith("op_"))
        parts = ["%d events%s" % (counts["events"], " (%s)" % ops if ops else "")]
        if "aggregate" in counts:
            parts.append("%d aggregate records" % counts["aggregate"])
        parts.append("lost records %d, map full %d" % (counts["lost_records"],
                                                       counts["map_full"]))
        parts += ["%s %d" % (key.replace("_", " "), n) for key, n in counts.items()
                  if n and key in ("walk_failed", "sweep_incomplete", "aggregate_untracked",
                                   "unresolved_files")]
        self.log("; ".join(parts))

    # -- tear down ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the reader, links, programs and maps (in that order), and the sink."""
        if self.reader is not None and not self.reader.closed:
            try:
                self._ring_lost = self.reader.lost() or 0
            except OSError:
                pass
        stack, self._stack = self._stack, ExitStack()
        try:
            stack.close()
        finally:
            self._collection = None
            self.sink.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
