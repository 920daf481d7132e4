"""``sniffwrites``: watch file activity in directories, from the kernel.

    sniffwrites monitor -d /srv/data                 # every open/read/write/close/...
    sniffwrites monitor -d . -f table -o write
    sniffwrites monitor -d /srv -f json --output events.jsonl --aggregate
    sniffwrites top -d /srv                           # live view, sorted by bytes
    sniffwrites record -d /srv -o srv.rec --max-size 1000000000   # raw, for later
    sniffwrites report srv.rec -f json -o write       # what monitor would have printed

Errors are one line on stderr and a non-zero exit: 1 for what the system
refuses (privileges, kernel features), 2 for bad usage (a directory that
does not exist). ``SNIFFWRITES_TRACEBACK=1`` shows the traceback behind an
error instead.
"""

import os
import sys
from typing import Any, Optional

import click

from pybpf import __version__

from .config import Config, ConfigError
from .events import OPERATIONS

EXIT_FAILURE, EXIT_USAGE = 1, 2
PRIVILEGE_MESSAGE = "sniffwrites needs root (or CAP_BPF+CAP_PERFMON)"
# include/uapi/linux/capability.h
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


def has_privileges() -> bool:
    """Root, or the capabilities that load tracing programs."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return bool(caps & (1 << CAP_SYS_ADMIN)) or (
                        bool(caps & (1 << CAP_BPF)) and bool(caps & (1 << CAP_PERFMON)))
    except OSError:
        pass
    return False


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    click.echo("sniffwrites: " + message, err=True)
    sys.exit(code)


def explain(exc: BaseException) -> str:
    """One line for an error from loading or attaching."""
    from pybpf.errors import BPFPermissionError, UnsupportedFeature, VerifierError
    if isinstance(exc, BPFPermissionError):
        return PRIVILEGE_MESSAGE
    if isinstance(exc, UnsupportedFeature):
        return "%s; run on Linux 5.17 or later" % exc.message if hasattr(exc, "message") \
            else str(exc)
    if isinstance(exc, OSError) and exc.filename:     # the ready file
        return "%s: %s" % (exc.filename, exc.strerror)
    if isinstance(exc, VerifierError):
        return ("the kernel refused the program (%s); run with SNIFFWRITES_TRACEBACK=1 for "
                "the verifier log" % str(exc).splitlines()[0])
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# Probe answers sniffwrites cannot run without (BTF: loading it, for the
# programs' line info and the bpf_loop callbacks).
NEEDED_FEATURES = ("ringbuf", "bpf_probe_read_kernel", "btf")


def missing_feature() -> Optional[str]:
    """What this kernel lacks, or refuses us, that sniffwrites needs (asked
    only after a failure: probing costs start-up time)."""
    from pybpf.kernel import features
    try:
        found = features.probe()
    except Exception:    # a failed probe says nothing useful here
        return None
    for name in NEEDED_FEATURES:
        answer = found.answer(name)
        if answer.state == features.ABSENT:
            return "this kernel lacks %s (added in Linux %s); sniffwrites needs it" % (
                name, features.SINCE[name])
        if answer.state == features.REFUSED:
            return ("this kernel has %s but refuses it to sniffwrites (%s): missing capabilities "
                    "or a policy (an LSM, lockdown, a sysctl) stand in the way" % (name,
                                                                                   answer.detail))
    return None


def make_config(**options: Any) -> Config:
    try:
        cfg = Config.make(**options)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    for warning in cfg.warnings:
        click.echo("sniffwrites: warning: " + warning, err=True)
    return cfg


def run_monitor(cfg: Config, monitor_factory=None, sink: bool = True) -> int:
    """Start a monitor, run it until stopped, and exit cleanly. ``sink``:
    open the output for it (``record`` opens its own file)."""
    if not has_privileges():
        fail(PRIVILEGE_MESSAGE)
    from .monitor import Monitor
    from .sink import OutputClosed, Sink
    try:
        monitor = (monitor_factory or Monitor)(cfg, Sink(cfg.output) if sink else None)
    except OSError as exc:
        fail("cannot open %s: %s" % (exc.filename or cfg.output, exc.strerror or exc),
             EXIT_USAGE)
    try:
        # Signals first: the ready file is written as soon as the programs
        # are attached, and a Ctrl-C right then must still end in a drain
        # and a summary, not in click's "Aborted!".
        monitor.install_signals()
        try:
            monitor.start()
        except Exception as exc:
            if os.environ.get("SNIFFWRITES_TRACEBACK"):
                raise
            message = missing_feature() or explain(exc)
            monitor.close()
            fail(message)
        monitor.run()
    except OutputClosed:
        pass
    except OSError as exc:        # writing the output (a full disk)
        if os.environ.get("SNIFFWRITES_TRACEBACK"):
            raise
        monitor.close()
        fail("cannot write the output%s: %s" % (" " + exc.filename if exc.filename else "",
                                                 exc.strerror or exc))
    finally:
        monitor.close()
    return 0


def common_options(fn):
    for decorator in reversed([
        click.option("-d", "--dir", "dirs", multiple=True, metavar="DIR",
                     help="Directory to watch (repeatable). Default: every file."),
        click.option("-p", "--process", "comm", metavar="NAME",
                     help="Only processes with this name (comm)."),
        click.option("--pid", type=int, default=0, help="Only this process id."),
        click.option("--follow", is_flag=True, help="With --pid: its children too."),
        click.option("--cache-dir", metavar="DIR",
                     help="Keep built programs in DIR (used only if it and its ancestors "
                          "are private to you or root). Default: /var/cache/sniffwrites as "
                          "root, else ~/.cache/sniffwrites."),
    ]):
        fn = decorator(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sniffwrites")
def main() -> None:
    """Watch file activity (open, read, write, close, truncate, rename,
    unlink) with eBPF, filtered in the kernel."""


def monitor_options(record: bool):
    """Every option of ``monitor``; ``record`` takes them all, but ``-o`` is
    its recording (``--operation`` is then long only)."""
    operation = ("--operation",) if record else ("-o", "--operation")
    output = click.option("-o", "--output", metavar="FILE", required=True,
                          help="The recording (mode 0600; SIGHUP starts a new one).") \
        if record else click.option("--output", metavar="FILE",
                                    help="Write to FILE (mode 0600, reopened on SIGHUP).")
    decorators = [
        common_options,
        click.option(*operation, "operations", multiple=True, metavar="OPS",
                     help="Operations to report: %s, all (comma-separated or repeated)."
                     % ", ".join(OPERATIONS)),
        click.option("-f", "--format", "fmt", type=click.Choice(["text", "table", "json"]),
                     default="text", show_default=True,
                     help="Output format%s." % (" (report's default)" if record else "")),
        click.option("-v", "--verbose", is_flag=True,
                     help="Open flags, syscall and path as given."),
        click.option("--debug", is_flag=True,
                     help="Every event regardless of filters, with raw kernel details."),
        click.option("--failed", is_flag=True, help="Also calls that failed (with their errno)."),
        click.option("--aggregate", is_flag=True,
                     help="Count reads/writes per open file in the kernel; one record per "
                          "file at close and every interval."),
        click.option("--interval", type=float, default=1.0, show_default=True,
                     help="Seconds between aggregate snapshots and loss notices."),
        click.option("--capture", type=int, default=0, metavar="N",
                     help="Capture the first N bytes of each read/write (opt-in)."),
        output,
        click.option("--ready-file", metavar="FILE", help="Write our pid to FILE once attached."),
        click.option("--ring-size", type=int, default=1 << 24, show_default=True,
                     help="Ring buffer bytes (a power of two)."),
        click.option("--fd-cache-size", type=int, default=1 << 18, show_default=True,
                     help="Entries of the kernel's fd cache (one per open fd seen)."),
        click.option("--duration", type=float, default=0.0, help="Stop after this many seconds."),
        click.option("--dump-bytecode", is_flag=True,
                     help="Print the annotated disassembly of the programs and exit."),
    ]

    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn
    return apply


def monitor_config(options: dict) -> Config:
    """The Config of ``monitor``'s (or ``record``'s) options; ``--dump-bytecode``
    prints the programs and exits."""
    dump_bytecode = options.pop("dump_bytecode")
    operations = options.pop("operations")
    cfg = make_config(operations=",".join(operations) if operations else None, **options)
    if dump_bytecode:
        from .monitor import dump_bytecode as dump
        try:
            click.echo(dump(cfg))
        except BrokenPipeError:
            pass
        except Exception as exc:
            if os.environ.get("SNIFFWRITES_TRACEBACK"):
                raise
            fail(explain(exc))
        sys.exit(0)
    return cfg


@main.command()
@monitor_options(record=False)
def monitor(**options):
    """Report file operations as they happen."""
    sys.exit(run_monitor(monitor_config(options)))


@main.command()
@monitor_options(record=True)
@click.option("--max-size", type=int, default=0, metavar="BYTES",
              help="Stop (drain and end the file) once the recording reaches BYTES; the "
                   "drain may add up to the ring's size.")
def record(output, max_size, **options):
    """Record the kernel's records to a file, to report later (no loss to formatting)."""
    from .recording import Recorder
    cfg = monitor_config(dict(options, output=None))
    if max_size < 0:
        fail("--max-size must be a number of bytes", EXIT_USAGE)
    sys.exit(run_monitor(cfg, lambda cfg, sink: Recorder(cfg, output, max_size),
                         sink=False))


