"""``pybpf disasm``, ``asm`` and ``verify``: programs as text, as ELF objects,
and as the verifier judges them.

``disasm`` prints our annotated listing (source lines, labels, helper and
map names), ``--raw`` the listing ``llvm-objdump -d -r`` prints for the
object ``-o`` writes (:mod:`.listing`), ``--json`` one record per
instruction. ``asm`` writes assembly text as an ELF object. ``verify`` loads
programs with their maps, attaches nothing, and reports the verifier's
verdict and statistics, or its log with the DSL lines it points at.
"""

import linecache
import os
import re
from typing import Any, Dict, List, Optional, Sequence

import click

from .. import disasm as _disasm
from .. import dsl, elf
from ..asm import AssembledProgram
from ..errors import VerifierError
from ..consts import MAP_TYPES
from ..kernel.prog import Program as KernelProgram
from ..loader import Collection
from .common import CLIError, hex_bytes, json_option, print_json
from .listing import objdump_listing
from .objload import is_object_file, object_targets
from .targets import Target, assembly_target, resolve

# "12: (85) call bpf_map_lookup_elem#1": an instruction line of a verifier log
_LOG_INSN = re.compile(r"^(\d+): \([0-9a-f]{2}\) ")


def _object(targets: Sequence[Target], license: Optional[str] = None) -> elf.ObjectFile:
    licenses = {t.program.license for t in targets if t.program is not None}
    if len(licenses) > 1:
        raise CLIError("the programs have different licenses (%s); write them to separate "
                       "objects" % ", ".join(sorted(licenses)))
    maps = {m.name: m for t in targets for m in t.maps}
    try:
        return elf.ObjectFile([t.elf_section for t in targets], list(maps.values()),
                              license or (licenses.pop() if licenses else "GPL"))
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _write(path: str, obj: elf.ObjectFile) -> None:
    """Encode first: a failure leaves no half-written file behind."""
    data = obj.encode()
    with open(path, "wb") as out:
        out.write(data)


# --- disasm ---------------------------------------------------------------------------------

def _header(target: Target) -> List[str]:
    code = target.code
    lines = ["# program %s, section %s: %d instructions in %d slots"
             % (target.name, target.section, len(code), code.slot_count)]
    for m in target.maps:
        lines.append("# map %s: %s, key %dB, value %dB, max_entries %d" % (
            m.name, MAP_TYPES.short(m.map_type), m.key_size, m.value_size, m.max_entries))
    return lines


def _map_json(definition: elf.MapDefinition) -> Dict[str, Any]:
    """A map as ``map show --json`` names its facts."""
    return {"name": definition.name, "type": MAP_TYPES.short(definition.map_type),
            "flags": definition.map_flags, "bytes_key": definition.key_size,
            "bytes_value": definition.value_size, "max_entries": definition.max_entries}


def _instruction_json(target: Target) -> List[Dict[str, Any]]:
    code = target.code
    labels = code.labels_by_index()
    maps = code.map_symbols()
    out = []
    for index, insn in enumerate(code.instructions):
        location = code.lines[index]
        reloc = maps.get(index)
        out.append({
            "slot": code.slot_of(index), "bytes": hex_bytes(insn.encode()),
            "text": _disasm.format_instruction(insn), "labels": labels.get(index, []),
            "map": reloc.symbol if reloc else None,
            "helper": _disasm.helper_name(insn.imm) if insn.is_helper_call else None,
            "source": {"file": location.filename, "line": location.line} if location else None,
        })
    return out


@click.command("disasm", help="""Build programs and print their disassembly.

TARGET is MODULE[:PROGRAM] (DSL programs, e.g. pybpf.programs.opensnoop),
a .py file with DSL programs, a .s file of LLVM-syntax assembly, or a
clang-built ELF object (its programs relocated and linked for this kernel,
as pybpf prog loadall loads them). The listing shows source lines, labels,
helper and map names; --raw prints exactly what llvm-objdump -d -r prints
for the object -o writes.

\b
Example:
  pybpf disasm pybpf.programs.opensnoop:exit_openat
  pybpf disasm pybpf.programs.count_syscalls --raw
  pybpf disasm pybpf.programs.opensnoop -o opensnoop.o
  pybpf disasm minimal.bpf.o -s tp/syscalls/sys_enter_write
""")
@click.argument("target", metavar="TARGET")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the programs as an ELF object file instead of printing them.")
@click.option("--raw", is_flag=True, help="Print llvm-objdump's listing of the object.")
@click.option("--no-source", is_flag=True, help="Leave out the source lines.")
@click.option("-s", "--section", help="ELF section for a .s file (default .text); of an "
              "ELF object, the section whose programs to show.")
@json_option
def disasm(target: str, output: Optional[str], raw: bool, no_source: bool,
           section: Optional[str], as_json: bool) -> None:
    """The ``pybpf disasm`` command; its help text above is what users read."""
    if output and (raw or as_json):
        raise click.UsageError("-o writes an object file; --raw and --json print, pick one")
    targets = object_targets(target, section) if is_object_file(target) else resolve(target,
                                                                                       section)
    if output:
        _write(output, _object(targets))
    elif raw:
        click.echo(objdump_listing(_object(targets)).lstrip("\n"))
    elif as_json:
        print_json([{"name": t.name, "section": t.section, "slots": t.code.slot_count,
                     "maps": [_map_json(m) for m in t.maps],
                     "instructions": _instruction_json(t)} for t in targets])
    else:
        blocks = []
        for number, t in enumerate(targets):
            # Assembly text is its own source: show source lines for DSL programs only.
            text = _disasm.disassemble(t.code, style="annotated", legend=number == 0,
                                       source=t.program is not None and not no_source)
            blocks.append("\n".join(_header(t) + [text]))
        click.echo("\n\n".join(blocks))


