"""The object's BTF as the kernel will take it: libbpf's fix-ups, applied
to a copy of the ``.BTF`` bytes.

clang cannot know where the linker will put variables, so it writes each
DATASEC with size 0 and its variables at offset 0; libbpf
(``btf_fixup_datasec``) fills in the section's size from the ELF section
and each variable's offset from its symbol, and the kernel refuses the BTF
until that is done. Externs (``.kconfig``) are variables the kernel does
not accept either (``BTF_VAR_GLOBAL_EXTERN``): they become allocated
variables at the offsets the loader gives them in the ``.kconfig`` map.

Records are patched in place (a DATASEC entry and a VAR's linkage keep their
sizes), so every type id stays as clang wrote it: the ids in ``.BTF.ext``,
in map definitions and in CO-RE relocations stay valid.
"""

import struct
from typing import Dict, Mapping, Optional

from ..kernel.btf import BTF
from ..kernel.btf_format import BTF_KIND_DATASEC, BTF_KIND_VAR
from .reader import ElfFile

BTF_VAR_STATIC = 0
BTF_VAR_GLOBAL_ALLOCATED = 1
BTF_VAR_GLOBAL_EXTERN = 2

_TYPE_HEADER = 12      # struct btf_type
_SECINFO = struct.Struct("<III")   # struct btf_var_secinfo: type, offset, size
_U32 = struct.Struct("<I")


def fixed_btf(elf: ElfFile, btf: BTF,
              extern_offsets: Optional[Mapping[str, Dict[str, int]]] = None) -> bytes:
    """A copy of ``btf``'s bytes with every DATASEC sized and its variables
    placed; ``extern_offsets`` ``{datasec: {variable: offset}}`` places the
    externs (whose DATASEC has no ELF section) and sizes their DATASEC to
    the end of the last one."""
    blob = bytearray(elf.by_name[".BTF"].data)   # what ``btf`` was read from
    extern_offsets = extern_offsets or {}
    for datasec in btf.types():
        if datasec.kind != BTF_KIND_DATASEC:
            continue
        section = elf.by_name.get(datasec.name)
        placed = extern_offsets.get(datasec.name)
        symbols = {s.name: s.value for s in elf.symbols_in(section)} if section else {}
        start = datasec.offset + _TYPE_HEADER
        end = 0
        for number in range(datasec.vlen):
            where = start + number * _SECINFO.size
            var_id, offset, size = _SECINFO.unpack_from(blob, where)
            var = btf.type(var_id)
            if placed is not None and var.name in placed:
                offset = placed[var.name]
                if var.kind == BTF_KIND_VAR:
                    _U32.pack_into(blob, var.offset + _TYPE_HEADER, BTF_VAR_GLOBAL_ALLOCATED)
            elif var.name in symbols:
                offset = symbols[var.name]
            _SECINFO.pack_into(blob, where, var_id, offset, size)
            end = max(end, offset + size)
        if section is not None or placed is not None:
            struct.pack_into("<I", blob, datasec.offset + 8,
                             section.size if section is not None else end)
    return bytes(blob)
