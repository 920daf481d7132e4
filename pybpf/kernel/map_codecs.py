"""Python keys and values <-> the bytes a map stores.

One :class:`Codec` per key or value type: plain ints (unsigned
little-endian), raw bytes, ``construct`` constructs (the DSL's structs), fds
(prog and perf event arrays), LPM trie keys, and the per-CPU wrapper that
lays one value per possible CPU in 8-byte slots. ``maps`` picks and applies
them; nothing here talks to the kernel.
"""

import ipaddress
import struct
from functools import lru_cache
from typing import Any, Callable, List, Tuple

from construct import Container


@lru_cache(maxsize=None)
def possible_cpus() -> Tuple[int, ...]:
    """The possible CPUs (``/sys/devices/system/cpu/possible``, e.g. ``0-3,6``):
    per-CPU maps hold one value per entry, in this order."""
    with open("/sys/devices/system/cpu/possible") as f:
        return parse_cpu_list(f.read())


def parse_cpu_list(text: str) -> Tuple[int, ...]:
    """``"0-3,6"`` -> ``(0, 1, 2, 3, 6)`` (the kernel's cpulist format)."""
    cpus: List[int] = []
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.extend(range(int(first), int(last or first) + 1))
    return tuple(cpus)


# --- codecs ---------------------------------------------------------------------------

class Codec:
    """Encodes one key or value to exactly ``size`` bytes and back.

    ``encode`` may raise TypeError/ValueError/OverflowError/construct errors;
    the map turns them into a ValueError naming itself.
    """
    __slots__ = ("size", "encode", "decode", "what")

    def __init__(self, size: int, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any],
                 what: str):
        self.size = size
        self.encode = encode
        self.decode = decode
        self.what = what


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, int):  # bytes(5) would silently make five zero bytes
        raise TypeError("expected bytes, got int %d" % value)
    return bytes(value)


def _fd_number(value: Any) -> int:
    return value if isinstance(value, int) else value.fileno()


def int_codec(size: int) -> Codec:
    """Little-endian unsigned integers of ``size`` bytes."""
    return Codec(size, lambda v: v.to_bytes(size, "little"),
                 lambda b: int.from_bytes(b, "little"), "unsigned %d-byte int" % size)


def bytes_codec(size: int) -> Codec:
    """Raw bytes, exactly ``size`` of them."""
    return Codec(size, _as_bytes, bytes, "%d raw bytes" % size)


def fd_codec() -> Codec:
    """Values written as an fd (int or ``fileno()``); read back as the
    kernel answers (an id for prog arrays and map-in-map)."""
    return Codec(4, lambda v: _fd_number(v).to_bytes(4, "little"),
                 lambda b: int.from_bytes(b, "little"), "fd")


def construct_codec(con: Any) -> Codec:
    """Values built and parsed by a ``construct`` of fixed size."""
    return Codec(con.sizeof(), con.build, con.parse, "construct %s" % type(con).__name__)


_PREFIXLEN = struct.Struct("=I")   # struct bpf_lpm_trie_key: __u32 prefixlen (host order)


def lpm_codec(size: int) -> Codec:
    """LPM trie keys as ``(prefixlen, data)`` with ``data`` in network order
    (``size - 4`` bytes); ``ipaddress`` networks are accepted too."""
    def encode(key: Any) -> bytes:
        if isinstance(key, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            key = (key.prefixlen, key.network_address.packed)
        prefixlen, data = key
        return _PREFIXLEN.pack(prefixlen) + _as_bytes(data)

    def decode(raw: bytes) -> Tuple[int, bytes]:
        return _PREFIXLEN.unpack_from(raw)[0], raw[4:]

    return Codec(size, encode, decode, "(prefixlen, %d data bytes)" % (size - 4))


def percpu_codec(inner: Codec, ncpus: int) -> Codec:
    """One ``inner`` value per possible CPU, each in an 8-byte aligned slot
    (``bpf_map_value_size()`` in the kernel). Writes take a list/tuple of
    ``ncpus`` values, or one value for every CPU."""
    stride = (inner.size + 7) & ~7
    pad = bytes(stride - inner.size)

    def encode(values: Any) -> bytes:
        if not isinstance(values, (list, tuple)):
            values = (values,) * ncpus
        if len(values) != ncpus:
            raise ValueError("need one value per possible CPU: %d, got %d" % (ncpus, len(values)))
        return b"".join(_checked(inner, v) + pad for v in values)

    def decode(raw: bytes) -> List[Any]:
        return [inner.decode(raw[i:i + inner.size]) for i in range(0, stride * ncpus, stride)]

    return Codec(stride * ncpus, encode, decode, "%d x %s" % (ncpus, inner.what))


def _checked(codec: Codec, value: Any) -> bytes:
    raw = codec.encode(value)
    if len(raw) != codec.size:
        raise ValueError("%r encodes to %d bytes, not %d" % (value, len(raw), codec.size))
    return raw


def refusing_codec(reason: str) -> Codec:
    """A codec that raises ``TypeError(reason)`` on use (maps without values)."""
    def refuse(_value: Any = None) -> bytes:
        raise TypeError(reason)
    return Codec(0, refuse, refuse, "nothing")


KeyType = Any   # None (default for the type), int, bytes, a construct, or a Codec


def codec_for(given: KeyType, size: int, default: Callable[[int], Codec], role: str,
           map_name: str) -> Codec:
    """The codec for a key or value given as a codec, a construct, a type or None."""
    if isinstance(given, Codec):
        codec = given
    elif given is None:
        codec = default(size)
    elif given is int:
        codec = int_codec(size)
    elif given is bytes:
        codec = bytes_codec(size)
    elif all(hasattr(given, attr) for attr in ("build", "parse", "sizeof")):
        codec = construct_codec(given)
    else:
        raise TypeError("map %r: %s type must be int, bytes, a construct or a Codec, not %r"
                        % (map_name, role, given))
    if codec.size != size:
        raise ValueError("map %r: %s is %s (%d bytes) but the map's %s_size is %d"
                         % (map_name, role, codec.what, codec.size, role, size))
    return codec


def plain_codec(size: int) -> Codec:
    """Integers for sizes 1, 2, 4 and 8, raw bytes otherwise."""
    return int_codec(size) if size in (1, 2, 4, 8) else bytes_codec(size)


def add_values(a: Any, b: Any, name: str) -> Any:
    """``a + b`` for the values a map decodes: ints, and structs (dicts) and
    arrays (lists) of them, added member by member (per-CPU sums)."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(a, dict):
        return Container((k, add_values(v, b[k], name)) for k, v in a.items() if k != "_io")
    if isinstance(a, list):
        return [add_values(x, y, name) for x, y in zip(a, b)]
    raise TypeError("map %r: cannot add up values of type %s over CPUs"
                    % (name, type(a).__name__))
