"""Which line of the user's code is running: the first stack frame outside
pybpf's library.

An instruction learns the line of a user's program that emitted it, and a
map declaration the module it is assigned in, without every call passing
them along. "Outside the library" is decided by the frame's module name, not
by its file's path: every module of ``pybpf`` except the example programs
and tools shipped as ``pybpf.programs`` and ``pybpf.examples`` (which are
user code, wherever they are installed).
"""

import sys
from types import FrameType
from typing import Optional

from .errors import SourceLocation

_LIBRARY = "pybpf."
_USER_PACKAGES = ("pybpf.programs.", "pybpf.examples.")


def _is_library(module: str) -> bool:
    return module.startswith(_LIBRARY) and not module.startswith(_USER_PACKAGES)


def user_frame(depth: int = 1) -> Optional[FrameType]:
    """The innermost frame of user code, looking from ``depth`` frames up
    (1: the function calling this one), or ``None`` when the whole stack is
    pybpf's."""
    frame: Optional[FrameType] = sys._getframe(depth)
    while frame is not None and _is_library(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
    return frame


def caller_location() -> Optional[SourceLocation]:
    """File and line of the innermost user code that is running (or ``None``)."""
    frame = user_frame(2)
    if frame is None:
        return None
    return SourceLocation(frame.f_code.co_filename, frame.f_lineno)
