"""Where operands are: stack objects, map values, immediate fields.

Shared by :mod:`pybpf.dsl.codegen` and :mod:`pybpf.dsl.calls`: the bases
memory references are relative to (a register-held pointer is a
:class:`~pybpf.dsl.values.Local`), and whether a constant fits an
instruction's 32-bit immediate.
"""

from typing import Any, Optional, Union

from .values import Local

MASK64 = (1 << 64) - 1


def imm32(value: int, is64: bool) -> Optional[int]:
    """``value`` as the immediate field of a 64-bit (sign-extended) or 32-bit
    operation, or None when it does not fit."""
    if is64:
        v = value & MASK64
        v = v - (1 << 64) if v >> 63 else v
        return v if -(1 << 31) <= v < (1 << 31) else None
    v = value & 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


class FrameBase:
    """An object on this function's stack, at ``r10 + offset``."""

    __slots__ = ("offset",)

    def __init__(self, offset: int):
        self.offset = offset


class MapValueBase:
    """The value of an array map's entry 0, addressed directly
    (``ld_imm64 BPF_PSEUDO_MAP_VALUE``): never NULL, no lookup call."""

    __slots__ = ("map",)

    def __init__(self, map_decl: Any):
        self.map = map_decl


Base = Union[Local, FrameBase, MapValueBase]
