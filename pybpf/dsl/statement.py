"""``with`` statements of the DSL made from generator functions.

A statement such as ``with p.if_(cond):`` or ``with events.reserve(Event)
as ev:`` is a generator function: the code before its ``yield`` runs at
the ``with`` line, the code after it at the end of the block. This module
is below the builder and the map declarations, which both define some.
"""

import functools
from typing import Any, Callable, Iterator


class _Statement:
    """A ``with`` statement run by a generator, like ``contextlib``'s, but
    defined here so that the frames between the user's ``with`` line and
    the DSL stay inside pybpf (instructions are attributed to the first
    frame outside it). On an exception the generator is not resumed: the
    build is failing anyway."""

    __slots__ = ("_gen",)

    def __init__(self, gen: Iterator[Any]):
        self._gen = gen

    def __enter__(self) -> Any:
        return next(self._gen)

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        if kind is None:
            for _ in self._gen:
                raise RuntimeError("a DSL statement yielded twice")
        return False


def statement(fn: Callable[..., Iterator[Any]]) -> Callable[..., _Statement]:
    """Decorator: a generator function becomes a ``with`` statement."""
    @functools.wraps(fn)
    def make(*args: Any, **kwargs: Any) -> _Statement:
        return _Statement(fn(*args, **kwargs))
    return make
