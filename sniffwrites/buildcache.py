"""Building the programs once per kernel and source, not once per start.

Building sniffwrites' programs in the DSL takes about 0.1 s of Python, half
of the start-up budget (0.25 s until attached). The result depends only on
the DSL and program sources and on this kernel's BTF (offsets, the syscall
table, which helpers exist), so it is kept on disk under a key that is the
SHA-256 of the BTF's bytes and of the path and contents of every source that
shapes the code. The config is not part of the code (it is a frozen map
filled at load), so one entry serves every set of options.

What is cached decides what root loads into the kernel, so:

* an entry is data only (JSON: bytecode as hex, relocations, labels and the
  line table as plain lists), never a format that can run code when read;
  its own SHA-256 inside guards against corruption, not against an attacker;
* trust comes from ownership: the directory, every ancestor and the entry
  must belong to the effective user or root and be closed to others
  (:mod:`pybpf.safe_files`), and are read through one directory fd;
* as root, the default place is ``/var/cache/sniffwrites`` (0700), never a
  home directory taken from the environment; other users get
  ``$XDG_CACHE_HOME/sniffwrites`` or ``~/.cache/sniffwrites``.

Any problem with the cache (missing, corrupt, untrusted, unwritable, a name
that no longer resolves) means a normal build, with one debug-level log
message: the cache can only save time. :func:`prebuild` hands the cached
builds to ``ProgramDecl.prebuilt``.
"""

import hashlib
import json
import logging
import os
from typing import Any, Dict, Iterable, List, Optional

from pybpf import isa
from pybpf.asm import AssembledProgram, Relocation
from pybpf.errors import SourceLocation
from pybpf.kernel.btf import VMLINUX_PATH
from pybpf.safe_files import (default_cache_dir, open_private_dir, read_private_file,
                              prune_private_files, write_private_file)

log = logging.getLogger(__name__)

CACHE_FORMAT = "sniffwrites-build"
CACHE_VERSION = 2
ENTRY_SUFFIX = ".json"
# Entries kept: one per install and kernel that shares the host's cache
# (a virtualenv beside the system install, a kernel booted before).
MAX_ENTRIES = 4


def cache_dir() -> str:
    """Where the build cache is kept when no place is given."""
    return default_cache_dir("sniffwrites")


def _sources(modules: Iterable[Any]) -> List[str]:
    """Every file whose change could change the code: all of pybpf (the
    DSL, assembler and ISA, and what they read: constants, BTF, tracefs
    formats) and every module beside the program modules (the libraries
    they import, such as ``lib_paths``, live there too)."""
    import pybpf
    folders = {os.path.dirname(os.path.abspath(pybpf.__file__))}
    folders.update(os.path.dirname(os.path.abspath(m.__file__)) for m in modules)
    files = set()
    for folder in folders:
        for root, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            files.update(os.path.join(root, n) for n in names if n.endswith(".py"))
    return sorted(files)


def cache_key(modules: Iterable[Any]) -> str:
    """SHA-256 of the cache format, the kernel's BTF bytes and the path and
    contents of every source (see :func:`_sources`)."""
    digest = hashlib.sha256(("%s|%d|%s\n" % (CACHE_FORMAT, CACHE_VERSION,
                                             os.uname().machine)).encode())
    with open(VMLINUX_PATH, "rb") as f:
        digest.update(f.read())
    for path in _sources(modules):
        with open(path, "rb") as f:
            source = f.read()
        digest.update(("\n%s|%d\n" % (path, len(source))).encode())
        digest.update(source)
    return digest.hexdigest()


# --- entries as plain data ------------------------------------------------------------------
# An entry is one JSON header line ({"format", "version", "key", "sha256"})
# and a JSON payload: the programs by name, each its code, map names and
# subprogram labels. "sha256" is the payload's bytes' digest, checked before
# the payload is parsed.

def program_to_data(code: AssembledProgram) -> Dict[str, Any]:
    """An assembled program as JSON-able data: bytecode as hex, the line
    table as indexes into a list of distinct (file, line) locations."""
    locations: Dict[Any, int] = {}
    lines = [-1 if loc is None else locations.setdefault(tuple(loc), len(locations))
             for loc in code.lines]
    return {"name": code.name, "bytecode": isa.encode(code.instructions).hex(),
            "relocations": [list(r) for r in code.relocations], "labels": code.labels,
            "locations": [list(loc) for loc in locations], "lines": lines,
            "functions": list(code.functions)}


def program_from_data(data: Dict[str, Any]) -> AssembledProgram:
    """The inverse of :func:`program_to_data`; ``ValueError``/``KeyError``/
    ``TypeError``/``IndexError`` for data that is not one (the bytecode is
    validated)."""
    locations = [SourceLocation(str(filename), int(line)) for filename, line in
                 data["locations"]]
    return AssembledProgram(
        isa.decode(bytes.fromhex(data["bytecode"])),
        [Relocation(int(i), str(kind), str(symbol), int(offset))
         for i, kind, symbol, offset in data["relocations"]],
        {str(k): int(v) for k, v in data["labels"].items()},
        [None if i < 0 else locations[i] for i in data["lines"]],
        [str(f) for f in data["functions"]], name=str(data["name"]))


def _encode_entry(key: str, programs: Dict[str, Any]) -> bytes:
    payload = json.dumps(programs, separators=(",", ":")).encode()
    header = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key,
                         "sha256": hashlib.sha256(payload).hexdigest()}).encode()
    return header + b"\n" + payload


def _decode_entry(blob: bytes, key: str) -> Dict[str, Any]:
    header_line, _, payload = blob.partition(b"\n")
    header = json.loads(header_line)
    if (header.get("format"), header.get("version"), header.get("key")) != (
            CACHE_FORMAT, CACHE_VERSION, key):
        raise ValueError("an entry of another format, version or key")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise ValueError("the entry does not match its SHA-256")
    return json.loads(payload)


# --- the cache ------------------------------------------------------------------------------

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
        dir_fd = open_private_dir(directory, create=True)
    except OSError as exc:
        log.debug("not using the build cache %s: %s", directory, exc)
        return False
    try:
        name = key[:32] + ENTRY_SUFFIX
        if _load(dir_fd, name, key, programs, modules):
            return True
        entries = {}
        for program in programs:
            entries[program.name] = {
                "code": program_to_data(program.build()),
                "maps": list(program.map_decls()),
                "subprograms": [s.label for s in program.subprograms()]}
        try:
            write_private_file(dir_fd, name, _encode_entry(key, entries))
            prune_private_files(dir_fd, ENTRY_SUFFIX, keep=MAX_ENTRIES)
        except OSError as exc:
            log.debug("cannot write the build cache in %s: %s", directory, exc)
        return False
    finally:
        os.close(dir_fd)


def _load(dir_fd: int, name: str, key: str, programs: List[Any], modules: List[Any]) -> bool:
    try:
        blob = read_private_file(dir_fd, name)
        if blob is None:
            return False
        entries = _decode_entry(blob, key)
        declared = _declarations(modules)
        ready = []
        for program in programs:
            entry = entries[program.name]
            maps = {m: declared["map:" + m] for m in entry["maps"]}
            subs = [declared["sub:" + label] for label in entry["subprograms"]]
            ready.append((program, program_from_data(entry["code"]), maps, subs))
    except Exception as exc:     # any problem: build instead (see the module docstring)
        log.debug("ignoring build cache entry %s: %s", name, exc)
        return False
    for program, code, maps, subs in ready:
        program.prebuilt(code, maps, subs)
    return True
