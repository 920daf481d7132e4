"""``pybpf prog load`` and ``prog loadall``: an ELF object's programs loaded
and pinned as ``bpftool prog load``/``loadall`` pins them, so the two can be
compared directly; and the object targets of ``pybpf disasm``.

``loadall`` pins every program under DIR by its function name (libbpf 1.x
names pins so); ``load`` pins the object's first program at PATH and lets
the others go, as bpftool does. Maps are pinned where ``--map NAME=PATH``
asks (an existing compatible pin there is reused) and where the object asks
(``LIBBPF_PIN_BY_NAME``: under /sys/fs/bpf); ``--set NAME=VALUE`` sets a
global variable (``const volatile`` or ``.data``) before loading. Nothing
else outlives the command: the collection is closed once pinned, and a
failure removes the pins this command made.
"""

import os
from typing import Callable, List, Optional, Sequence, Tuple

import click

from ..kernel.btf import vmlinux
from ..kernel.pin import ensure_bpffs, pin, unpin
from ..loader import Collection
from ..objfile.bpf_object import BPFObject
from ..objfile.to_spec import collection_spec, spec_of
from ..spec import CollectionSpec
from .common import CLIError
from .targets import Target, spec_definition


def _pairs(options: Sequence[str], flag: str) -> List[Tuple[str, str]]:
    out = []
    for option in options:
        name, equals, value = option.partition("=")
        if not equals or not name:
            raise click.UsageError("%s takes NAME=VALUE, not %r" % (flag, option))
        out.append((name, value))
    return out


def _setting(value: str) -> object:
    """``42``, ``0x2a``, ``-1``: an int; anything else: the string."""
    try:
        return int(value, 0)
    except ValueError:
        return value


def object_spec(path: str, map_pins: Sequence[str] = (),
                settings: Sequence[str] = ()) -> CollectionSpec:
    """The spec of the object at ``path`` with ``--map`` and ``--set`` applied."""
    spec = collection_spec(path)
    if not spec.programs:
        raise CLIError("%s: the object has no programs" % path)
    for name, pin_path in _pairs(map_pins, "--map"):
        if name not in spec.maps:
            raise CLIError("%s has no map %r (it has: %s)"
                           % (path, name, ", ".join(spec.maps) or "none"))
        spec.maps[name].pin_path = os.path.abspath(pin_path)
    try:
        spec.set_config({name: _setting(value) for name, value in _pairs(settings, "--set")})
    except KeyError as exc:
        raise CLIError("%s: %s" % (path, exc.args[0])) from None
    return spec


def _load_and_pin(spec: CollectionSpec, where: Callable[[List[str]], List[Tuple[str, str]]],
                  directory: str) -> None:
    """Load ``spec``, pin the programs ``where`` names at their paths
    (``directory`` made on bpffs first), then close: only pins remain. On
    failure the pins made are removed again."""
    made_directory = not os.path.isdir(directory)
    ensure_bpffs(directory)
    pinned: List[str] = []
    try:
        try:
            coll = Collection(spec)
        except ValueError as exc:   # a setting that does not fit its variable
            raise CLIError(str(exc)) from None
        with coll:
            for name, path in where(list(coll.programs)):
                pin(coll.programs[name], path)
                pinned.append(path)
    except BaseException:
        for path in pinned:
            unpin(path)
        if made_directory:
            os.rmdir(directory)
        raise


_MAP_OPTION = click.option("--map", "map_pins", multiple=True, metavar="NAME=PATH",
                           help="Pin map NAME at PATH (reusing a compatible map pinned there).")
_SET_OPTION = click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
                           help="Set a global variable (const volatile, .data) before loading.")


@click.command("loadall", help="""Load an ELF object's programs and pin each under DIR.

As bpftool prog loadall: every program is pinned at DIR/<function name>;
maps declared LIBBPF_PIN_BY_NAME are pinned (or reused) under /sys/fs/bpf.
Remove DIR's pins to unload the programs.

\b
Example:
  pybpf prog loadall opensnoop.bpf.o /sys/fs/bpf/opensnoop --set target_tgid=42
  pybpf prog loadall xdp.o /sys/fs/bpf/xdp --map stats=/sys/fs/bpf/xdp_stats
""")
@click.argument("obj", metavar="OBJ", type=click.Path(exists=True, dir_okay=False))
@click.argument("directory", metavar="DIR")
@_MAP_OPTION
@_SET_OPTION
def loadall(obj: str, directory: str, map_pins: Sequence[str], settings: Sequence[str]) -> None:
    """The ``pybpf prog loadall`` command, bpftool's counterpart for ELF objects."""
    spec = object_spec(obj, map_pins, settings)
    _load_and_pin(spec, lambda names: [(n, os.path.join(directory, n)) for n in names],
                  directory)


@click.command("load", help="""Load an ELF object's programs and pin the first at PATH.

As bpftool prog load: the object's other programs are unloaded again when
the command ends.

\b
Example:
  pybpf prog load minimal.bpf.o /sys/fs/bpf/minimal
""")
@click.argument("obj", metavar="OBJ", type=click.Path(exists=True, dir_okay=False))
@click.argument("path", metavar="PATH")
@_MAP_OPTION
@_SET_OPTION
def load(obj: str, path: str, map_pins: Sequence[str], settings: Sequence[str]) -> None:
    """The ``pybpf prog load`` command: load an object, pin its first program."""
    if os.path.exists(path):
        raise CLIError("%s already exists: unpin it first" % path)
    spec = object_spec(obj, map_pins, settings)
    _load_and_pin(spec, lambda names: [(names[0], path)], os.path.dirname(os.path.abspath(path)))


COMMANDS = (load, loadall)


def is_object_file(path: str) -> bool:
    """Whether ``path`` is a file that starts as an ELF file does."""
    try:
        with open(path, "rb") as source:
            return source.read(4) == b"\x7fELF"
    except OSError:
        return False


def object_targets(path: str, section: Optional[str] = None) -> List[Target]:
    """The programs of the object at ``path`` (of ``section`` only, if
    given), relocated and linked for this kernel, for ``pybpf disasm``: map
    references carry the maps' names."""
    obj = BPFObject(path, target_btf=vmlinux)
    spec = spec_of(obj)
    chosen = [p for p in obj.programs if section in (None, p.section)]
    if not chosen:
        raise CLIError("%s has no program%s (sections: %s)"
                       % (path, " in section " + section if section else "s",
                          ", ".join(p.section for p in obj.programs) or "none"))
    targets = []
    for program in chosen:
        code = spec.programs[program.name].code
        names = sorted({reloc.symbol for reloc in code.relocations})
        targets.append(Target(program.name, program.section, code,
                              tuple(spec_definition(n, spec.maps[n]) for n in names), None))
    return targets
