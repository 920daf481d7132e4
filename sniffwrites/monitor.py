"""Load, attach, read, report, and take everything down again.

:class:`Monitor` owns the kernel side for one run: it builds the programs of
:mod:`sniffwrites.bpf.hooks` (the config becomes their frozen
``settings``), fills the watched-directory map, attaches, and lends the ring
buffer's records to a :class:`~sniffwrites.pipeline.Pipeline` (the reader's
handler), whose lines go to a :class:`~sniffwrites.sink.Sink`. Every
``interval`` it reports losses that happened since the last look
(``{"type": "lost"}``, from its :class:`~sniffwrites.losses.LossAccount`)
and, with ``--aggregate``, the counts of files still open. On stop (SIGINT, SIGTERM,
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

from pybpf.loader import Collection
from pybpf.safe_files import open_output_file

from .bpf import hooks
from .bpf.emit import counters, events
from .bpf.fdcache import fds as fd_cache
from .bpf.settings import followed
from .bpf.syscalls import syscall_names, syscall_table
from .bpf.walk import watched
from .config import Config
from .events import Lost
from .losses import LossAccount
from .output import Formatter
from .pipeline import Pipeline
from .sink import OutputClosed, Sink
from .snapshots import Snapshots, comm_of_pid, counts_of
from .summary import summary_counts, write_summary
from .views import MIN_RECORD_SIZE

#: Longest wait for records before looking at signals and timers.
POLL_SECONDS = 0.1


def programs(cfg: Config) -> List[Any]:
    """The programs this configuration needs (``sniff_fork`` only to follow)."""
    chosen = [hooks.sniff_sys_exit, hooks.sniff_close, hooks.sniff_exec, hooks.sniff_proc_exit]
    if cfg.follow and not cfg.debug:
        chosen.append(hooks.sniff_fork)
    return chosen


def collection_spec(cfg: Config) -> Any:
    """What to load for ``cfg``: its programs, the ring buffer and fd cache
    sized as it says."""
    from pybpf.dsl import collection_spec as spec_of
    spec = spec_of(programs(cfg))
    spec.maps[events.name].max_entries = cfg.ring_size
    spec.maps[fd_cache.name].max_entries = cfg.fd_cache_size
    return spec


def prebuild_all(cache_dir: Optional[str] = None) -> bool:
    """Every program of the kernel side from the build cache in
    ``cache_dir`` (or built and cached): see :mod:`sniffwrites.buildcache`."""
    from .buildcache import prebuild
    return prebuild(list(hooks.PROGRAMS), list(hooks.SOURCE_MODULES), cache_dir)


def dump_bytecode(cfg: Config) -> str:
    """The annotated disassembly of every program ``cfg`` would load."""
    parts = []
    for program in programs(cfg):
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
    """One run: the kernel objects, the reader lending records to
    :attr:`pipeline`, the loss account, and the sink the lines go to."""

    def __init__(self, cfg: Config, sink: Optional[Sink] = None,
                 formatter: Optional[Formatter] = None, log=None):
        self.cfg = cfg
        self.sink = sink if sink is not None else Sink(cfg.output)
        self.formatter = formatter or Formatter(cfg.fmt, verbose=cfg.verbose or cfg.debug)
        self.log = log or (lambda message: print("sniffwrites: " + message, file=sys.stderr,
                                                 flush=True))
        self.pipeline = Pipeline(cfg, self.formatter, self._write, syscall_names())
        self.losses = LossAccount()
        self._stack = ExitStack()
        self._collection: Any = None
        self.reader: Any = None
        self._stop = False
        self._reopen = False
        self.exit_reason = ""
        self.startup_seconds = 0.0
        self._snapshots = Snapshots()
        #: what the reader lends each batch to (``record`` lends it to its file)
        self.handler = self.pipeline.handle
        self._cut_sweeps_seen = 0

    # -- set up ---------------------------------------------------------------------------

    def start(self) -> None:
        """Build, load, fill the maps, attach, open the reader. Everything
        made is closed again if a step fails."""
        started = time.perf_counter()
        cfg = self.cfg
        try:
            prebuild_all(cfg.cache_dir)
            coll = Collection(collection_spec(cfg),
                              config=cfg.kernel_settings(os.getpid(), syscall_table()))
            self._stack.callback(coll.close)
            self._collection = coll
            watched_map = coll.maps[watched.name]
            for index, w in enumerate(cfg.dirs, 1):
                watched_map[{"dev": w.kernel_dev, "pad": 0, "ino": w.ino}] = index
            if cfg.follow and not cfg.debug:
                followed_map = coll.maps[followed.name]
                for pid in [cfg.pid] + descendants(cfg.pid):
                    followed_map[pid] = 1
            coll.attach()
            from pybpf.kernel.ringbuf import RingBufReader
            self.reader = self._stack.enter_context(RingBufReader(
                coll.maps[events.name], lost_counter_map=coll.maps[events.lost.name]))
            self.losses = LossAccount(self.reader, coll.maps[counters.name])
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.perf_counter() - started
        if cfg.ready_file:
            with open(open_output_file(cfg.ready_file, truncate=True), "w") as f:
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
        self.begin()
        deadline = time.monotonic() + cfg.duration if cfg.duration else None
        interval = cfg.interval or 1.0
        next_tick = time.monotonic() + interval
        eager = self.sink.path is None
        consume, handle = self.reader.consume, self.handler
        # What start-up made (the DSL, the programs, BTF) lives until exit:
        # keep it out of the collector's full passes, which would otherwise
        # pause the reader while the ring fills.
        gc.freeze()
        try:
            while not self._stop:
                consume(handle, min_size=MIN_RECORD_SIZE, timeout=POLL_SECONDS)
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

    def begin(self) -> None:
        """What the output starts with (the table's header)."""
        header = self.formatter.header()
        if header:
            self._write([header])

    def tick(self) -> None:
        """Once per interval: losses and aggregate snapshots; flush."""
        self._report_losses()
        self._purge_after_cut_sweeps()
        if self.cfg.aggregate:
            self._snapshot()
        self.sink.flush()

    def finish(self) -> None:
        """Detach, drain the ring, report the last losses and the summary."""
        self._detach()
        while self.reader.consume(self.handler, min_size=MIN_RECORD_SIZE, timeout=0):
            pass                                    # until a read brings nothing
        if self.cfg.aggregate:
            self._snapshot()
        self._report_losses()
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

    def _report_losses(self) -> None:
        lost = self.losses.notice(time.monotonic_ns())
        if lost is not None:
            self.write_lost(lost)

    def write_lost(self, lost: Lost) -> None:
        """A loss notice, in the stream."""
        self._write([self.formatter.lost(lost)])

    def _purge_after_cut_sweeps(self) -> None:
        """A sweep cut short (``sweep_incomplete``: past MAX_SWEEP_BOUNDED fds
        on a kernel without bpf_loop) leaves fd cache entries of a process
        that exited, where a reused pid would find them: drop the entries of
        every process that is gone. A deleted entry costs one walk, never a
        wrong answer."""
        cut = self.losses.counter("sweep_incomplete")
        if cut == self._cut_sweeps_seen or self._collection is None:
            return
        self._cut_sweeps_seen = cut
        fds = self._collection.maps[fd_cache.name]
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
        fds = coll.maps[fd_cache.name]

        def lookup(pid: int, fd: int) -> Any:
            value = fds.get({"tgid": pid, "fd": fd})
            return None if value is None else counts_of(value)
        self._snapshots.take(self.pipeline, time.monotonic_ns(), lookup, comm_of_pid)

    def summary(self) -> Dict[str, int]:
        return summary_counts(self.pipeline, self.losses)

    def write_summary(self) -> None:
        """JSON: a ``{"type": "summary"}`` record in the stream (every key,
        always). Text and table: one line on stderr."""
        write_summary(self.summary(), self.formatter, self._write, self.log)

    # -- tear down ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the reader, links, programs and maps (in that order), and the sink."""
        self.losses.detach()
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
