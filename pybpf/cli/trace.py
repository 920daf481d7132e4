"""``pybpf trace``: the kernel's trace buffer as it fills, where ``p.printk``
(``bpf_trace_printk``) writes.

It reads tracefs's ``trace_pipe``, mounting tracefs first where it is not
(as the rest of pybpf does, :func:`pybpf.kernel.tracefs.tracefs_root`).
Reading the pipe consumes what it reads: lines written before the command
started are shown too, once. Ctrl-C ends it quietly.
"""

import os
import sys
from typing import Optional

import click

from ..kernel.tracefs import tracefs_root


@click.command("trace", help="""Print the lines BPF programs write with
p.printk() (bpf_trace_printk), as they come: the trace_pipe file of tracefs,
mounted when needed. With PATTERN only the lines that contain it; with
--count N stop after N lines. Ctrl-C stops.

\b
Example:
  pybpf trace
  pybpf trace --count 1 "opened"
""")
@click.argument("pattern", required=False)
@click.option("--count", "-n", type=click.IntRange(min=1), default=None,
              help="Stop after this many lines.")
def trace(pattern: Optional[str], count: Optional[int]) -> None:
    """The ``pybpf trace`` command: follow trace_pipe for bpf_trace_printk lines."""
    wanted = pattern.encode() if pattern else None
    shown = 0
    out = sys.stdout.buffer
    try:
        with open(os.path.join(tracefs_root(), "trace_pipe"), "rb") as pipe:
            for line in pipe:
                if wanted is not None and wanted not in line:
                    continue
                out.write(line)
                out.flush()
                shown += 1
                if count is not None and shown >= count:
                    return
    except KeyboardInterrupt:
        return
