#!/usr/bin/env python3
"""Generate pybpf/helper_defs.py: the kernel's BPF helpers with their ids and
typed prototypes.

Two sources, neither needed at run time:

* the running kernel's BTF (``enum bpf_func_id``) says which helpers exist
  and their ids (``BPF_FUNC_map_lookup_elem`` = 1, ...);
* the UAPI header ``<linux/bpf.h>`` documents each helper in one big comment
  as a C prototype followed by ``Description`` and ``Return`` blocks; from
  it come the C types (classified by :mod:`pybpf.helper_proto`) and a
  one-line summary.

Every helper the kernel has goes into the table, with its prototype when the
header documents it (``args`` None otherwise); helpers only the header knows
are left out. Both lists are printed, so a stale header is noticed.

    python3 tools/gen_helper_defs.py                 # rewrite pybpf/helper_defs.py
    python3 tools/gen_helper_defs.py --check         # exit 1 if it is out of date
"""

import argparse
import json
import os
import re
import sys
import textwrap
from typing import Dict, List, NamedTuple, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pybpf.helper_proto import RET_UNKNOWN, arg_kinds, ret_kind  # noqa: E402
from pybpf.kernel.btf import VMLINUX_PATH, BTF  # noqa: E402

DEFAULT_HEADER = "/usr/include/linux/bpf.h"
DEFAULT_OUTPUT = os.path.join(REPO, "pybpf", "helper_defs.py")
FUNC_ID_PREFIX = "BPF_FUNC_"
# Enumerators of bpf_func_id that are not helpers.
NOT_HELPERS = ("BPF_FUNC_unspec", "__BPF_FUNC_MAX_ID")

_DOC_START = "Start of BPF helper function descriptions:"
# " * void *bpf_map_lookup_elem(struct bpf_map *map, const void *key)"
_PROTO_LINE = re.compile(r"^ \* (\S.*\bbpf_\w+\(.*\))\s*$")
_PROTO = re.compile(r"^(?P<ret>.+?)\s*(?P<stars>\**)\s*(?P<name>bpf_\w+)\((?P<args>.*)\)$")
# " * \tDescription", " * \tReturn" (a few helpers indent with spaces)
_SECTION_LINE = re.compile(r"^ \*\s+(Description|Return)\s*$")
_ARG = re.compile(r"^(?P<type>.+?)\s*(?P<stars>\**)\s*(?P<name>\w+)$")


class DocumentedHelper(NamedTuple):
    ret: str
    args: Tuple[Tuple[str, str], ...]    # (ctype, name)
    variadic: bool
    description: str
    returns: str


def _ctype(base: str, stars: str) -> str:
    """``"const void", "*"`` -> ``"const void *"``: the spelling HelperArg uses."""
    base = " ".join(base.split())
    return "%s %s" % (base, stars) if stars else base


def parse_prototype(line: str) -> Tuple[str, str, Tuple[Tuple[str, str], ...], bool]:
    """``(name, return ctype, ((ctype, name), ...), variadic)`` of one prototype."""
    match = _PROTO.match(line)
    if match is None:
        raise ValueError("cannot parse helper prototype %r" % line)
    args: List[Tuple[str, str]] = []
    variadic = False
    params = [param.strip() for param in match.group("args").split(",")]
    for param in params:
        if param == "...":
            variadic = True
        elif param != "void":
            arg = _ARG.match(param)
            if arg is None:
                raise ValueError("cannot parse argument %r of %r" % (param, line))
            args.append((_ctype(arg.group("type"), arg.group("stars")), arg.group("name")))
    return (match.group("name"), _ctype(match.group("ret"), match.group("stars")), tuple(args),
            variadic)


def parse_header(text: str) -> Tuple[Dict[str, DocumentedHelper], List[str]]:
    """The helpers documented in ``<linux/bpf.h>``, by name; and the names
    documented more than once (one per program type: the first is kept)."""
    start = text.index(_DOC_START)
    comment = text[start:text.index("*/", start)]
    helpers: Dict[str, DocumentedHelper] = {}
    duplicates: List[str] = []
    current: Optional[Tuple[str, str, tuple, bool]] = None
    blocks: Dict[str, List[str]] = {}
    section = None

    def finish() -> None:
        if current is None:
            return
        name, ret, args, variadic = current
        if name in helpers:
            duplicates.append(name)
            return
        helpers[name] = DocumentedHelper(ret, args, variadic,
                                         "\n".join(blocks.get("Description", [])).strip(),
                                         "\n".join(blocks.get("Return", [])).strip())

    for line in comment.splitlines():
        proto = _PROTO_LINE.match(line)
        if proto:
            finish()
            current, blocks, section = parse_prototype(proto.group(1)), {}, None
            continue
        heading = _SECTION_LINE.match(line)
        if heading:
            section = heading.group(1)
            blocks[section] = []
        elif section is not None:
            blocks[section].append(line.lstrip(" *\t"))
    finish()
    return helpers, duplicates


