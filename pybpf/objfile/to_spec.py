"""A :class:`~pybpf.objfile.bpf_object.BPFObject` as a
:class:`~pybpf.spec.CollectionSpec`: the one place that knows both.

Everything spec-specific of the ELF loader is here, so a change of
``pybpf.spec`` is a change of this module only. Maps keep libbpf's names
(the variable of a BTF-defined map, the symbol of a legacy one, the section
of global data: ``.rodata``, ``.bss``); each global data section is also a
config whose settings are its variables (``spec.set_config({"min_pid":
42})``), typed from BTF, and ``.rodata`` (and ``.kconfig``) is frozen once
filled, so the verifier may treat its values as constants.
"""

from bisect import bisect_right
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from .. import consts as c, isa
from ..asm import RELOC_MAP_FD, RELOC_MAP_VALUE, AssembledProgram, Relocation
from ..consts import (BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, BPF_MAP_TYPE_ARRAY,
                      BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS,
                      BPF_PROG_TYPE_EXT, BPF_PROG_TYPE_LSM,
                      BPF_TRACE_ITER, BPF_TRACE_RAW_TP)
from ..errors import SourceLocation
from ..kernel.btf import BTF, vmlinux
from ..kernel.btf_format import BTF_KIND_FUNC, BTF_KIND_TYPEDEF
from ..kernel.btf_load import LoadedBTF, load_btf
from ..kernel.map_spec import MapSpec
from ..kernel.pin import BPFFS_PATH
from ..spec import CollectionSpec, ConfigSpec, ProgramSpec
from .bpf_object import BPFObject, ObjectProgram
from .link import REF_MAP, LinkedProgram
from .maps import LIBBPF_PIN_BY_NAME, GlobalData, MapDef
from .sections import SEC_ATTACH_BTF
from .values import encode_variable


#: Map types the kernel refuses key/value BTF for; libbpf (map_create) drops it.
NO_BTF_MAP_TYPES = frozenset((
    c.BPF_MAP_TYPE_PERF_EVENT_ARRAY, c.BPF_MAP_TYPE_CGROUP_ARRAY, c.BPF_MAP_TYPE_STACK_TRACE,
    c.BPF_MAP_TYPE_ARRAY_OF_MAPS, c.BPF_MAP_TYPE_HASH_OF_MAPS, c.BPF_MAP_TYPE_DEVMAP,
    c.BPF_MAP_TYPE_DEVMAP_HASH, c.BPF_MAP_TYPE_CPUMAP, c.BPF_MAP_TYPE_XSKMAP,
    c.BPF_MAP_TYPE_SOCKMAP, c.BPF_MAP_TYPE_SOCKHASH, c.BPF_MAP_TYPE_QUEUE,
    c.BPF_MAP_TYPE_STACK, c.BPF_MAP_TYPE_RINGBUF))


class ObjectBTF:
    """The object's BTF, loaded into the kernel when a map first needs its
    fd (maps keep their own reference; this one closes with the spec)."""

    def __init__(self, blob: bytes):
        self.blob = blob
        self._loaded: Optional[LoadedBTF] = None

    def fileno(self) -> int:
        """The BTF's fd, loading it into the kernel on first use."""
        if self._loaded is None:
            self._loaded = load_btf(self.blob)
        return self._loaded.fileno()


def collection_spec(path: str, *, data: Optional[bytes] = None,
                    target_btf: Optional[BTF] = None) -> CollectionSpec:
    """The programs, maps and settings of the object at ``path``, relocated
    for the kernel of ``target_btf`` (this one's by default)."""
    obj = BPFObject(path, data, (lambda: target_btf) if target_btf is not None else vmlinux)
    return spec_of(obj)


def spec_of(obj: BPFObject) -> CollectionSpec:
    """A spec of the maps, global data configs and programs of ``obj``."""
    blob = obj.kernel_btf()
    btf = ObjectBTF(blob) if blob is not None else None
    spec = CollectionSpec()
    for definition in obj.maps:
        spec.maps[definition.name] = _map_spec(obj, definition, btf)
    for data in obj.data:
        spec.maps[data.section] = _data_map_spec(data)
        spec.configs[data.section] = _config_spec(obj, data)
    for program in obj.programs:
        spec.programs[program.name] = _program_spec(obj, program, blob)
    return spec


def _map_spec(obj: BPFObject, definition: MapDef, btf: Optional[ObjectBTF]) -> MapSpec:
    """A map as libbpf creates it: a map of maps with its inner template,
    initial slots (maps, or a prog array's programs) by name, and
    ``LIBBPF_PIN_BY_NAME`` pinned under /sys/fs/bpf."""
    if (definition.map_type in (BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS)
            and definition.inner is None):
        raise obj.elf.error("map %r is a map of maps without an inner map definition "
                            "(__array(values, ...))" % definition.name)
    spec = MapSpec(definition.map_type, key_size=definition.key_size,
                   value_size=definition.value_size, max_entries=definition.max_entries,
                   name=definition.name, flags=definition.map_flags,
                   numa_node=definition.numa_node or None, map_extra=definition.map_extra,
                   contents=dict(definition.initial),
                   pin_path=(BPFFS_PATH + "/" + definition.name
                             if definition.pinning == LIBBPF_PIN_BY_NAME else None))
    if definition.inner is not None:
        spec.inner = _map_spec(obj, definition.inner, None)
    if (btf is not None and definition.btf_value_type_id
            and definition.map_type not in NO_BTF_MAP_TYPES):
        spec.btf = btf
        spec.btf_key_type_id = definition.btf_key_type_id
        spec.btf_value_type_id = definition.btf_value_type_id
    return spec


