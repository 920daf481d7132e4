"""``p.printk`` writes to the trace buffer and ``pybpf trace`` prints it:
bpf_trace_printk for up to three arguments, bpf_trace_vprintk for more."""

import subprocess
import sys

from cli_run import REPO

from pybpf.dsl import collection_spec, raw_tracepoint
from pybpf.loader import Collection


@raw_tracepoint("sys_enter")
def say(p, ctx):
    p.printk("pybpf-trace-test few %d %u", ctx.args[1], 7)
    p.printk("pybpf-trace-test many %d %d %d %d %d", 1, 2, 3, ctx.args[1], 5)


def test_printk_lines_reach_pybpf_trace():
    marker = "pybpf-trace-test"
    reader = subprocess.Popen([sys.executable, "-m", "pybpf.cli", "trace", "--count", "2",
                               marker], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        with Collection(collection_spec([say])) as loaded:
            loaded.programs.say.test_run(ctx=bytes(8) + (41).to_bytes(8, "little"))
        out, err = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert lines[0].endswith("bpf_trace_printk: %s few 41 7" % marker), lines
    assert lines[1].endswith("bpf_trace_printk: %s many 1 2 3 41 5" % marker), lines
