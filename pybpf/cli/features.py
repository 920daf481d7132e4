"""``pybpf features``: what the running kernel supports, from
:func:`pybpf.kernel.features.probe` (map, program and link types, BTF,
run-time statistics, bounded loops, ring buffers, helpers we rely on)."""

import click

from ..kernel import features as kernel_features
from .common import json_option, print_json


@click.command("features", help="""Probe what this kernel supports and print it.

Each answer comes from asking the kernel (creating a map, loading a tiny
program) and is one of three: "yes"; "no", the kernel does not know it
(EINVAL and the like: a newer kernel has it); "refused", the kernel knows it
but will not let us use it (EPERM/EACCES: capabilities, an LSM, lockdown or
a sysctl stand in the way). "no" and "refused" come with the kernel's
reason; --json gives each as {"available", "state", "detail"}.

\b
Example:
  pybpf features
  pybpf features --json
""")
@json_option
def features(as_json: bool) -> None:
    """The ``pybpf features`` command: probe the running kernel and print the answers."""
    found = kernel_features.probe()
    if as_json:
        print_json(found.as_dict())
    else:
        click.echo(found.as_table())
