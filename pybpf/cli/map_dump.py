"""``pybpf map dump ID``: every entry of a map, as ``bpftool map dump`` shows it.

Keys and values are hex bytes, laid out like bpftool (``key: 01 00 00 00
value: ...`` on one line when short, one value per CPU for per-CPU maps);
the JSON has bpftool's shape too (``"key": ["0x01", ...]``). How an entry
reads is chosen per map by :func:`entry_formats`, the one place where maps
that carry BTF will get their keys and values decoded by type.
"""

from typing import Any, Callable, Dict, List, NamedTuple, Tuple

import click

from ..kernel import objects
from ..kernel.map_spec import KINDS, UNKNOWN_KIND
from ..kernel.maps import Map
from .common import CLIError, hex_bytes, json_option, print_json


class EntryFormat(NamedTuple):
    """How a key or a value reads, as text and as JSON."""

    text: Callable[[bytes], str]
    json: Callable[[bytes], Any]


def bpftool_hex(data: bytes) -> str:
    """Hex bytes as bpftool's ``fprint_hex`` lays them out: a double space
    after every 8 bytes, a new line after every 16."""
    rows = []
    for start in range(0, len(data), 16):
        row = data[start:start + 16]
        rows.append("  ".join(hex_bytes(row[half:half + 8]) for half in range(0, len(row), 8)))
    return "\n".join(rows)


HEX = EntryFormat(bpftool_hex, lambda raw: ["0x%02x" % byte for byte in raw])


def entry_formats(info: objects.MapInfo) -> Tuple[EntryFormat, EntryFormat]:
    """(key format, value format) for one map. Every map reads as hex bytes
    today; a map with BTF (``info.btf_value_type_id``) is where formats
    decoded from its types belong (bpftool's ``"formatted"``)."""
    return HEX, HEX


def _text_entry(info: objects.MapInfo, key: str, value: Any, percpu: bool) -> str:
    """bpftool's ``print_entry_plain``: one line when key and value are short."""
    if percpu:
        wrap = "\n" if info.value_size > 16 else " "
        return "key:\n%s\n%s" % (key, "\n".join("value (CPU %02d):%s%s" % (cpu, wrap, text)
                                                  for cpu, text in enumerate(value)))
    break_names = info.key_size > 16 or info.value_size > 16
    single_line = info.key_size + info.value_size <= 24 and not break_names
    label = "\n" if break_names else " "
    return "key:%s%s%svalue:%s%s" % (label, key, "  " if single_line else "\n", label, value)


@click.command("dump", help="""Print every entry of the map with kernel id ID.

\b
Example:
  pybpf map dump 7
  pybpf map dump 7 --json
""")
@click.argument("map_id", metavar="ID", type=click.IntRange(min=1))
@json_option
def dump_map(map_id: int, as_json: bool) -> None:
    """The ``pybpf map dump`` command: every entry of one map, as bpftool prints it."""
    with Map.from_id(map_id, key=bytes, value=bytes) as bpf_map:
        info = bpf_map.info()
        key_format, value_format = entry_formats(info)
        percpu = KINDS.get(info.type, UNKNOWN_KIND).percpu   # one value per CPU
        try:
            entries = bpf_map.items()
            if as_json:
                print_json([_json_entry(key_format, value_format, key, value, percpu)
                            for key, value in entries])
                return
            count = 0
            for key, value in entries:
                shown = ([value_format.text(v) for v in value] if percpu
                         else value_format.text(value))
                click.echo(_text_entry(info, key_format.text(key), shown, percpu))
                count += 1
        except TypeError as exc:   # a ring buffer, queue or stack: no keyed entries
            raise CLIError("cannot dump map %d: %s" % (map_id, exc)) from None
    click.echo("Found %d element%s" % (count, "" if count == 1 else "s"))


def _json_entry(key_format: EntryFormat, value_format: EntryFormat, key: bytes, value: Any,
                percpu: bool) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"key": key_format.json(key)}
    if percpu:
        values: List[Dict[str, Any]] = [{"cpu": cpu, "value": value_format.json(v)}
                                        for cpu, v in enumerate(value)]
        entry["values"] = values
    else:
        entry["value"] = value_format.json(value)
    return entry
