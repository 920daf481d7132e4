"""``pybpf prog dump xlated|jited ID``: a loaded program as the kernel runs it.

``xlated`` is the bytecode after the verifier's rewrites (inlined map
lookups, helper calls turned into addresses, map fds into map ids), printed
by our disassembler: in the kernel's syntax by default, line for line what
``bpftool prog dump xlated`` prints, with rewritten helper calls named from
``/proc/kallsyms`` as bpftool names them.

``jited`` is the machine code. Decoding it would need a disassembler for the
host's architecture, which pybpf does not carry and must not need: it
prints each JIT-compiled function as hex bytes, and with ``--objdump``
pipes them through binutils' ``objdump`` when it is installed.
"""

import platform
import shutil
import subprocess
import tempfile
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import click

from .. import disasm, isa
from ..asm import RELOC_MAP_FD, RELOC_MAP_VALUE, AssembledProgram, Relocation
from ..errors import DecodeError, NotFoundError
from ..kernel import objects
from .common import CLIError, hex_bytes, json_option, print_json
from ..kernel.kallsyms import KernelSymbols

# binutils' name for the host's instruction set, for objdump -m
OBJDUMP_ARCH = {"x86_64": "i386:x86-64", "aarch64": "aarch64", "riscv64": "riscv:rv64",
                "s390x": "s390:64-bit", "ppc64le": "powerpc:common64"}


class Xlated(NamedTuple):
    """A program's translated code, and where the JIT put its functions."""

    instructions: List[isa.Instruction]
    ksyms: Tuple[int, ...]      # address of each JIT-compiled function; empty without JIT


def _xlated(prog_id: int) -> Xlated:
    with objects.PROGS.open(prog_id) as fd:
        raw = objects.prog_xlated(fd)
        ksyms = objects.prog_jited_ksyms(fd)
    if not raw:
        raise CLIError("program %d has no translated instructions to show (the kernel hides "
                       "them without CAP_SYS_ADMIN, or bpf_jit_harden is on)" % prog_id)
    # The kernel's own rewrites may use encodings no loader may submit; show them anyway.
    return Xlated(isa.decode(raw, validate=False), ksyms)


def _is_moved_call(insn: isa.Instruction) -> bool:
    """A bpf-to-bpf call as the verifier leaves it: the pc offset moved to
    ``off``, the callee's function number in ``imm`` (verifier.c, jit_subprogs)."""
    return insn.is_local_call and insn.off != 0


def as_loaded(instructions: Sequence[isa.Instruction]) -> List[isa.Instruction]:
    """bpf-to-bpf calls back in the encoding a loader writes (offset in imm)."""
    return [insn._replace(imm=insn.off, off=0) if _is_moved_call(insn) else insn
            for insn in instructions]


def _kernel_internal(instructions: Sequence[isa.Instruction]) -> Dict[int, str]:
    """Slot -> problem, for instructions no loader may submit: encodings the
    verifier itself writes (such as the per-CPU address move of an inlined
    map lookup), which our instruction set refuses."""
    found = {}
    for insn, slot in zip(instructions, isa.slot_starts(instructions)):
        problem = isa.validity_problem(insn)
        if problem:
            found[slot] = problem
    return found


def _call_text(insn: isa.Instruction, code: Xlated, symbols: KernelSymbols) -> Optional[str]:
    """A call as bpftool names it (``print_call`` in its xlated_dumper.c), or
    None where our kernel style already says the same."""
    if _is_moved_call(insn):
        if not code.ksyms:
            return "call pc%+d" % insn.off
        address = code.ksyms[insn.imm] if insn.imm < len(code.ksyms) else 0
        return "call pc%+d#%s" % (insn.off, symbols.name_at(address) or "%#x" % address)
    if insn.is_helper_call and disasm.helper_name(insn.imm) is None:
        name = symbols.helper_name(insn.imm)
        return "call %s#%d" % (name, insn.imm) if name is not None else None
    return None


def kernel_lines(code: Xlated, symbols: KernelSymbols) -> List[str]:
    """``bpftool prog dump xlated`` lines: our kernel style, with calls named
    as bpftool names them (helpers the verifier turned into addresses, and
    JIT-compiled functions, from kallsyms) and other kernel-internal
    encodings shown as their bytes."""
    lines = []
    for insn, slot in zip(code.instructions, isa.slot_starts(code.instructions)):
        call = _call_text(insn, code, symbols)
        if call is not None:
            text = "(%02x) %s" % (insn.opcode, call)
        else:
            try:
                text = disasm.format_instruction(insn, style="kernel")
            except DecodeError as exc:
                text = "(%02x) kernel-internal instruction %s (%s)" % (
                    insn.opcode, hex_bytes(insn.encode()), exc.problem)
        lines.append("% 4d: %s" % (slot, text))
    return lines


def _map_name(map_id: int, cache: Dict[int, str]) -> str:
    if map_id not in cache:
        try:
            name = objects.MAPS.info_by_id(map_id).name
        except NotFoundError:
            name = ""
        cache[map_id] = name or "map_%d" % map_id
    return cache[map_id]


def with_map_names(instructions: Sequence[isa.Instruction]) -> AssembledProgram:
    """The xlated code with each map reference (the kernel writes map ids
    there) named after its map, for the llvm and annotated styles."""
    names: Dict[int, str] = {}
    relocations = []
    for index, insn in enumerate(instructions):
        if insn.is_ld_imm64 and insn.src == isa.BPF_PSEUDO_MAP_FD:
            relocations.append(Relocation(index, RELOC_MAP_FD, _map_name(insn.imm & 0xFFFFFFFF,
                                                                         names)))
        elif insn.is_ld_imm64 and insn.src == isa.BPF_PSEUDO_MAP_VALUE:
            relocations.append(Relocation(index, RELOC_MAP_VALUE,
                                          _map_name(insn.imm & 0xFFFFFFFF, names),
                                          (insn.imm >> 32) & 0xFFFFFFFF))
    return AssembledProgram(instructions, relocations)


