"""Externs: ``__kconfig`` values and ``__ksym`` kernel symbols, resolved on
this host as libbpf resolves them.

``extern int LINUX_KERNEL_VERSION __kconfig;`` and ``extern bool
CONFIG_BPF_SYSCALL __kconfig;`` live in a private read-only ``.kconfig``
map, laid out as libbpf lays it out (by alignment, largest first, then
size, then name) and filled from ``uname`` (``LINUX_KERNEL_VERSION``), a
cookie probe (``LINUX_HAS_BPF_COOKIE``) and the kernel's configuration
(``/proc/config.gz``, else ``/boot/config-$(uname -r)``). A ``__weak``
extern missing there reads 0; a strong one is an error naming it.
``__ksym`` variables become ``BPF_PSEUDO_BTF_ID`` loads of their vmlinux
BTF id, typeless ones (``extern const void x __ksym``) their kallsyms
address, and kfunc calls ``BPF_PSEUDO_KFUNC_CALL`` of the function's id.
"""

import gzip
import os
import re
import struct
from typing import Callable, Dict, List, Optional, Sequence

from .. import isa
from ..kernel.btf import BTF, BTFType
from ..kernel.btf_format import BTF_KIND_ARRAY, BTF_KIND_DATASEC, BTF_KIND_FUNC, BTF_KIND_VAR
from .link import REF_VALUE, Reference
from .maps import GlobalData, Variable, datasec_entries
from .reader import SHN_UNDEF, STB_WEAK, STT_SECTION, ElfFile, Section, Symbol
from .values import encode_variable

KCONFIG_SECTION = ".kconfig"
KSYMS_SECTION = ".ksyms"
_SLOT = struct.Struct("<BBhi")


def kernel_version(release: Optional[str] = None) -> int:
    """``KERNEL_VERSION(a, b, c)`` of this kernel's release (``6.18.0-...``),
    the patch level capped at 255 as the kernel caps it."""
    release = release or os.uname().release
    numbers = [int(n) for n in re.findall(r"\d+", release)[:3]] + [0, 0, 0]
    return numbers[0] << 16 | numbers[1] << 8 | min(numbers[2], 255)


def read_kernel_config() -> Dict[str, str]:
    """``{CONFIG_NAME: value}`` of the running kernel; empty if it has none."""
    paths = ["/proc/config.gz", "/boot/config-" + os.uname().release]
    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:   # type: ignore[operator]
                return dict(line.rstrip("\n").split("=", 1) for line in f
                            if line.startswith("CONFIG_") and "=" in line)
        except OSError:
            continue
    return {}


def _kconfig_value(raw: str):
    """A Kconfig value as libbpf stores it: y/m/n as 1/2/0 (tristate and
    bool alike), numbers as ints, quoted strings as bytes."""
    if raw in ("y", "m", "n"):
        return {"y": 1, "m": 2, "n": 0}[raw]
    if raw.startswith('"'):
        return raw.strip('"').encode()
    return int(raw, 0)


