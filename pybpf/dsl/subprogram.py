"""``@subprogram``: the declaration of a bpf-to-bpf function.

What a caller needs to know of a subprogram (its name, label, parameter
and result types) lives here, below the statements that call it
(:mod:`.builder`, :mod:`.helpers`); compiling its body is the build
driver's job (:mod:`.build`), which appends it after each program that
calls it.
"""

import inspect
from typing import Any, Callable, Dict, List, Tuple

from .types import as_type, s64


class Subprogram:
    """A bpf-to-bpf function: ``@subprogram def clamp(p, v: u64) -> u64``.

    Parameters are typed by annotation (integers, or ``Ptr(T)`` for program
    memory the caller passes); the result type defaults to ``s64``. Calling
    it inside a program (``clamp(p, x)``) emits the call; the body is
    compiled once per program that calls it, after that program's code.
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self.name = fn.__name__
        self.label = fn.__name__
        hints = _annotations(fn)
        names = list(inspect.signature(fn).parameters)[1:]
        missing = [n for n in names if n not in hints]
        if missing:
            raise TypeError("@subprogram %s: annotate the type of %s" % (self.name,
                                                                         ", ".join(missing)))
        if len(names) > 5:
            raise TypeError("@subprogram %s takes %d arguments; BPF passes at most 5"
                            % (self.name, len(names)))
        self.params: List[Tuple[str, Any]] = [(n, as_type(hints[n])) for n in names]
        self.ret_type = as_type(hints["return"]) if "return" in hints else s64

    def __call__(self, p: Any, *args: Any) -> Any:
        return p.call(self, *args)

    def __repr__(self) -> str:
        return "<subprogram %s>" % self.name


def subprogram(fn: Callable) -> Subprogram:
    """The decorator: ``fn`` becomes a :class:`Subprogram`."""
    return Subprogram(fn)


def _annotations(fn: Callable) -> Dict[str, Any]:
    hints = dict(getattr(fn, "__annotations__", {}))
    for key, value in hints.items():
        if isinstance(value, str):  # ``from __future__ import annotations``
            hints[key] = eval(value, fn.__globals__)
    return hints
