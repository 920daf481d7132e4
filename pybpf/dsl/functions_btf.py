"""BTF describing a program's functions, for ``BPF_PROG_LOAD``'s func_info.

The kernel accepts a function's address (``ld_imm64 BPF_PSEUDO_FUNC``, what
a ``bpf_loop`` callback is) only from a program that describes its
functions in BTF, the callback with static linkage. We describe every
function as taking and returning 64-bit integers: the verifier checks
argument types against BTF only for global subprograms, and ours are all
static. The same information lets ``bpftool prog`` name the subprograms.
"""

from typing import List, Sequence, Tuple

from ..asm import AssembledProgram
from ..kernel.btf_writer import BTF_FUNC_GLOBAL, BTF_FUNC_STATIC, BTFBuilder


def function_btf(code: AssembledProgram, main_params: int,
                 subprograms: Sequence[Tuple[str, int]]) -> Tuple[bytes, List[Tuple[int, int]]]:
    """(BTF blob, func_info as (slot, FUNC type id) sorted by slot) for the
    main function (named ``code.name``) and each ``(label, parameter count)``."""
    builder = BTFBuilder()
    word = builder.int("long", 8, signed=True)
    functions = [(code.name, main_params, 0, BTF_FUNC_GLOBAL)]
    functions += [(label, count, code.slot_of(code.labels[label]), BTF_FUNC_STATIC)
                  for label, count in subprograms]
    info = []
    for name, count, slot, linkage in functions:
        proto = builder.func_proto(word, [("arg%d" % i, word) for i in range(count)])
        info.append((slot, builder.func(name, proto, linkage)))
    return builder.encode(), sorted(info)
