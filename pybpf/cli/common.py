"""What every ``pybpf`` command shares: the one-line error, the ``--json``
option and how JSON is printed.

JSON output is one document per command on one line (like ``bpftool -j``;
pipe it to ``jq`` to read it), keys in a fixed, documented order (never
sorted or reordered between releases), so scripts can rely on it.
"""

import json
from typing import Any, Callable

import click


class CLIError(click.ClickException):
    """A failure the user can act on, printed as one line ``pybpf: error: ...``
    with exit status 1 (click's usage errors keep status 2)."""

    def show(self, file: Any = None) -> None:
        """Print the error as one line on stderr."""
        click.echo("pybpf: error: %s" % self.format_message(), err=True)


def json_option(command: Callable) -> Callable:
    """``--json``: print the result as JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (stable keys, documented in the README).")(command)


def print_json(document: Any) -> None:
    """Print ``document`` as one line of JSON."""
    click.echo(json.dumps(document))


def hex_bytes(data: bytes) -> str:
    """``07 00 00 00``: bytes as bpftool and the kernel print them."""
    return " ".join("%02x" % byte for byte in data)