@main.command()
@click.argument("recording", metavar="FILE")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "table", "json"]),
              help="Output format (default: the one recorded).")
@click.option("-o", "--operation", "operations", multiple=True, metavar="OPS",
              help="Only these operations (comma-separated or repeated).")
@click.option("-p", "--process", "comm", metavar="NAME", help="Only processes with this name.")
@click.option("--pid", type=int, default=0, help="Only this process id.")
@click.option("-d", "--dir", "dirs", multiple=True, metavar="DIR",
              help="Only paths under DIR (repeatable).")
@click.option("--output", metavar="FILE", help="Write to FILE (mode 0600) instead of stdout.")
def report(recording, fmt, operations, comm, pid, dirs, output):
    """Print a recording as monitor would have printed it."""
    from .config import parse_operations
    from .recfile import RecordingError
    from .report import Filters, report as print_report
    try:
        filters = Filters(parse_operations(",".join(operations)) if operations else frozenset(),
                          None if comm is None else os.fsencode(comm), pid,
                          tuple(os.fsencode(os.path.abspath(d)) for d in dirs))
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        print_report(recording, fmt, filters, output,
                     lambda message: click.echo("sniffwrites: " + message, err=True))
    except RecordingError as exc:
        fail(str(exc))
    except OSError as exc:
        fail("%s: %s" % (exc.filename or recording, exc.strerror or exc))


@main.command()
@common_options
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("-n", "--lines", "limit", type=int, default=20, show_default=True,
              help="Files shown.")
@click.option("--duration", type=float, default=0.0, help="Stop after this many seconds.")
@click.option("--ready-file", metavar="FILE", help="Write our pid to FILE once attached.")
def top(dirs, comm, pid, follow, cache_dir, interval, limit, duration, ready_file):
    """A live view of the busiest files, sorted by bytes moved."""
    from .top import TopMonitor
    cfg = make_config(dirs=dirs, comm=comm, pid=pid, follow=follow, cache_dir=cache_dir,
                      operations=None, fmt="text", aggregate=True, interval=interval,
                      duration=duration, ready_file=ready_file)
    sys.exit(run_monitor(cfg, lambda cfg, sink: TopMonitor(cfg, sink, limit=limit)))


if __name__ == "__main__":
    main()
