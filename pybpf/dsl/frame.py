"""The stack frame of one function: 512 bytes below r10, laid out for you.

Stack objects (``p.stack(Event)``) live as long as the function; argument
temporaries (a key passed by address) are freed after their call; spill
slots are freed when the value they hold dies. Freed space is reused, and
exceeding the kernel's limit is a build error naming the line whose
allocation did not fit, with the frame's contents.
"""

from typing import List, Tuple

from ..asm import caller_location
from ..errors import ProgramBuildError

MAX_STACK = 512  # MAX_BPF_STACK in include/linux/filter.h


class Frame:
    """The stack frame of one function: where each object lives, below r10."""
    def __init__(self, limit: int = MAX_STACK):
        self.limit = limit
        self.depth = 0                       # deepest byte in use so far
        self._free: List[Tuple[int, int]] = []  # (offset, size) holes, offsets negative
        self._contents: List[Tuple[int, int, str]] = []

    def alloc(self, size: int, what: str) -> int:
        """Reserve ``size`` bytes, rounded up to whole 8-byte slots (the
        verifier tracks the stack by slot); return the offset of the lowest
        byte from r10 (negative)."""
        size = _slots(size)
        for index, (offset, hole) in enumerate(self._free):
            if hole >= size:
                del self._free[index]
                if hole > size:
                    self._free.append((offset + size, hole - size))
                self._contents.append((offset, size, what))
                return offset
        depth = self.depth + size
        if depth > self.limit:
            raise ProgramBuildError(
                "stack frame overflow: %s needs %d bytes, which would make the frame %d bytes, "
                "over the kernel's %d-byte limit (in use: %s); put large data in a per-CPU "
                "array map (PerCPUArray) or a ring buffer record instead"
                % (what, size, depth, self.limit, self._describe()), caller_location())
        self.depth = depth
        self._contents.append((-depth, size, what))
        return -depth

    def free(self, offset: int, size: int) -> None:
        """Release the slot at ``offset`` for reuse."""
        self._contents = [c for c in self._contents if c[0] != offset]
        self._free.append((offset, _slots(size)))

    def _describe(self) -> str:
        return ", ".join("%s (%d bytes)" % (what, size)
                         for _off, size, what in sorted(self._contents)) or "nothing"


def _slots(size: int) -> int:
    return (size + 7) // 8 * 8
