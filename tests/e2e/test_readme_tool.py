"""The README's "Write your own tool" runs as written: extracted, run as a
script, it prints an exec the test makes, and at Ctrl-C the top readers."""

import re
import signal
import subprocess
import sys

from cli_run import REPO


def readme_tool() -> str:
    with open("%s/README.md" % REPO) as readme:
        text = readme.read()
    section = text[text.index("## Write your own tool"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_tool_runs_as_written(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(readme_tool())
    tool = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert tool.stdout.readline() == "Tracing execs... Hit Ctrl-C to end.\n"
        subprocess.run(["/bin/true"], check=True)
        for line in tool.stdout:
            if line.split()[-1] == "/bin/true":
                break
        tool.send_signal(signal.SIGINT)
        rest, err = tool.communicate(timeout=60)
    finally:
        if tool.poll() is None:
            tool.kill()
            tool.wait()
    assert tool.returncode == 0, err
    summary = [line for line in rest.splitlines() if re.fullmatch(r"pid \d+: \d+ reads", line)]
    assert summary, rest