def _data_map_spec(data: GlobalData) -> MapSpec:
    flags = BPF_F_MMAPABLE | (BPF_F_RDONLY_PROG if data.readonly else 0)
    return MapSpec(BPF_MAP_TYPE_ARRAY, key_size=4, value_size=len(data.data), max_entries=1,
                   name=data.section, flags=flags, value=bytes)


def _config_spec(obj: BPFObject, data: GlobalData) -> ConfigSpec:
    btf = obj.btf

    def encode(values: Mapping[str, Any]) -> bytes:
        out = bytearray(data.data)
        for name, value in values.items():
            variable = data.variables[name]
            out[variable.offset:variable.offset + variable.size] = encode_variable(
                btf, variable, value)
        return bytes(out)

    return ConfigSpec(data.section, tuple(data.variables), encode, freeze=data.readonly)


def _program_spec(obj: BPFObject, program: ObjectProgram, btf: Optional[bytes]) -> ProgramSpec:
    definition = program.definition
    if definition is None:
        raise obj.elf.error("program %r: libbpf does not know section name %r, so its program "
                            "type is unknown" % (program.name, program.section),
                            obj.elf.by_name[program.section])
    linked = program.linked
    func_info = tuple(linked.func_info)
    return ProgramSpec(
        name=program.name, prog_type=definition.prog_type,
        target=definition.attach_target(program.section), code=_assembled(linked),
        license=obj.license, btf=btf if func_info else None, func_info=func_info,
        line_info=tuple(linked.kernel_line_info) if func_info else (),
        expected_attach_type=definition.expected_attach_type,
        prog_flags=definition.prog_flags,
        attach_btf_id=(_attach_btf_id(obj, program) if definition.flags & SEC_ATTACH_BTF
                       else 0))


def _attach_btf_id(obj: BPFObject, program: ObjectProgram) -> int:
    """The vmlinux BTF id the tracing or LSM program attaches to."""
    definition = program.definition
    target = definition.attach_target(program.section)
    wanted = _attach_type_name(definition.prog_type, definition.expected_attach_type, target)
    if wanted is None:
        return 0
    found = obj.externs.target_types(*wanted)
    if not found:
        raise obj.elf.error("program %r: the kernel has no %s to attach to"
                            % (program.name, wanted[0]), obj.elf.by_name[program.section])
    return found[0].id


def _attach_type_name(prog_type: int, expected_attach_type: int,
                      target: str) -> Optional[Tuple[str, Tuple[int]]]:
    """The name and BTF kind a tracing or LSM program's target has in the
    kernel's BTF, as libbpf names it (``btf_trace_<tp>``, ``bpf_lsm_<hook>``,
    ``bpf_iter_<it>``, the function itself); None when nothing is looked up."""
    if prog_type == BPF_PROG_TYPE_EXT or not target:
        return None   # freplace's target is a program: chosen when attaching
    if expected_attach_type == BPF_TRACE_RAW_TP:
        return "btf_trace_" + target, (BTF_KIND_TYPEDEF,)
    if prog_type == BPF_PROG_TYPE_LSM:
        return "bpf_lsm_" + target, (BTF_KIND_FUNC,)
    if expected_attach_type == BPF_TRACE_ITER:
        return "bpf_iter_" + target, (BTF_KIND_FUNC,)
    return target, (BTF_KIND_FUNC,)


def set_attach_target(program: ProgramSpec, target: str, btf: Optional[BTF] = None) -> None:
    """Point ``program`` at another target before loading (libbpf's
    ``bpf_program__set_attach_target``): a tracepoint for ``tp/`` sections,
    a kernel function or tracepoint for BTF-attached ones (``fentry/``,
    ``tp_btf/``, ``lsm/``), looked up in ``btf`` (this kernel's by default)."""
    if program.attach_btf_id:
        wanted = _attach_type_name(program.prog_type, program.expected_attach_type, target)
        found = (btf or vmlinux()).find_all(*wanted) if wanted else []
        if not found:
            raise ValueError("program %r: the kernel has no %s to attach to"
                             % (program.name, wanted[0] if wanted else target))
        program.attach_btf_id = found[0].id
    program.target = target


def _assembled(linked: LinkedProgram) -> AssembledProgram:
    """The linked code as an AssembledProgram: map references as
    relocations by name, C lines from ``line_info`` as source locations."""
    instructions = isa.decode(linked.code, validate=False)
    starts = isa.slot_starts(instructions)
    index_of = {slot: index for index, slot in enumerate(starts[:-1])}
    relocations = [
        Relocation(index_of[slot], RELOC_MAP_FD, ref.target) if ref.kind == REF_MAP else
        Relocation(index_of[slot], RELOC_MAP_VALUE, ref.target, ref.offset)
        for slot, ref in sorted(linked.references.items())]
    return AssembledProgram(instructions, relocations,
                            lines=_lines(starts[:-1], linked.line_info), name=linked.name)


def _lines(starts: Sequence[int],
           line_info: List[Tuple[int, str, int, int]]) -> List[Optional[SourceLocation]]:
    """Each instruction's C line: the last ``line_info`` at or before it."""
    ordered = sorted(line_info)
    slots = [entry[0] for entry in ordered]
    out: List[Optional[SourceLocation]] = []
    for slot in starts:
        at = bisect_right(slots, slot) - 1
        out.append(SourceLocation(ordered[at][1], ordered[at][2]) if at >= 0 else None)
    return out

