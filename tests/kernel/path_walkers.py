"""Programs that turn a descriptor into its path with ``programs/lib_paths.py``,
for ``test_btf_dsl.py`` and ``tools/bench.py paths``.

They are raw tracepoint programs run with BPF_PROG_TEST_RUN, which runs them
in the calling task: ``ctx.args[0]`` is a descriptor of the caller, and the
result is ``walked[0]`` (``small[0]`` for ``walk_fd_small``). The walk tests
every directory on the way up against ``watched`` and ORs the values of
those it finds into ``matched``.
"""

import struct

from pybpf.dsl import ArrayMap, HashMap, Struct, char, collection_spec, raw_tracepoint, u32, u64
from pybpf.loader import Collection
from pybpf.programs.lib_paths import PATH_MAX, DevIno, PathInfo, emit_path, file_of_fd

SHORT_STEPS = 8
SMALL_PATH = 32

NO_FILE = 2   # what a walker returns when the descriptor has no file


class Walked(Struct):
    info: PathInfo
    matched: u64
    path: char[PATH_MAX]


class WalkedSmall(Struct):
    info: PathInfo
    matched: u64
    path: char[SMALL_PATH]


walked = ArrayMap(value=Walked, max_entries=1)
small = ArrayMap(value=WalkedSmall, max_entries=1)
watched = HashMap(key=DevIno, value=u64, max_entries=64)


def _or_matched(results):
    """The hook: OR the value of a watched directory into ``results[0].matched``
    (it runs in the walk's bpf_loop callback: program state is in maps)."""
    def watched_dir(p, s, dev, ino):
        key = p.stack(DevIno)
        key.dev = dev
        key.ino = ino
        found = watched.lookup(key)
        with p.if_(found):
            out = results.lookup(u32(0))
            with p.if_(out):
                out.matched = out.matched | found[0]
    return watched_dir


_hooks = {walked: _or_matched(walked), small: _or_matched(small)}


def _walk(p, ctx, results, hooked=True, **options):
    """Walk descriptor ``ctx.args[0]`` into ``results``; ``hooked``: with
    the watched-directory test on each ancestor."""
    out = results.lookup(u32(0))
    with p.if_(out.is_null):
        p.return_(1)
    task = p.current_task()
    file = file_of_fd(p, task, ctx.args[0])
    with p.if_(file.is_null):
        p.return_(NO_FILE)
    if hooked:
        out.matched = 0
        options["on_ancestor"] = _hooks[results]
    emit_path(p, file, out.path, out.info, task=task, **options)


@raw_tracepoint("sys_enter")
def walk_fd(p, ctx):
    _walk(p, ctx, walked)


@raw_tracepoint("sys_enter")
def walk_fd_short(p, ctx):
    _walk(p, ctx, walked, max_steps=SHORT_STEPS)


@raw_tracepoint("sys_enter")
def walk_fd_small(p, ctx):
    _walk(p, ctx, small)


@raw_tracepoint("sys_enter")
def walk_fd_plain(p, ctx):
    """The walk without a hook: what a path costs by itself."""
    _walk(p, ctx, walked, hooked=False)


@raw_tracepoint("sys_enter")
def find_file(p, ctx):
    """Only ``file_of_fd``: the part of the cost that is not the walk."""
    out = walked.lookup(u32(0))
    with p.if_(out.is_null):
        p.return_(1)
    file = file_of_fd(p, p.current_task(), ctx.args[0])
    out.matched = u64(file)


PROGRAMS = (walk_fd, walk_fd_short, walk_fd_small, walk_fd_plain, find_file)


class Walker:
    """The walkers, loaded: ``walk(fd)`` runs one in this task."""

    def __init__(self):
        self.collection = Collection(collection_spec(PROGRAMS))
        self.maps = self.collection.maps

    def run(self, fd, program=walk_fd):
        """``program``'s return value, after running it on ``fd``."""
        ctx = struct.pack("<Q", fd & (1 << 64) - 1)
        return self.collection.programs[program.name].test_run(ctx=ctx).retval

    def walk(self, fd, program=walk_fd):
        """``(info, path, matched)`` of ``fd`` (``path`` up to its NUL)."""
        retval = self.run(fd, program)
        assert retval == 0, "%s returned %d" % (program.name, retval)
        result = self.maps[(small if program is walk_fd_small else walked).name][0]
        return result.info, result.path.raw.split(b"\0")[0], result.matched

    def close(self):
        self.collection.close()
