"""What ``disasm``, ``asm`` and ``verify`` take as input: programs named on
the command line, built and ready to print, write or load.

A target is one of:

* ``MODULE`` or ``MODULE:PROGRAM``: a Python module with DSL programs
  (``pybpf.programs.opensnoop``, or a module in the current directory);
  every program it defines, or the one named (by program name or by the
  variable holding it);
* ``path/to/file.py[:PROGRAM]``: the same, imported from a file;
* ``FILE.s``: LLVM-syntax assembly text (one program, named after the file).

Each becomes a :class:`Target`: the assembled code, the ELF section it
belongs in (``tracepoint/syscalls/sys_enter_openat``, as clang's ``SEC()``
would name it) and the definitions of the maps it references.
"""

import importlib
import importlib.util
import linecache
import os
import sys
from typing import Any, List, NamedTuple, Optional, Tuple

import click

from .. import asm_text, dsl, elf
from ..asm import AssembledProgram
from ..errors import PyBPFError
from ..kernel.map_spec import MapSpec, create_attr
from ..consts import BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_TRACEPOINT
from .common import CLIError

# libbpf's SEC() prefixes for the program types the DSL makes
SECTION_PREFIX = {BPF_PROG_TYPE_TRACEPOINT: "tracepoint/",
                  BPF_PROG_TYPE_RAW_TRACEPOINT: "raw_tracepoint/"}


class Target(NamedTuple):
    """One program named on the command line, built."""

    name: str
    section: str
    code: AssembledProgram
    maps: Tuple[elf.MapDefinition, ...]
    program: Optional[dsl.ProgramDecl]     # the DSL program (None for assembly text)

    @property
    def elf_section(self) -> elf.ProgramSection:
        """This program as a section of the ELF object ``disasm -o`` writes."""
        return elf.ProgramSection(self.name, self.section, self.code)


def _debugging() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context and context.find_root().params.get("debug"))


def _import(spec: str) -> Any:
    """The module a target names: a dotted name (looked up from the current
    directory too, like ``python -m``) or a ``.py`` file."""
    try:
        if spec.endswith(".py"):
            path = os.path.abspath(spec)
            if not os.path.isfile(path):
                raise CLIError("no such file: %s" % spec)
            name = os.path.splitext(os.path.basename(path))[0]
            sys.path.insert(0, os.path.dirname(path))   # its siblings, as for a script
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(spec)
    except (CLIError, PyBPFError):
        raise
    except Exception as exc:   # the user's module failed: say which and why, in one line
        if _debugging():
            raise
        if isinstance(exc, ModuleNotFoundError) and exc.name and spec.startswith(exc.name):
            raise CLIError("no module named %r (give a module with DSL programs, such as "
                           "pybpf.programs.opensnoop, a .py file or a .s file)" % spec) from None
        raise CLIError("importing %s failed: %s: %s" % (spec, type(exc).__name__, exc)) from None


def map_definition(decl: Any) -> elf.MapDefinition:
    """A DSL map declaration as the kernel would create it."""
    return spec_definition(decl.name, decl.spec())


def spec_definition(name: str, spec: MapSpec) -> elf.MapDefinition:
    """The map of ``spec`` as the kernel would create it."""
    attr = create_attr(spec, spec.type_value)
    return elf.MapDefinition(name, attr.map_type, attr.key_size, attr.value_size,
                             attr.max_entries, attr.map_flags)


def _dsl_target(program: dsl.ProgramDecl) -> Target:
    section = SECTION_PREFIX.get(program.prog_type, "") + program.target
    maps = tuple(map_definition(decl) for decl in program.map_decls().values())
    return Target(program.name, section, program.build(), maps, program)


def _module_targets(module_spec: str, wanted: Optional[str]) -> List[Target]:
    module = _import(module_spec)
    # Source lines of a module inside a zip archive (the zipapp) are readable
    # through its loader only: tell linecache, which the disassembler asks.
    linecache.lazycache(getattr(module, "__file__", None) or "", vars(module))
    programs = [(variable, value) for variable, value in vars(module).items()
                if isinstance(value, dsl.ProgramDecl)]
    if not programs:
        raise CLIError("module %s defines no DSL programs" % module_spec)
    if wanted is not None:
        chosen = [(variable, program) for variable, program in programs
                  if wanted in (variable, program.name)]
        if not chosen:
            raise CLIError("module %s has no program %r (it has: %s)" % (
                module_spec, wanted, ", ".join(program.name for _, program in programs)))
        programs = chosen
    return [_dsl_target(program) for _, program in programs]


def assembly_target(path: str, section: Optional[str] = None) -> Target:
    """Assembly text from a file, as one program named after the file."""
    with open(path) as source:
        code = asm_text.parse(source.read(), filename=path)
    name = os.path.splitext(os.path.basename(path))[0]
    # Assembly text names its maps and nothing more: elf.ObjectFile adds them by name.
    return Target(name, section or elf.TEXT_SECTION, code, (), None)


def resolve(spec: str, section: Optional[str] = None) -> List[Target]:
    """The programs ``spec`` names (see the module docstring); ``section``
    overrides the ELF section of assembly text."""
    if spec.endswith(".s"):
        return [assembly_target(spec, section)]
    if section is not None:
        raise CLIError("--section is for assembly text; DSL programs have their own section")
    module_spec, _, wanted = spec.partition(":")
    if not module_spec:
        raise CLIError("%r names no module (expected MODULE[:PROGRAM])" % spec)
    return _module_targets(module_spec, wanted or None)