@click.command("xlated", help="""Print program ID as the verifier rewrote it.

The default style is the kernel's (as bpftool and verifier logs print it);
--style annotated adds labels and map names, --style llvm is llvm-objdump's
syntax. Helper calls the verifier rewrote show as kernel function names in
the kernel style only.

\b
Example:
  pybpf prog dump xlated 42
  pybpf prog dump xlated 42 --style annotated
""")
@click.argument("prog_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--style", type=click.Choice(disasm.STYLES), default="kernel", show_default=True,
              help="Syntax of the listing.")
@json_option
def dump_xlated(prog_id: int, style: str, as_json: bool) -> None:
    """The ``pybpf prog dump xlated`` command: the program as the verifier left it."""
    code = _xlated(prog_id)
    instructions = code.instructions
    if style == "kernel":
        lines = kernel_lines(code, KernelSymbols())
    else:
        instructions = as_loaded(instructions)
        internal = _kernel_internal(instructions)
        if internal:
            slot, problem = sorted(internal.items())[0]
            raise CLIError("program %d has kernel-internal instructions (slot %d: %s) that "
                           "only --style kernel shows" % (prog_id, slot, problem))
        lines = disasm.disassemble(with_map_names(instructions), style=style,
                                   legend=False).splitlines()
    if not as_json:
        click.echo("\n".join(lines))
        return
    slots = isa.slot_starts(instructions)
    if style == "kernel":   # one line per instruction, after its "slot: "
        print_json([{"slot": s, "bytes": hex_bytes(insn.encode()), "disasm": line.split(": ", 1)[1]}
                    for s, insn, line in zip(slots, instructions, lines)])
    else:
        print_json([{"slot": s, "bytes": hex_bytes(insn.encode()),
                     "disasm": disasm.format_instruction(insn, style=style)}
                    for s, insn in zip(slots, instructions)])


class JitedFunction(NamedTuple):
    """One function of a JIT-compiled program: its name, address and machine code."""
    name: str
    address: int
    code: bytes


def _jited_functions(prog_id: int, symbols: KernelSymbols) -> List[JitedFunction]:
    """The program's machine code split into its functions (the main program
    and each bpf-to-bpf function), named as kallsyms names them."""
    with objects.PROGS.open(prog_id) as fd:
        code = objects.prog_jited(fd)
        sizes = objects.prog_jited_func_lens(fd) or (len(code),)
        addresses = objects.prog_jited_ksyms(fd) or (0,)
    if not code:
        raise CLIError("program %d has no machine code: the JIT is off "
                       "(net.core.bpf_jit_enable) or the kernel hides it" % prog_id)
    functions, start = [], 0
    for number, (size, address) in enumerate(zip(sizes, addresses)):
        name = symbols.name_at(address) or "function %d" % number
        functions.append(JitedFunction(name, address, code[start:start + size]))
        start += size
    return functions


def _hex_listing(code: bytes) -> List[str]:
    return ["%8x:  %s" % (offset, hex_bytes(code[offset:offset + 16]))
            for offset in range(0, len(code), 16)]


def _objdump_listing(function: JitedFunction) -> List[str]:
    """The function disassembled by binutils' objdump (not needed otherwise)."""
    objdump = shutil.which("objdump")
    arch = OBJDUMP_ARCH.get(platform.machine())
    if objdump is None or arch is None:
        raise CLIError("--objdump needs binutils' objdump and a known architecture "
                       "(found objdump=%s, machine=%s)" % (objdump, platform.machine()))
    with tempfile.NamedTemporaryFile(prefix="pybpf-jited-") as raw:
        raw.write(function.code)
        raw.flush()
        result = subprocess.run([objdump, "-D", "-b", "binary", "-m", arch,
                                 "--adjust-vma=%#x" % function.address, raw.name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True)
    if result.returncode:
        raise CLIError("objdump failed: %s" % result.stderr.strip())
    body = result.stdout.split("<.data>:\n", 1)[-1]
    return [line for line in body.splitlines() if line.strip()]


@click.command("jited", help="""Print program ID's machine code, one block per function.

Bytes are shown in hex; --objdump disassembles them with binutils' objdump
when it is installed (pybpf itself carries no disassembler for the host).

\b
Example:
  pybpf prog dump jited 42
  pybpf prog dump jited 42 --objdump
""")
@click.argument("prog_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--objdump", "use_objdump", is_flag=True,
              help="Disassemble with binutils' objdump.")
@json_option
def dump_jited(prog_id: int, use_objdump: bool, as_json: bool) -> None:
    """The ``pybpf prog dump jited`` command: the JIT's machine code, per function."""
    functions = _jited_functions(prog_id, KernelSymbols())
    if as_json:
        print_json([{"name": f.name, "address": "%#x" % f.address, "size": len(f.code),
                     "code": f.code.hex()} for f in functions])
        return
    blocks = []
    for function in functions:
        lines = _objdump_listing(function) if use_objdump else _hex_listing(function.code)
        blocks.append("\n".join(["%s:  (%d bytes at %#x)" % (function.name, len(function.code),
                                                          function.address)] + lines))
    click.echo("\n\n".join(blocks))


dump_group = click.Group("dump", help="""Print a loaded program's code (xlated or jited).

\b
Example:
  pybpf prog dump xlated 42
""", commands=[dump_xlated, dump_jited])