class Externs:
    """The extern symbols of ``elf``; ``target_btf`` gives vmlinux BTF for
    ``__ksym`` resolution."""

    def __init__(self, elf: ElfFile, btf: Optional[BTF], target_btf: Optional[Callable[[], BTF]]):
        self._elf = elf
        self._btf = btf
        self._target_btf = target_btf
        self._symbols = {s.name: s for s in elf.symbols
                         if s.shndx == SHN_UNDEF and s.name and s.type != STT_SECTION}
        self.kconfig: Dict[str, Variable] = {}
        self.kconfig_data: Optional[GlobalData] = None
        if self._symbols and btf is not None:
            self._place_kconfig()

    def _place_kconfig(self) -> None:
        found = self._btf.find_all(KCONFIG_SECTION, (BTF_KIND_DATASEC,))
        if not found:
            return
        entries = []
        for var_id, _offset, size in datasec_entries(self._btf, found[0].id):
            var = self._btf.type(var_id)
            entries.append((var.name, var.type, self._btf.sizeof(var.type)))
        entries.sort(key=lambda e: (-self._align(e[1]), e[2], e[0]))
        offset = 0
        for name, type_id, size in entries:
            align = self._align(type_id)
            offset = -(-offset // align) * align
            self.kconfig[name] = Variable(name, offset, size, type_id)
            offset += size
        self.kconfig_data = GlobalData(KCONFIG_SECTION, self._kconfig_bytes(offset), True,
                                       dict(self.kconfig), found[0].id)

    def _align(self, type_id: int) -> int:
        t = self._btf.resolve_type(type_id)
        if t.kind == BTF_KIND_ARRAY:
            return self._align(self._btf.array_info(t.id).elem_type_id)
        return min(self._btf.sizeof(t.id), 8) or 1

    def _kconfig_bytes(self, size: int) -> bytes:
        data = bytearray(size)
        config: Optional[Dict[str, str]] = None
        for name, variable in self.kconfig.items():
            if name == "LINUX_KERNEL_VERSION":
                value = kernel_version()
            elif name in ("LINUX_HAS_BPF_COOKIE", "LINUX_HAS_SYSCALL_WRAPPER"):
                value = 1     # every kernel pybpf loads into (5.15+) has both
            elif name.startswith("CONFIG_"):
                config = read_kernel_config() if config is None else config
                if name not in config:
                    self._require_weak(name, "not set in this kernel's configuration")
                    continue
                value = _kconfig_value(config[name])
            else:
                self._require_weak(name, "a __kconfig extern libbpf does not know")
                continue
            try:
                raw = encode_variable(self._btf, variable, value)
            except ValueError as exc:
                raise self._elf.error("kconfig extern %s" % exc)
            data[variable.offset:variable.offset + variable.size] = raw
        return bytes(data)

    def _require_weak(self, name: str, why: str) -> None:
        symbol = self._symbols.get(name)
        if symbol is None or symbol.bind != STB_WEAK:
            raise self._elf.error("extern %s is %s (declare it __weak to read 0)" % (name, why))

    def btf_offsets(self) -> Dict[str, Dict[str, int]]:
        """Where the fixed BTF places each extern (see :mod:`.btf_fixup`)."""
        return {KCONFIG_SECTION: {n: v.offset for n, v in self.kconfig.items()}}

    # --- relocations against externs -----------------------------------------------------

    def patch(self, code: bytearray, slot: int, symbol: Symbol,
              section: Section) -> Optional[Reference]:
        """Resolve the instruction at ``slot`` that uses extern ``symbol``:
        a reference into ``.kconfig``, or the code patched in place."""
        if symbol.name in self.kconfig:
            return Reference(REF_VALUE, KCONFIG_SECTION, self.kconfig[symbol.name].offset)
        opcode, regs, off, _imm = _SLOT.unpack_from(code, slot * 8)
        target = self._kernel_type(symbol, section, slot)
        if opcode == isa.BPF_JMP | isa.BPF_CALL:
            _SLOT.pack_into(code, slot * 8, opcode,
                            (regs & 0x0F) | isa.BPF_PSEUDO_KFUNC_CALL << 4, 0, target)
        elif target:
            _SLOT.pack_into(code, slot * 8, opcode, (regs & 0x0F) | isa.BPF_PSEUDO_BTF_ID << 4,
                            off, target)
            _SLOT.pack_into(code, slot * 8 + 8, 0, 0, 0, 0)
        else:   # a __weak ksym this kernel does not have: NULL
            _SLOT.pack_into(code, slot * 8, opcode, regs & 0x0F, off, 0)
            _SLOT.pack_into(code, slot * 8 + 8, 0, 0, 0, 0)
        return None

    def target_types(self, name: str, kinds: Sequence[int]) -> List[BTFType]:
        """The target kernel's types called ``name`` (of ``kinds``)."""
        if self._target_btf is None:
            raise self._elf.error("%r must be looked up in the kernel's BTF, and none was "
                                  "given" % name)
        return self._target_btf().find_all(name, kinds)

    def _kernel_type(self, symbol: Symbol, section: Section, slot: int) -> int:
        """The vmlinux BTF id of the kernel variable or function ``symbol``
        names (0 for a missing __weak one)."""
        found = self.target_types(symbol.name, (BTF_KIND_FUNC, BTF_KIND_VAR))
        if not found:
            if symbol.bind == STB_WEAK:
                return 0
            raise self._elf.error("extern %r: this kernel has no such variable or function "
                                  "in its BTF" % symbol.name, section, slot * 8)
        return found[0].id

