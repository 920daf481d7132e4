"""Building the programs once per kernel and source, not once per start.

Building sniffwrites' programs in the DSL takes about 0.1 s of Python, half
of the start-up budget (0.25 s until attached). The result depends only on
the DSL and program sources and on this kernel (BTF offsets, the syscall
table), so it is kept in ``~/.cache/sniffwrites`` (``$XDG_CACHE_HOME``)
under a key that hashes all of those (the sources by path, size and
mtime); a start with a warm cache unpickles the assembled code (a few
ms). The config is not part of the code (it is a frozen map filled at
load), so one entry serves every set of options.

Any problem with the cache (missing, corrupt, unwritable, a name that no
longer resolves) means a normal build: the cache can only save time.

:func:`prebuild` hands the cached builds to ``Program.prebuilt``.
"""

import copyreg
import hashlib
import os
import pickle
import platform
import sys
import tempfile
from typing import Any, Dict, Iterable, List, Optional

from pybpf.errors import SourceLocation

CACHE_VERSION = 1

# SourceLocation is a tuple with a two-argument __new__: pickle it by value.
copyreg.pickle(SourceLocation, lambda s: (SourceLocation, (s[0], s[1])))


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sniffwrites")


def _sources(modules: Iterable[Any]) -> List[str]:
    """Every file whose change could change the code: the DSL, assembler
    and ISA, and every module beside the program modules (the libraries
    they import, such as ``lib_paths``, live there too)."""
    import pybpf
    root = os.path.dirname(os.path.abspath(pybpf.__file__))
    files = [os.path.join(root, name) for name in ("asm.py", "isa.py", "helper_defs.py",
                                                   "helper_proto.py")]
    dsl = os.path.join(root, "dsl")
    files += sorted(os.path.join(dsl, n) for n in os.listdir(dsl) if n.endswith(".py"))
    for folder in sorted({os.path.dirname(os.path.abspath(m.__file__)) for m in modules}):
        files += sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".py"))
    return files


def cache_key(modules: Iterable[Any]) -> str:
    digest = hashlib.sha256()
    uname = os.uname()
    digest.update(("%d|%s|%s|%s|%s" % (CACHE_VERSION, uname.release, uname.version,
                                       platform.machine(), sys.version)).encode())
    try:
        digest.update(str(os.stat("/sys/kernel/btf/vmlinux").st_size).encode())
    except OSError:
        pass
    for path in _sources(modules):
        st = os.stat(path)     # size and mtime: an edit changes them, and reading is slower
        digest.update(("%s|%d|%d\n" % (path, st.st_size, st.st_mtime_ns)).encode())
    return digest.hexdigest()[:32]


def _declarations(modules: Iterable[Any]) -> Dict[str, Any]:
    """Map declarations and subprograms by name, as programs refer to them."""
    from pybpf.dsl import Config, RingBuf, Subprogram
    from pybpf.dsl.maps import MapDecl
    found: Dict[str, Any] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Subprogram):
                found["sub:" + value.label] = value
            elif isinstance(value, Config):
                found["map:" + value.map.name] = value.map
            elif isinstance(value, MapDecl):
                found["map:" + value.name] = value
                if isinstance(value, RingBuf):
                    found["map:" + value.lost.name] = value.lost
    return found


def prebuild(programs: List[Any], modules: List[Any], directory: Optional[str] = None) -> bool:
    """Give ``programs`` their code from the cache, or build them and fill
    it. Returns True on a cache hit. Builds against a BTF other than the
    running kernel's (``using_btf``) are neither cached nor taken from it."""
    from pybpf.dsl.kernel_types import btf_override
    if btf_override() is not None:
        return False
    directory = directory or cache_dir()
    try:
        key = cache_key(modules)
    except OSError:
        return False
    path = os.path.join(directory, key + ".pickle")
    if _load(path, programs, modules):
        return True
    entries = {}
    for program in programs:
        code = program.build()
        entries[program.name] = (code, list(program.map_decls()),
                                 [s.label for s in program.subprograms()])
    _store(directory, path, entries)
    return False


def _load(path: str, programs: List[Any], modules: List[Any]) -> bool:
    try:
        with open(path, "rb") as f:
            version, entries = pickle.load(f)
        if version != CACHE_VERSION:
            return False
        declared = _declarations(modules)
        ready = []
        for program in programs:
            code, map_names, sub_labels = entries[program.name]
            maps = {name: declared["map:" + name] for name in map_names}
            subs = [declared["sub:" + label] for label in sub_labels]
            ready.append((program, code, maps, subs))
    except Exception:     # any problem: build instead (see the module docstring)
        return False
    for program, code, maps, subs in ready:
        program.prebuilt(code, maps, subs)
    return True


def _store(directory: str, path: str, entries: Dict[str, Any]) -> None:
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump((CACHE_VERSION, entries), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
        for name in os.listdir(directory):     # entries of older sources
            if name.endswith(".pickle") and os.path.join(directory, name) != path:
                os.unlink(os.path.join(directory, name))
    except OSError:
        pass
