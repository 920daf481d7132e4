"""Network byte order integers: ``be16`` and ``be32`` (the kernel's
``__be16`` and ``__be32``).

Packet headers store their fields big-endian. A field declared ``be16`` is
loaded as it lies in memory, with no swap; what keeps it safe is its type.
A Python int meeting it in ``==``, ``!=``, ``&``, ``|`` or ``^`` is
converted to network order at build time, so ``eth.h_proto == ETH_P_IP``
compares the register with the constant 0x0008 on a little-endian machine
and costs no instruction more than a host-order comparison. Those five
operators give the same answer in either byte order; everything else
(arithmetic, shifts, ``<``, mixing with host-order integers, ``u16(x)``) is
a build error that points at ``p.ntohs()``/``p.ntohl()``, which swap.

In userspace the same declaration parses and builds big-endian
(``construct.Int16ub``): a Struct with ``be16`` fields is a packet header
on both sides, and a ``Config`` setting declared ``be16`` is given as a
plain int and stored in network order.

A constant of one of these types holds the register's bits, already
swapped: ``be16(53)`` is ``Const(0x3500, be16)`` on x86-64.

>>> swap(0x0800, 2) == (0x0008 if sys.byteorder == "little" else 0x0800)
True
>>> be16.construct().build(53)
b'\\x005'
"""

import sys
from typing import FrozenSet

import construct

from .types import IntType, u16, u32

#: The operators whose result does not depend on the byte order of their
#: operands, once constants are converted.
ORDER_FREE_OPS: FrozenSet[str] = frozenset(("==", "!=", "&", "|", "^"))

_BIG_ENDIAN_FIELDS = {2: construct.Int16ub, 4: construct.Int32ub}


class NetworkIntType(IntType):
    """An unsigned integer stored big-endian; ``host`` is the host-order
    type of the same width, and ``to_host`` the function that converts."""

    __slots__ = ("host", "to_host")

    def __init__(self, name: str, host: IntType, to_host: str):
        super().__init__(name, host.size, False)
        self.host = host
        self.to_host = to_host

    @property
    def promoted(self) -> "NetworkIntType":
        """Never widened: the bits are not a number until swapped."""
        return self

    def construct(self) -> construct.Construct:
        """Big-endian integer of this size."""
        return _BIG_ENDIAN_FIELDS[self.size]


def swap(value: int, size: int) -> int:
    """``bpf_htons``/``bpf_ntohs`` (``size`` 2) and the 32-bit pair, at
    build time: the register bits of the unsigned ``value`` stored in the
    other byte order. It is its own inverse."""
    return int.from_bytes(value.to_bytes(size, "big"), sys.byteorder)


be16 = NetworkIntType("be16", u16, "ntohs")
be32 = NetworkIntType("be32", u32, "ntohl")


def order_mismatch(source: IntType, target: IntType) -> str:
    """Why a value of type ``source`` may not silently become a ``target``,
    or '' when it may (the byte orders agree)."""
    if source is target:
        return ""
    if isinstance(source, NetworkIntType):
        return ("%s holds network byte order: convert it with p.%s(x), not to %s"
                % (source.name, source.to_host, target.name))
    if isinstance(target, NetworkIntType):
        return ("%s is in host byte order: make a %s of it with p.%s(x)"
                % (source.name, target.name, "htons" if target.size == 2 else "htonl"))
    return ""
