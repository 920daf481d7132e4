"""A peephole pass over one function's instructions, before assembly.

Structured control flow leaves two patterns clang would not emit:

* ``if c goto A; goto B; A:`` (an ``if`` whose body is only ``p.break_()``
  or a ``goto``): becomes ``if !c goto B; A:``;
* ``goto A; A:`` (an ``else`` that ended where the chain ends): removed.

Instructions are kept as the calls that will make them (``("jump",
args)``, ``("goto", args)``, ...) with the labels naming them, so a rule
only rewrites calls; the assembler still computes every offset.
"""

from typing import Any, Dict, List, Tuple

from .. import isa

# not (a OP b) as a jump operation
_NEGATED = {isa.BPF_JEQ: isa.BPF_JNE, isa.BPF_JNE: isa.BPF_JEQ,
            isa.BPF_JGT: isa.BPF_JLE, isa.BPF_JLE: isa.BPF_JGT,
            isa.BPF_JGE: isa.BPF_JLT, isa.BPF_JLT: isa.BPF_JGE,
            isa.BPF_JSGT: isa.BPF_JSLE, isa.BPF_JSLE: isa.BPF_JSGT,
            isa.BPF_JSGE: isa.BPF_JSLT, isa.BPF_JSLT: isa.BPF_JSGE}


class Item:
    """One instruction to emit: ``method(*args, location=..., **kwargs)``
    on the assembler, named by ``labels``."""

    __slots__ = ("method", "args", "kwargs", "location", "labels")

    def __init__(self, method: str, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                 location: Any, labels: List[str]):
        self.method, self.args, self.kwargs = method, args, kwargs
        self.location, self.labels = location, labels


def optimize(items: List[Item]) -> List[Item]:
    changed = True
    while changed:
        changed = _invert_over_goto(items) or _drop_goto_next(items)
    return items


def _invert_over_goto(items: List[Item]) -> bool:
    for i in range(len(items) - 2):
        jump, goto, after = items[i], items[i + 1], items[i + 2]
        if jump.method == "jump" and goto.method == "goto" and not goto.labels \
                and jump.args[3] in after.labels and jump.args[0] in _NEGATED:
            code, dst, operand, _target = jump.args
            jump.args = (_NEGATED[code], dst, operand, goto.args[0])
            del items[i + 1]
            return True
    return False


def _drop_goto_next(items: List[Item]) -> bool:
    for i in range(len(items) - 1):
        goto, after = items[i], items[i + 1]
        if goto.method == "goto" and goto.args[0] in after.labels:
            after.labels[:0] = goto.labels
            del items[i]
            return True
    return False
