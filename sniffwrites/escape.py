"""Make kernel-supplied names safe to print.

File names and process names are bytes chosen by whoever created them: they
can hold terminal escape sequences, newlines and invalid UTF-8. Every name we
print goes through :func:`display`, which keeps valid UTF-8, writes control
characters as ``\\n``/``\\t``/``\\xNN`` and invalid bytes as ``\\xNN``, so one
event is always one line and nothing reaches the terminal raw. A literal
backslash is doubled so the escaping can be undone without ambiguity.

>>> display(b"report\\n\\x1b[31m.txt")
'report\\\\n\\\\x1b[31m.txt'
>>> display(b"caf\\xc3\\xa9 \\xff")
'café \\\\xff'
"""

from functools import lru_cache

_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
# C0 controls, DEL and the C1 controls (which some terminals obey as escapes)
_CONTROL = {i: _NAMED.get(chr(i), "\\x%02x" % i) for i in list(range(0x20)) + list(range(0x7F, 0xA0))}
_CONTROL[ord("\\")] = "\\\\"


@lru_cache(maxsize=65536)
def display(name: bytes) -> str:
    """Printable form of ``name``. Cached: the same paths recur in every event."""
    try:
        return name.decode("utf-8").translate(_CONTROL)
    except UnicodeDecodeError:
        return "".join(_escape_piece(piece) for piece in _utf8_pieces(name))

def _utf8_pieces(name: bytes):
    """Split ``name`` into decodable text and single undecodable bytes."""
    rest = name
    while rest:
        try:
            yield rest.decode("utf-8")
            return
        except UnicodeDecodeError as exc:
            if exc.start:
                yield rest[:exc.start].decode("utf-8")
            yield rest[exc.start:exc.start + 1]
            rest = rest[exc.start + 1:]


def _escape_piece(piece) -> str:
    if isinstance(piece, bytes):
        return "\\x%02x" % piece[0]
    return piece.translate(_CONTROL)
