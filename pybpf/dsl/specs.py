"""DSL programs to a :class:`~pybpf.spec.CollectionSpec`: what the loader loads.

:func:`collection_spec` builds each program (once: builds are cached on the
declaration) and gathers what they reference: every map declaration as a
:class:`~pybpf.kernel.map_spec.MapSpec` (with the codecs of its declared
key and value types), every :class:`~.config.Config` as a
:class:`~pybpf.spec.ConfigSpec`, and for a program with subprograms the BTF
that describes its functions. The declarations themselves are not changed
and hold no kernel object: change the spec instead.

>>> spec = collection_spec(count_syscalls)            # doctest: +SKIP
>>> spec.maps["counts"].max_entries = 4096            # doctest: +SKIP
"""

from types import ModuleType
from typing import Any, Dict, Iterable, List, Union

from ..errors import ProgramBuildError
from ..spec import CollectionSpec, ConfigSpec, ProgramSpec
from .functions_btf import function_btf
from .program import ProgramDecl


def collection_spec(source: Union[ModuleType, Iterable[ProgramDecl]]) -> CollectionSpec:
    """The spec of ``source``: a module (every program it defines, in
    order) or programs."""
    programs = _programs_of(source)
    spec = CollectionSpec()
    decls: Dict[str, Any] = {}
    for program in programs:
        code = program.build()
        for name, decl in program.map_decls().items():
            if decls.get(name, decl) is not decl:
                raise ProgramBuildError("two different maps are named %r; rename one "
                                        "(name=...)" % name, program.location)
            decls[name] = decl
        spec.programs[program.name] = _program_spec(program, code)
    for name, decl in decls.items():
        spec.maps[name] = decl.spec()
        config = getattr(decl, "config", None)
        if config is not None:
            spec.configs[config.name] = ConfigSpec(map=name, fields=tuple(config.layout.fields),
                                                   encode=config.values)
    return spec


def _programs_of(source: Union[ModuleType, Iterable[ProgramDecl]]) -> List[ProgramDecl]:
    if isinstance(source, ModuleType):
        programs = [value for value in vars(source).values() if isinstance(value, ProgramDecl)]
        if not programs:
            raise ValueError("module %s defines no programs" % source.__name__)
        return programs
    programs = list(source)
    if not programs:
        raise ValueError("a collection needs at least one program")
    return programs


def _program_spec(program: ProgramDecl, code: Any) -> ProgramSpec:
    """One program's spec; one with subprograms gets the BTF of its functions."""
    spec = ProgramSpec(program.name, program.prog_type, program.target, code,
                       license=program.license, cpu=program.cpu)
    subprograms = program.subprograms()
    if subprograms:
        spec.btf, spec.func_info = function_btf(code, 1, [(s.label, len(s.params))
                                                          for s in subprograms])
    return spec
