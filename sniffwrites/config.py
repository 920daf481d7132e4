"""What the user asked for, checked, and what the kernel side is told.

:class:`Config` is built from the command line (:mod:`sniffwrites.cli`)
and is all the rest of the app looks at. :func:`Config.kernel_settings`
turns it into the values of the frozen ``settings`` of
:mod:`sniffwrites.bpf.settings`: the filters run in the kernel, before
anything is emitted. Nothing here touches the kernel.

>>> cfg = Config.make(dirs=["/"], operations="read,write")
>>> sorted(cfg.operations)
['read', 'write']
"""

import os
import stat
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from .events import OPERATIONS

#: What ``-o`` accepts besides the operation names.
OPERATION_ALIASES = {"all": OPERATIONS}
FORMATS = ("text", "table", "json")
TASK_COMM_LEN = 16
MAX_DIRS = 64          # entries of the kernel's ``watched`` map


class ConfigError(ValueError):
    """A bad option value: the CLI prints it as one line and exits 2."""


@dataclass(frozen=True)
class WatchedDir:
    """A directory to watch: its canonical path and identity."""
    path: str            # realpath
    dev: int             # st_dev (userspace encoding)
    ino: int

    @property
    def kernel_dev(self) -> int:
        """The kernel's ``s_dev`` encoding (``major << 20 | minor``),
        which is what ``super_block.s_dev`` holds."""
        return kernel_dev(self.dev)


def kernel_dev(st_dev: int) -> int:
    """Userspace ``st_dev`` -> the kernel's internal ``dev_t`` (MKDEV).

    >>> kernel_dev(os.makedev(8, 1))
    8388609
    """
    return (os.major(st_dev) << 20) | os.minor(st_dev)


