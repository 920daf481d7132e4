"""What to load: maps, programs and settings as plain data, before any fd exists.

A :class:`CollectionSpec` is what cilium/ebpf calls by the same name: the
description of a set of programs and the maps they share, made by the DSL
(:func:`pybpf.dsl.collection_spec`) or read from an ELF object, and turned
into kernel objects by :class:`pybpf.loader.Collection`. Nothing in a spec
touches the kernel, and nothing global changes when one is loaded: copy a
spec (:meth:`CollectionSpec.copy`) and change the copy (a map's size, a
setting) to load variants of the same programs side by side.

>>> from pybpf.kernel.map_spec import MapSpec
>>> spec = CollectionSpec(maps={"counts": MapSpec("hash", key_size=4, value_size=8,
...                                                max_entries=1024, name="counts")})
>>> bigger = spec.copy()
>>> bigger.maps["counts"].max_entries = 4096
>>> spec.maps["counts"].max_entries, bigger.maps["counts"].max_entries
(1024, 4096)
"""

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from .asm import AssembledProgram
from .kernel.map_spec import MapSpec


@dataclass
class ProgramSpec:
    """One program as the kernel will get it.

    ``code`` refers to maps by name (the loader patches in their fds);
    ``target`` is the attach point: a tracepoint (``"syscalls/sys_enter_openat"``),
    a raw tracepoint (``"sys_enter"``), or the ELF section name of a program
    attached to an interface (``"xdp"``, ``"tc"``). ``cpu`` is the
    instruction set version the code needs (4: Linux 6.6). ``btf`` and
    ``func_info`` ((slot, BTF FUNC id) per function) describe the program's
    functions; the kernel requires them when a program takes a function's
    address (a ``bpf_loop`` callback); ``line_info`` (slot, file name and
    line string offsets in ``btf``, line << 10 | column) names the C lines
    in the verifier's log.
    ``expected_attach_type``, ``prog_flags`` and ``attach_btf_id`` are
    ``BPF_PROG_LOAD``'s fields of those names, for programs whose section
    asks for them (an ELF object's ``cgroup/connect4``, ``xdp.frags``,
    ``fentry/<function>``). A program with ``autoload`` false is left out
    when the collection loads (libbpf's ``bpf_program__set_autoload``).
    """
    name: str
    prog_type: int
    target: str
    code: AssembledProgram
    license: str = "GPL"
    cpu: int = 3
    btf: Optional[bytes] = None
    func_info: Sequence[Tuple[int, int]] = ()
    line_info: Sequence[Tuple[int, int, int, int]] = ()
    expected_attach_type: int = 0
    prog_flags: int = 0
    attach_btf_id: int = 0
    autoload: bool = True


@dataclass
class ConfigSpec:
    """Settings fixed at load time in a one-entry, read-only-for-programs
    map (what clang makes of ``const volatile`` globals in ``.rodata``).

    ``map`` names the map; ``fields`` are the settings it holds;
    ``values`` those set so far (the rest keep their defaults); ``encode``
    turns the settings into the map's value (defaults filled, strings
    padded). ``freeze`` makes the map read-only for userspace too once
    filled, which lets the verifier treat the values as constants.
    """
    map: str
    fields: Tuple[str, ...]
    encode: Callable[[Mapping[str, Any]], Any]
    values: Dict[str, Any] = field(default_factory=dict)
    freeze: bool = True


@dataclass
class CollectionSpec:
    """Maps, programs and configs, by name; load it with
    :class:`pybpf.loader.Collection`."""
    maps: Dict[str, MapSpec] = field(default_factory=dict)
    programs: Dict[str, ProgramSpec] = field(default_factory=dict)
    configs: Dict[str, ConfigSpec] = field(default_factory=dict)

    def copy(self) -> "CollectionSpec":
        """A copy whose maps, programs and settings can be changed without
        changing this one (instructions and codecs, never changed in
        place, are shared)."""
        return CollectionSpec(
            maps={name: replace(spec, contents=dict(spec.contents))
                  for name, spec in self.maps.items()},
            programs={name: replace(spec) for name, spec in self.programs.items()},
            configs={name: replace(spec, values=dict(spec.values))
                     for name, spec in self.configs.items()})

    def set_config(self, values: Mapping[str, Any]) -> None:
        """Set load-time settings by name, whichever config declares them
        (``KeyError`` naming the unknown ones)."""
        owners: Dict[str, ConfigSpec] = {}
        for config in self.configs.values():
            owners.update((name, config) for name in config.fields)
        unknown = sorted(set(values) - set(owners))
        if unknown:
            raise KeyError("no config declares %s (settings: %s)"
                           % (", ".join(unknown), ", ".join(sorted(owners)) or "none"))
        for name, value in values.items():
            owners[name].values[name] = value