def summary(description: str) -> str:
    """First sentence of a description, without its RST markup (``*arg*``,
    ``**bpf_helper**\\ ()``, escapes)."""
    paragraph = " ".join(description.split("\n\n")[0].split())
    text = paragraph.replace("\\ ", "").replace("*", "").replace("\\", "")
    # a full stop that ends the text or precedes a space, but not "e.g." or "i.e."
    match = re.match(r"(.+?(?<!e\.g)(?<!i\.e)\.)(?=\s|$)", text)
    return match.group(1) if match else text


def helper_ids(btf_path: str) -> Dict[str, int]:
    """``{"bpf_map_lookup_elem": 1, ...}`` from the kernel's enum bpf_func_id."""
    values = BTF.load(btf_path).enum_values("bpf_func_id")
    return {"bpf_" + name[len(FUNC_ID_PREFIX):]: value for name, value in values.items()
            if name not in NOT_HELPERS}


def _q(text: str) -> str:
    return json.dumps(text)


def render_helper(name: str, helper_id: int, doc: Optional[DocumentedHelper]) -> str:
    lines = ["    HelperProto(", "        name=%s, id=%d," % (_q(name), helper_id)]
    if doc is None:
        lines.append("        ret=None, ret_kind=%s, args=None, summary=\"\")," % _q(RET_UNKNOWN))
        return "\n".join(lines) + "\n"
    lines.append("        ret=%s, ret_kind=%s,"
                 % (_q(doc.ret), _q(ret_kind(doc.ret, doc.returns))))
    if doc.args:
        lines.append("        args=(")
        lines += ["            HelperArg(%s, %s, %s)," % (_q(arg_name), _q(ctype), _q(kind))
                  for (ctype, arg_name), kind in zip(doc.args, arg_kinds(doc.args))]
        lines.append("        ),")
    else:
        lines.append("        args=(),")
    if doc.variadic:
        lines.append("        variadic=True,")
    pieces = textwrap.wrap(summary(doc.description), 76, drop_whitespace=False) or [""]
    lines.append("        summary=%s)," % "\n                ".join(_q(piece) for piece in pieces))
    return "\n".join(lines) + "\n"


def render(ids: Dict[str, int], documented: Dict[str, DocumentedHelper]) -> str:
    undocumented = sorted(name for name in ids if name not in documented)
    out = [
        "# Generated by tools/gen_helper_defs.py from the helper documentation in\n",
        "# <linux/bpf.h> and the kernel's BTF (enum bpf_func_id). DO NOT EDIT.\n",
        '"""The BPF helpers of the kernel this table was generated on: ids and typed\n',
        "prototypes (:mod:`pybpf.helper_proto` explains the kinds).\n\n",
        textwrap.fill("%d helpers, ids %d..%d; %d without a prototype in the header used%s."
                      % (len(ids), min(ids.values()), max(ids.values()), len(undocumented),
                         (": " + ", ".join(undocumented)) if undocumented else ""), 79) + "\n",
        '"""\n\n',
        "from typing import Dict, Tuple\n\n",
        "from .helper_proto import HelperArg, HelperProto\n\n",
        "_HELPERS: Tuple[HelperProto, ...] = (\n",
    ]
    for name, helper_id in sorted(ids.items(), key=lambda item: item[1]):
        out.append(render_helper(name, helper_id, documented.get(name)))
    out += [
        ")\n\n",
        "HELPERS: Dict[str, HelperProto] = {helper.name: helper for helper in _HELPERS}\n",
        "HELPERS_BY_ID: Dict[int, HelperProto] = {helper.id: helper for helper in _HELPERS}\n",
    ]
    return "".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--header", default=DEFAULT_HEADER, help="UAPI <linux/bpf.h>")
    parser.add_argument("--btf", default=VMLINUX_PATH, help="kernel BTF with enum bpf_func_id")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if --output is not what would be written")
    opts = parser.parse_args(argv)

    with open(opts.header) as f:
        documented, duplicates = parse_header(f.read())
    ids = helper_ids(opts.btf)
    text = render(ids, documented)

    missing = sorted(name for name in ids if name not in documented)
    unknown = sorted(name for name in documented if name not in ids)
    print("%d helpers in %s, %d documented in %s" % (len(ids), opts.btf, len(documented),
                                                     opts.header), file=sys.stderr)
    if missing:
        print("included without a prototype (the header does not document them): %s"
              % ", ".join(missing), file=sys.stderr)
    if unknown:
        print("skipped (documented, but this kernel lacks them): %s" % ", ".join(unknown),
              file=sys.stderr)
    if duplicates:
        print("documented more than once, first prototype kept: %s"
              % ", ".join(sorted(set(duplicates))), file=sys.stderr)

    if opts.check:
        try:
            with open(opts.output) as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print("%s is out of date: run tools/gen_helper_defs.py" % opts.output, file=sys.stderr)
            return 1
        return 0
    tmp = opts.output + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, opts.output)
    print("wrote %s" % opts.output, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