@dataclass(frozen=True)
class Config:
    dirs: Tuple[WatchedDir, ...] = ()           # empty: every file
    comm: Optional[bytes] = None                # -p: exact process name
    pid: int = 0                                # --pid (0: any)
    follow: bool = False                        # --follow: children of --pid too
    operations: FrozenSet[str] = frozenset(OPERATIONS)
    fmt: str = "text"
    verbose: bool = False
    debug: bool = False                         # every event, no filters, raw details
    failed: bool = False
    aggregate: bool = False
    interval: float = 1.0                       # aggregate snapshots and loss notices
    capture: int = 0
    output: Optional[str] = None
    ready_file: Optional[str] = None
    ring_size: int = 1 << 24
    fd_cache_size: int = 1 << 18                # entries of the kernel's (tgid, fd) cache
    duration: float = 0.0                       # stop after this many seconds (0: never)
    cache_dir: Optional[str] = None             # the build cache (None: the default place)
    warnings: Tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def make(cls, *, dirs: Sequence[str] = (), comm: Optional[str] = None, pid: int = 0,
             follow: bool = False, operations: Optional[str] = None, fmt: str = "text",
             **options) -> "Config":
        """Check and normalise option values; :class:`ConfigError` for bad ones."""
        warnings: List[str] = []
        watched = tuple(watched_dir(d) for d in dirs)
        unique: Dict[Tuple[int, int], WatchedDir] = {}
        for w in watched:
            unique.setdefault((w.dev, w.ino), w)
        if len(unique) > MAX_DIRS:
            raise ConfigError("at most %d directories can be watched" % MAX_DIRS)
        comm_bytes = None
        if comm is not None:
            comm_bytes = os.fsencode(comm)
            if not comm_bytes:
                raise ConfigError("-p/--process needs a process name")
            if len(comm_bytes) >= TASK_COMM_LEN:
                warnings.append("process names are at most %d bytes in the kernel: matching "
                                "%r" % (TASK_COMM_LEN - 1, comm_bytes[:TASK_COMM_LEN - 1]
                                        .decode(errors="replace")))
                comm_bytes = comm_bytes[:TASK_COMM_LEN - 1]
        if pid < 0:
            raise ConfigError("--pid must be a process id, not %d" % pid)
        if follow and not pid:
            raise ConfigError("--follow needs --pid")
        if fmt not in FORMATS:
            raise ConfigError("unknown format %r (choose from %s)" % (fmt, ", ".join(FORMATS)))
        capture = options.get("capture", 0) or 0
        if not 0 <= capture <= 4095:
            raise ConfigError("--capture takes 0 to 4095 bytes, not %d" % capture)
        interval = options.get("interval", 1.0)
        if interval is not None and interval <= 0:
            raise ConfigError("--interval must be positive")
        ring = options.get("ring_size", 1 << 24)
        if ring < 4096 or ring & (ring - 1):
            raise ConfigError("--ring-size must be a power of two of at least 4096 bytes")
        from .bpf.settings import MAX_PREFIXES, PREFIX_LEN
        if len(unique) > MAX_PREFIXES or any(len(os.fsencode(w.path)) >= PREFIX_LEN - 1
                                             for w in unique.values()):
            warnings.append("absolute names of truncate/rename/unlink are matched against the "
                            "first %d watched directories under %d bytes only"
                            % (MAX_PREFIXES, PREFIX_LEN - 1))
        cache = options.get("fd_cache_size", 1 << 18)
        if not 1 <= cache <= 1 << 24:
            raise ConfigError("--fd-cache-size must be between 1 and %d" % (1 << 24))
        return cls(dirs=tuple(unique.values()), comm=comm_bytes, pid=pid, follow=follow,
                   operations=parse_operations(operations), fmt=fmt,
                   warnings=tuple(warnings), **options)

    # -- what the kernel side is told ---------------------------------------------------------

    def kernel_settings(self, self_tgid: int, syscall_table: List[int]) -> Dict[str, object]:
        """Values for :data:`sniffwrites.bpf.settings.settings`."""
        from .bpf.records import OP_NAMES
        from .bpf.settings import MAX_PREFIXES, PREFIX_LEN
        prefixes = [b""] * MAX_PREFIXES
        for index, w in enumerate(self.dirs[:MAX_PREFIXES]):
            prefix = os.fsencode(w.path.rstrip("/") + "/")
            prefixes[index] = prefix if len(prefix) < PREFIX_LEN else b""
        ops = 0
        for number, name in OP_NAMES.items():
            if name in self.operations or name == "dup":
                ops |= 1 << number
        comm = (self.comm or b"").ljust(TASK_COMM_LEN, b"\0")
        return {
            "self_tgid": self_tgid,
            "target_tgid": 0 if self.debug else self.pid,
            "follow": int(self.follow and not self.debug),
            "use_comm": int(self.comm is not None and not self.debug),
            "comm": [int.from_bytes(comm[:8], "little"), int.from_bytes(comm[8:], "little")],
            "report_all": int(self.debug),
            "all_files": int(not self.dirs),
            "failed": int(self.failed or self.debug),
            "aggregate": int(self.aggregate),
            "capture": self.capture,
            "ops": (1 << 16) - 1 if self.debug else ops,
            **{"prefix%d" % index: prefix for index, prefix in enumerate(prefixes)},
            "syscalls": syscall_table,
        }

    def inside(self, path: bytes) -> bool:
        """Whether an absolute, normalised path is in a watched directory
        (or anything is watched)."""
        if not self.dirs:
            return True
        for w in self.dirs:
            root = os.fsencode(w.path)
            if path == root or path.startswith(root.rstrip(b"/") + b"/"):
                return True
        return False


def watched_dir(path: str) -> WatchedDir:
    """A ``-d`` value, checked: it must be an existing directory."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError("directory %s does not exist" % path) from None
    except OSError as exc:
        raise ConfigError("cannot use directory %s: %s" % (path, exc.strerror)) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError("%s is not a directory" % path)
    return WatchedDir(os.path.realpath(path), st.st_dev, st.st_ino)


def parse_operations(text: Optional[str]) -> FrozenSet[str]:
    """``-o read,write`` (repeatable, comma-separated; ``all``).

    >>> sorted(parse_operations("write, close"))
    ['close', 'write']
    """
    if text is None:
        return frozenset(OPERATIONS)
    chosen = set()
    for item in _split(text):
        if item in OPERATION_ALIASES:
            chosen.update(OPERATION_ALIASES[item])
        elif item in OPERATIONS:
            chosen.add(item)
        else:
            raise ConfigError("unknown operation %r (choose from %s, all)"
                              % (item, ", ".join(OPERATIONS)))
    if not chosen:
        raise ConfigError("-o/--operation needs at least one operation")
    return frozenset(chosen)


def _split(text: str) -> Iterable[str]:
    return (part.strip().lower() for part in text.replace(" ", ",").split(",") if part.strip())
