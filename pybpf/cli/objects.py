"""``pybpf prog|map|link list|show``: every program, map and link in the
kernel, ours or not, with the facts ``bpftool`` shows.

The three groups are made from one table: a :class:`View` per kind says
how one object's record (from :mod:`pybpf.kernel.objects`) reads as text
and as JSON, and which extra commands the group has (``prog dump``,
``map dump``). JSON keys follow bpftool's where bpftool has one
(``bytes_xlated``, ``map_ids``, ``bytes_key``...), and every key is always
present, so a script never has to test for one: ``run_time_ns`` and
``run_cnt`` are 0 while run-time statistics are off.
"""

import time
from typing import Any, Callable, Dict, List, NamedTuple, Sequence

import click

from ..kernel import objects
from .common import json_option, print_json
from .map_dump import dump_map
from .prog_dump import dump_group


class View(NamedTuple):
    """How one kind of object is listed and shown."""

    group: str                                  # the command group: "prog"
    kind: objects.ObjectKind
    as_json: Callable[[Any], Dict[str, Any]]
    as_text: Callable[[Any], str]
    commands: Sequence[click.Command] = ()      # extra commands of the group


# --- programs --------------------------------------------------------------------------

def prog_json(info: objects.ProgInfo) -> Dict[str, Any]:
    """One program's facts for ``--json``, in bpftool's field names."""
    return {
        "id": info.id, "type": info.type_name, "name": info.name, "tag": info.tag,
        "gpl_compatible": info.gpl_compatible, "loaded_at": int(info.loaded_at),
        "uid": info.created_by_uid, "bytes_xlated": info.xlated_len,
        "jited": info.jited_len > 0, "bytes_jited": info.jited_len,
        "map_ids": list(info.map_ids), "btf_id": info.btf_id,
        "verified_insns": info.verified_insns, "run_time_ns": info.run_time_ns,
        "run_cnt": info.run_cnt, "recursion_misses": info.recursion_misses,
    }


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def prog_text(info: objects.ProgInfo) -> str:
    """bpftool's layout (``show_prog_plain``), without memlock and pids."""
    head = "%d: %s  name %s  tag %s" % (info.id, info.type_name, info.name, info.tag)
    if info.gpl_compatible:
        head += "  gpl"
    if info.run_time_ns or info.run_cnt:
        head += "  run_time_ns %d run_cnt %d" % (info.run_time_ns, info.run_cnt)
    if info.recursion_misses:
        head += "  recursion_misses %d" % info.recursion_misses
    lines = [head, "\tloaded_at %s  uid %d" % (_timestamp(info.loaded_at), info.created_by_uid)]
    sizes = "\txlated %dB  " % info.xlated_len
    sizes += "jited %dB" % info.jited_len if info.jited_len else "not jited"
    if info.map_ids:
        sizes += "  map_ids %s" % ",".join(str(map_id) for map_id in info.map_ids)
    lines.append(sizes)
    extra = []
    if info.btf_id:
        extra.append("btf_id %d" % info.btf_id)
    if info.verified_insns:
        extra.append("verified_insns %d" % info.verified_insns)
    if extra:
        lines.append("\t" + "  ".join(extra))
    return "\n".join(lines)


# --- maps ----------------------------------------------------------------------------------

def map_json(info: objects.MapInfo) -> Dict[str, Any]:
    """One map's facts for ``--json``, in bpftool's field names."""
    return {
        "id": info.id, "type": info.type_name, "name": info.name, "flags": info.flags,
        "bytes_key": info.key_size, "bytes_value": info.value_size,
        "max_entries": info.max_entries, "btf_id": info.btf_id,
        "btf_key_type_id": info.btf_key_type_id, "btf_value_type_id": info.btf_value_type_id,
    }


def map_text(info: objects.MapInfo) -> str:
    """bpftool's layout (``show_map_plain``), without memlock and pids."""
    lines = ["%d: %s  name %s  flags %#x" % (info.id, info.type_name, info.name, info.flags),
             "\tkey %dB  value %dB  max_entries %d" % (info.key_size, info.value_size,
                                                      info.max_entries)]
    if info.btf_id:
        lines.append("\tbtf_id %d" % info.btf_id)
    return "\n".join(lines)


# --- links ---------------------------------------------------------------------------------

def link_json(info: objects.LinkInfo) -> Dict[str, Any]:
    """id, type and prog_id, then the type's own fields under the kernel's names."""
    document = {"id": info.id, "type": info.type_name, "prog_id": info.prog_id}
    document.update(info.detail)
    return document


def link_text(info: objects.LinkInfo) -> str:
    """``id: type  prog N``, then the type's fields; an enum shows its name only."""
    head = "%d: %s  prog %d" % (info.id, info.type_name, info.prog_id)
    detail = info.detail
    fields = ["%s %s" % (key, detail.get(key + "_name", value)) for key, value in detail.items()
              if not (key.endswith("_name") and key[:-len("_name")] in detail)]
    return head + ("\n\t" + "  ".join(fields) if fields else "")


# --- the commands ---------------------------------------------------------------------------

VIEWS = (
    View("prog", objects.PROGS, prog_json, prog_text, (dump_group,)),
    View("map", objects.MAPS, map_json, map_text, (dump_map,)),
    View("link", objects.LINKS, link_json, link_text),
)


def _list_command(view: View) -> click.Command:
    noun = view.kind.noun

    @click.command("list", help="""List every %(noun)s in the kernel, loaded by any process.

    \b
    Example:
      pybpf %(group)s list
      pybpf %(group)s list --json
    """ % dict(noun=noun, group=view.group))
    @json_option
    def list_command(as_json: bool) -> None:
        infos: List[Any] = list(view.kind.infos())
        if as_json:
            print_json([view.as_json(info) for info in infos])
        else:
            for info in infos:
                click.echo(view.as_text(info))
    return list_command


def _show_command(view: View) -> click.Command:
    noun = view.kind.noun

    @click.command("show", help="""Show the %(noun)s with kernel id ID.

    \b
    Example:
      pybpf %(group)s show 42
      pybpf %(group)s show 42 --json
    """ % dict(noun=noun, group=view.group))
    @click.argument("object_id", metavar="ID", type=click.IntRange(min=1))
    @json_option
    def show_command(object_id: int, as_json: bool) -> None:
        info = view.kind.info_by_id(object_id)
        if as_json:
            print_json(view.as_json(info))
        else:
            click.echo(view.as_text(info))
    return show_command


def object_group(view: View) -> click.Group:
    """The ``list``/``show`` command group of one kind of kernel object."""
    group = click.Group(view.group, help="""Inspect the kernel's %(noun)ss (list, show%(extra)s).

    \b
    Example:
      pybpf %(group)s list
    """ % dict(noun=view.kind.noun, group=view.group,
               extra="".join(", " + command.name for command in view.commands)))
    for command in (_list_command(view), _show_command(view)) + tuple(view.commands):
        group.add_command(command)
    return group


GROUPS = tuple(object_group(view) for view in VIEWS)
