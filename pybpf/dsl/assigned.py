"""Definite assignment: reading a ``p.var`` that some path left unset is a build error.

A variable declared without a value (``x = p.var(u32)``) holds nothing
until ``x.set()``. Reading it where a path has not set it (set in one
branch of an ``if`` only) is what the verifier rejects at load time as
``R3 !read_ok`` or ``invalid read from stack``, far from the cause; here it
names the line that reads and the line that declared.

Structured control flow keeps the analysis small: the statements
(:mod:`.builder`) hand over the state at each branch and join. An if chain
joins the states its branches fall through with (and, without ``else_``,
the state it started with); a loop counts as setting whatever its body
sets, since it may run at least once: when unsure, no error, and the
verifier still has the last word.
"""

from typing import Dict, FrozenSet, List, Set

from ..caller import caller_location
from ..errors import SourceLocation
from .values import build_error


class Assignments:
    """The variables of one function that may be unset at the current point."""

    __slots__ = ("unset", "_declared", "_log")

    def __init__(self) -> None:
        self.unset: Set[int] = set()               # storage ids
        self._declared: Dict[int, SourceLocation] = {}
        self._log: List[int] = []                  # every assignment, in order (for loops)

    def declare(self, storage_id: int) -> None:
        """A variable declared without a value."""
        self.unset.add(storage_id)
        self._declared[storage_id] = caller_location()  # type: ignore[assignment]

    def wrote(self, storage_id: int) -> None:
        """The variable got a value here: reads after this point are safe."""
        self.unset.discard(storage_id)
        self._log.append(storage_id)

    def read(self, storage_id: int) -> None:
        """A read of the variable: a build error when some path left it unset."""
        if storage_id in self.unset:
            declared = self._declared[storage_id]
            raise build_error("this reads the p.var declared at line %d, which is not set on "
                              "every path to here (set in one branch only?): give it a value "
                              "where it is declared, or .set() it on every path"
                              % declared.line)

    def state(self) -> FrozenSet[int]:
        """The unset variables now, for a branch to start from or a join to merge."""
        return frozenset(self.unset)

    def restore(self, state: FrozenSet[int]) -> None:
        """Go back to ``state`` (the start of the next branch of an if chain)."""
        self.unset = set(state)

    def mark(self) -> int:
        """Where a loop starts: :meth:`after_loop` counts what its body sets."""
        return len(self._log)

    def after_loop(self, before: FrozenSet[int], mark: int) -> None:
        """After a loop: unset as before it, minus what its body set since ``mark``."""
        self.unset = set(before) - set(self._log[mark:])
