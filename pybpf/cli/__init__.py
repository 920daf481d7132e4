"""The ``pybpf`` command: inspect the kernel's BPF objects, probe features,
assemble, disassemble and verify programs.

One module per command group (``objects``: prog/map/link, ``objload``:
loading ELF objects, ``features``, ``code``: asm/disasm/verify, ``trace``:
the trace buffer). This module is the root: it turns every error our layers
raise on purpose (:class:`~pybpf.errors.PyBPFError`, and the
``OSError`` of a file or the kernel) into one line ``pybpf: error: ...`` and
exit status 1; ``--debug`` shows the traceback instead.
"""

import sys
from typing import Any, List, Optional

import click

from .. import __version__
from ..errors import PyBPFError
from .code import COMMANDS
from .common import CLIError
from .features import features
from .objects import GROUPS
from .objload import COMMANDS as OBJECT_COMMANDS
from .trace import trace


def _describe(exc: BaseException) -> str:
    """One line for an error: ours say everything already; a plain OSError
    gets its file name in front."""
    if isinstance(exc, PyBPFError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return "%s: %s" % (exc.filename, exc.strerror) if exc.filename else exc.strerror
    return str(exc)


class _Root(click.Group):
    """The root group: turns our errors into :class:`CLIError` unless ``--debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (PyBPFError, OSError) as exc:
            if ctx.params.get("debug") or isinstance(exc, BrokenPipeError):
                raise   # click ends quietly on a closed pipe (pybpf ... | head)
            raise CLIError(_describe(exc)) from None


@click.group(cls=_Root, context_settings=dict(help_option_names=["-h", "--help"]),
             help="""pybpf: eBPF in pure Python.

Inspect every BPF program, map and link in the kernel, probe what the
kernel supports, and assemble, disassemble and verify programs.

\b
Example:
  pybpf prog list
  pybpf features --json
""")
@click.version_option(__version__, prog_name="pybpf")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """The root group; its options apply to every command."""


for _group in GROUPS:
    cli.add_command(_group)
for _command in OBJECT_COMMANDS:
    cli.commands["prog"].add_command(_command)
cli.add_command(features)
cli.add_command(trace)
for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point (``pybpf = "pybpf.cli:main"``)."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="pybpf")
