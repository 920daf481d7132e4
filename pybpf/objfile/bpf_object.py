"""One ELF object, read, relocated and linked: the programs, maps and
global data it holds, independent of how they will be loaded.

:class:`BPFObject` runs the steps in libbpf's order: read the ELF, the
BTF and ``.BTF.ext``; collect maps (``.maps``, ``maps``) and global data;
place externs; apply CO-RE relocations to each code section against the
target kernel's BTF; then link every entry program. Turning the result into
a :class:`~pybpf.spec.CollectionSpec` is :mod:`pybpf.objfile.to_spec`'s job.
"""

import struct
from typing import Callable, Dict, List, NamedTuple, Optional

from ..kernel.btf import BTF
from ..kernel.btf_format import BTFError
from . import core, externs
from .btf_ext import BTFExt
from .btf_fixup import fixed_btf
from .link import LinkedProgram, Linker
from .maps import MapDef, GlobalData, btf_maps, global_data, is_data_section, legacy_maps
from ..elf import SHF_EXECINSTR, SHT_PROGBITS
from .reader import ElfFile, ObjectFileError, read
from .sections import SectionDef, find_section_def



class ObjectProgram(NamedTuple):
    """An entry program: its section's definition (``None`` when libbpf
    does not know the section name) and its linked code."""

    name: str
    section: str
    definition: Optional[SectionDef]
    linked: LinkedProgram


class BPFObject:
    """Everything in the object at ``path`` (or in ``data``), relocated
    for the kernel whose BTF ``target_btf`` returns (called only when the
    object has CO-RE relocations or typed externs)."""

    def __init__(self, path: str, data: Optional[bytes] = None,
                 target_btf: Optional[Callable[[], BTF]] = None):
        self.elf = ElfFile(data, path) if data is not None else read(path)
        self.name = path
        elf = self.elf
        self.btf = self._read_btf()
        self.btf_ext = self._read_btf_ext()
        self.license = self._string_section("license") or ""
        version = elf.by_name.get("version")
        self.kernel_version = (struct.unpack_from("<I", version.data)[0]
                               if version is not None and len(version.data) >= 4 else 0)
        self.maps: List[MapDef] = self._guard(lambda: btf_maps(elf, self.btf)) + legacy_maps(elf)
        self.data: List[GlobalData] = global_data(elf, self.btf)
        self.externs = externs.Externs(elf, self.btf, target_btf)
        if self.externs.kconfig_data is not None:
            self.data.append(self.externs.kconfig_data)
        self.code: Dict[str, bytearray] = {
            s.name: bytearray(s.data) for s in elf.sections
            if s.type == SHT_PROGBITS and s.flags & SHF_EXECINSTR and s.size}
        if self.btf_ext is not None and self.btf_ext.core_relos:
            core.relocate(elf, self.btf, self.btf_ext, self.code, target_btf)
        maps_at = {(m.section, m.offset): m.name for m in self.maps}
        data_names = {d.section for d in self.data}
        linker = Linker(elf, self.code, lambda section, offset: maps_at.get((section, offset)),
                        lambda name: name in data_names and is_data_section(name),
                        self.externs.patch, self.btf_ext,
                        self.btf.string if self.btf is not None else str)
        self.programs: List[ObjectProgram] = [
            ObjectProgram(entry.name, entry.section.name, find_section_def(entry.section.name),
                          linker.link(entry))
            for entry in linker.entry_programs()]

    def _guard(self, step: Callable):
        """Run ``step``; corrupt BTF becomes an error naming this object."""
        try:
            return step()
        except BTFError as exc:
            raise ObjectFileError(self.name, "corrupt BTF: %s" % exc, ".BTF") from None

    def _read_btf(self) -> Optional[BTF]:
        section = self.elf.by_name.get(".BTF")
        if section is None:
            return None
        return self._guard(lambda: BTF(section.data, source=self.name + ":.BTF"))

    def _read_btf_ext(self) -> Optional[BTFExt]:
        section = self.elf.by_name.get(".BTF.ext")
        if section is None or self.btf is None:
            return None
        return self._guard(lambda: BTFExt(section.data, self.btf.string, self.name))

    def _string_section(self, name: str) -> Optional[str]:
        section = self.elf.by_name.get(name)
        if section is None:
            return None
        return section.data.split(b"\0", 1)[0].decode("utf-8", "replace")

    def kernel_btf(self) -> Optional[bytes]:
        """The object's BTF as the kernel takes it (DATASECs placed), or ``None``."""
        if self.btf is None:
            return None
        return self._guard(lambda: fixed_btf(self.elf, self.btf, self.externs.btf_offsets()))
