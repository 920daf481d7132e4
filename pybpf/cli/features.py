"""``pybpf features``: what the running kernel supports, from
:func:`pybpf.kernel.features.probe` (map, program and link types, BTF,
run-time statistics, bounded loops, ring buffers, helpers we rely on)."""

import click

from ..kernel import features as kernel_features
from .common import json_option, print_json


@click.command("features", help="""Probe what this kernel supports and print it.

Each answer comes from asking the kernel (creating a map, loading a tiny
program); "no" comes with the kernel's reason.

\b
Example:
  pybpf features
  pybpf features --json
""")
@json_option
def features(as_json: bool) -> None:
    found = kernel_features.probe()
    if as_json:
        print_json(found.as_dict())
    else:
        click.echo(found.as_table())