# --- asm ------------------------------------------------------------------------------------

@click.command("asm", help="""Assemble LLVM-syntax text into an ELF object file.

The object holds the program in one section (--section, default .text)
under the function symbol --name (default: the file's name), its labels as
symbols and its map references as R_BPF_64_64 relocations; llvm-objdump -d
shows the same instructions as pybpf disasm FILE.s.

\b
Example:
  pybpf asm count.s -o count.o --section tracepoint/syscalls/sys_enter_openat
  llvm-objdump -d -r count.o
""")
@click.argument("source", metavar="FILE.s", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Object file to write (default: FILE.o).")
@click.option("--section", help="Section of the program (default .text).")
@click.option("--name", help="Symbol of the program (default: the file's name).")
@click.option("--license", "license_", default="GPL", show_default=True,
              help="Text of the license section.")
def asm(source: str, output: Optional[str], section: Optional[str], name: Optional[str],
        license_: str) -> None:
    """The ``pybpf asm`` command: LLVM-syntax text to an object llvm-objdump reads."""
    target = assembly_target(source, section)
    if name:
        target = target._replace(name=name)
    _write(output or os.path.splitext(source)[0] + ".o", _object([target], license_))


# --- verify ---------------------------------------------------------------------------------

def _marked_log(error: VerifierError, code: Optional[AssembledProgram]) -> List[str]:
    """The verifier log with ``; file:line  text`` above the instructions
    each source line emitted; the lines the error points at start ``>>``."""
    marked = set(error.source_lines)
    out: List[str] = []
    previous = None
    for line in error.log.rstrip("\n").splitlines():
        match = _LOG_INSN.match(line)
        if match and code is not None:
            slot = int(match.group(1))
            location = code.location_of_slot(slot) if slot < code.slot_count else None
            if location is not None and location != previous:
                previous = location
                text = linecache.getline(location.filename, location.line).strip()
                out.append("%s %s:%d  %s" % (">>" if location in marked else ";",
                                             _disasm.display_path(location.filename),
                                             location.line, text))
        out.append(line)
    return out


def _stats_json(target: Target, program: KernelProgram) -> Dict[str, Any]:
    """The verdict on one loaded program. ``insns_processed`` is the kernel's
    ``verified_insns``; the fields only the verifier's log reports (states,
    stack depth, time) are null while the DSL loads without a log."""
    info = program.info()
    stats = program.verifier_stats
    return {
        "name": target.name, "section": target.section, "verdict": "accepted", "tag": info.tag,
        "instructions": len(target.code), "slots": target.code.slot_count,
        "insns_processed": stats.insns_processed if stats else info.verified_insns,
        "insn_limit": stats.insn_limit if stats else None,
        "max_states_per_insn": stats.max_states_per_insn if stats else None,
        "total_states": stats.total_states if stats else None,
        "peak_states": stats.peak_states if stats else None,
        "stack_depth": list(stats.stack_depth) if stats else None,
        "verification_time_usec": stats.verification_time_usec if stats else None,
        "bytes_xlated": info.xlated_len, "bytes_jited": info.jited_len,
    }


def _stats_text(record: Dict[str, Any]) -> str:
    facts = ["%d instructions in %d slots" % (record["instructions"], record["slots"]),
             "the verifier processed %d insns" % record["insns_processed"]]
    if record["total_states"] is not None:
        facts.append("%d states (peak %d)" % (record["total_states"], record["peak_states"]))
    if record["stack_depth"]:
        facts.append("stack depth %s" % "+".join(str(d) for d in record["stack_depth"]))
    if record["verification_time_usec"] is not None:
        facts.append("verified in %d usec" % record["verification_time_usec"])
    facts.append("xlated %dB, jited %dB" % (record["bytes_xlated"], record["bytes_jited"]))
    return "%s (%s): accepted\n  %s" % (record["name"], record["section"], "; ".join(facts))


@click.command("verify", help="""Load programs without attaching them; print the verdict.

On success: per program, the instructions the verifier processed and the
sizes of the translated and JIT-compiled code. On rejection: the verifier's
log with the DSL source lines above the instructions they emitted, the ones
at fault marked ">>", and exit status 1.

\b
Example:
  pybpf verify pybpf.programs.opensnoop
  pybpf verify pybpf.programs.count_syscalls --json
""")
@click.argument("target", metavar="TARGET")
@json_option
def verify(target: str, as_json: bool) -> None:
    """The ``pybpf verify`` command: load without attaching, report the verifier's verdict."""
    targets = resolve(target)
    if any(t.program is None for t in targets):
        raise CLIError("verify needs DSL programs (MODULE[:PROGRAM]): assembly text names "
                       "no program type and no map definitions")
    by_name = {t.name: t for t in targets}
    try:
        with Collection(dsl.collection_spec([t.program for t in targets])) as loaded:
            records = [_stats_json(t, loaded.programs[t.name]) for t in targets]
    except VerifierError as error:
        rejected = by_name.get(error.program_name)
        if as_json:
            print_json([{"name": error.program_name, "verdict": "rejected",
                         "error": str(error), "insn_index": error.insn_index,
                         "source_lines": [str(loc) for loc in error.source_lines],
                         "log": error.log}])
        else:
            click.echo("\n".join(_marked_log(error, rejected.code if rejected else None)))
        raise CLIError(str(error)) from None
    if as_json:
        print_json(records)
    else:
        click.echo("\n".join(_stats_text(record) for record in records))


COMMANDS = (disasm, asm, verify)
