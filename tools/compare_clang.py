#!/usr/bin/env python3
"""How lean is the DSL's code? Instruction counts of programs/ against clang.

For every program in ``programs/`` (``count_syscalls``, ``opensnoop``,
``feature_tour``, ``xdp_count``, ``tc_drop_port``), compile its C
equivalent ``tools/clang/<module>.c`` with ``clang -O2 -target bpf
-mcpu=v3`` (the instruction set our programs are built for by default),
find each function by name in the object's symbol table, and compare its
size with the DSL program of the same name. Counts are 8-byte slots (an
``ld_imm64`` is two), as the kernel counts them. The output is a Markdown
table; the exit status is 1 when a program is over ``--limit`` (default
1.3) times clang's size.

clang is a development tool here, never a dependency of pybpf.

    python3 tools/compare_clang.py              # table on stdout
    python3 tools/compare_clang.py --clang clang-19 --limit 1.2
"""

import argparse
import importlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, NamedTuple, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pybpf.dsl import ProgramDecl  # noqa: E402

MODULES = ("count_syscalls", "opensnoop", "feature_tour", "xdp_count", "tc_drop_port")
C_DIR = os.path.join(ROOT, "tools", "clang")
SLOT = 8

# ELF64 little-endian layouts (<elf.h>: Elf64_Ehdr, Elf64_Shdr, Elf64_Sym)
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
SHT_SYMTAB = 2
STT_FUNC = 2


class Row(NamedTuple):
    module: str
    program: str
    ours: int
    clang: int

    @property
    def ratio(self) -> float:
        return self.ours / self.clang


def function_sizes(elf: bytes) -> Dict[str, int]:
    """Function name -> size in instruction slots, from an ELF object's symbol table."""
    header = _EHDR.unpack_from(elf)
    shoff, shentsize, shnum = header[6], header[11], header[12]
    sections = [_SHDR.unpack_from(elf, shoff + i * shentsize) for i in range(shnum)]
    sizes: Dict[str, int] = {}
    for sh_type, link, offset, size, entsize in ((s[1], s[6], s[4], s[5], s[9])
                                                 for s in sections):
        if sh_type != SHT_SYMTAB:
            continue
        strtab = sections[link]
        strings = elf[strtab[4]:strtab[4] + strtab[5]]
        for at in range(offset, offset + size, entsize):
            name_off, info, _other, _shndx, _value, sym_size = _SYM.unpack_from(elf, at)
            if info & 0xF == STT_FUNC:
                name = strings[name_off:strings.index(b"\0", name_off)].decode()
                sizes[name] = sym_size // SLOT
    return sizes


def compile_c(clang: str, module: str, workdir: str, defines: Dict[str, int]) -> Dict[str, int]:
    source = os.path.join(C_DIR, module + ".c")
    target = os.path.join(workdir, module + ".o")
    flags = ["-D%s=%d" % item for item in defines.items()]
    subprocess.run([clang, "-O2", "-target", "bpf", "-mcpu=v3", *flags, "-c", source,
                    "-o", target], check=True)
    with open(target, "rb") as obj:
        return function_sizes(obj.read())


def c_defines(module: Any) -> Dict[str, int]:
    """Constants the DSL program takes from BTF at build time, for its C twin."""
    if module.__name__.endswith("feature_tour"):
        from pybpf.kernel.btf import vmlinux
        return {"TASK_COMM_OFFSET": vmlinux().resolve("task_struct.comm").offset}
    return {}


def compare(clang: str) -> List[Row]:
    """One row per program. A program's size includes the subprograms it
    calls (our build appends them; in C they are functions of their own)."""
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in MODULES:
            module = importlib.import_module("programs." + name)
            sizes = compile_c(clang, name, workdir, c_defines(module))
            for program in (v for v in vars(module).values() if isinstance(v, ProgramDecl)):
                code = program.build()
                functions = (program.name,) + code.functions
                missing = [f for f in functions if f not in sizes]
                if missing:
                    raise SystemExit("tools/clang/%s.c has no function %s"
                                     % (name, ", ".join(missing)))
                rows.append(Row(name, program.name, code.slot_count,
                                sum(sizes[f] for f in functions)))
    return rows


def markdown(rows: List[Row]) -> str:
    lines = ["| program | DSL | clang -O2 | ratio |", "|---|---:|---:|---:|"]
    totals: Dict[str, Tuple[int, int]] = {}
    for row in rows:
        lines.append("| %s.%s | %d | %d | %.2f |" % (row.module, row.program, row.ours,
                                                      row.clang, row.ratio))
        ours, theirs = totals.get(row.module, (0, 0))
        totals[row.module] = (ours + row.ours, theirs + row.clang)
    for module, (ours, theirs) in totals.items():
        lines.append("| **%s (all)** | %d | %d | %.2f |" % (module, ours, theirs, ours / theirs))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clang", default="clang", help="the clang to use (default: clang)")
    parser.add_argument("--limit", type=float, default=1.3,
                        help="fail when a program is over this ratio (default 1.3)")
    args = parser.parse_args(argv)
    if shutil.which(args.clang) is None:
        print("%s is not installed" % args.clang, file=sys.stderr)
        return 2
    rows = compare(args.clang)
    print("Instruction slots, DSL vs `%s -O2 -target bpf -mcpu=v3`:\n" % args.clang)
    print(markdown(rows))
    over = [row for row in rows if row.ratio > args.limit]
    for row in over:
        print("\n%s.%s is %.2fx clang's size (limit %.2f)" % (row.module, row.program,
                                                              row.ratio, args.limit),
              file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
