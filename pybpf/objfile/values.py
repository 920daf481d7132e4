"""Global variables as Python values, typed by the object's BTF.

A ``const volatile int min_duration_ms`` in ``.rodata`` is set from Python
as ``spec.set_config({"min_duration_ms": 100})`` and a ``.bss`` counter read
back as an int: :func:`encode_variable` and :func:`decode_variable` turn
values into the variable's bytes and back, from its BTF type (integers of
their size and sign, ``bool``, enums, ``char`` arrays from ``str`` or
``bytes``, anything else as raw bytes of the exact size).
"""

from typing import Any

from ..kernel.btf import BTF
from ..kernel.btf_format import BTF_KIND_ARRAY, BTF_KIND_ENUM, BTF_KIND_ENUM64, BTF_KIND_INT
from .maps import Variable


def encode_variable(btf: BTF, variable: Variable, value: Any) -> bytes:
    """The ``variable.size`` bytes that hold ``value``; ``ValueError`` naming
    the variable and its C type when it does not fit."""
    t = btf.resolve_type(variable.type_id)
    c_type = btf.c_type(variable.type_id)
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif t.kind in (BTF_KIND_INT, BTF_KIND_ENUM, BTF_KIND_ENUM64) and not isinstance(value, str):
        info = btf.int_info(t.id)
        try:
            raw = int(value).to_bytes(info.size, "little", signed=info.signed)
        except OverflowError:
            raise ValueError("%s: %r does not fit a %s" % (variable.name, value, c_type)) from None
    elif t.kind == BTF_KIND_ARRAY and isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) >= variable.size:
            raise ValueError("%s: %r does not fit a %s with its NUL" % (variable.name, value,
                                                                         c_type))
    else:
        raise ValueError("%s is a %s; give an int, str or bytes that fits" % (variable.name,
                                                                             c_type))
    if len(raw) > variable.size:
        raise ValueError("%s: %d bytes do not fit a %s (%d bytes)"
                         % (variable.name, len(raw), c_type, variable.size))
    return raw.ljust(variable.size, b"\0")


def decode_variable(btf: BTF, variable: Variable, section_value: bytes) -> Any:
    """``variable`` read from the value of its section's map: an int for
    integers and enums, ``bytes`` (up to the first NUL for char arrays)
    otherwise."""
    raw = bytes(section_value[variable.offset:variable.offset + variable.size])
    t = btf.resolve_type(variable.type_id)
    if t.kind in (BTF_KIND_INT, BTF_KIND_ENUM, BTF_KIND_ENUM64):
        info = btf.int_info(t.id)
        value = int.from_bytes(raw[:info.size], "little", signed=info.signed)
        return bool(value) if info.is_bool else value
    if t.kind == BTF_KIND_ARRAY and btf.array_info(t.id).elem.kind == BTF_KIND_INT \
            and btf.array_info(t.id).elem_size == 1:
        return bytes(raw).split(b"\0", 1)[0]
    return bytes(raw)
