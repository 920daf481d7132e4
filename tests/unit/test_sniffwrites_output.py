"""sniffwrites' userspace output: escaping, the three formats, the JSON
schema, and the output file (mode 0600, reopen for log rotation)."""

import json
import os
import stat
import subprocess
import sys

import pytest

from sniffwrites.escape import display
from sniffwrites.events import EVENT_FIELDS, Aggregate, Event, Lost
from sniffwrites.output import Formatter
from sniffwrites.sink import Sink

READ = Event(ts_ns=5, op="read", pid=10, tid=11, ppid=1, uid=1000, comm=b"cat", fd=3,
             path=b"/w/a.txt", bytes=7, ret=7)
HOSTILE = Event(ts_ns=6, op="open", pid=10, tid=11, ppid=1, uid=0, comm=b"x\x1b[2J",
                fd=-1, path=b"/w/\xff\nname", bytes=None, ret=-13, flags=0o101,
                given_path=b"../w/\xff\nname")


@pytest.mark.parametrize("raw, shown", [
    (b"plain/path", "plain/path"),
    (b"caf\xc3\xa9", "café"),
    (b"new\nline", "new\\nline"),
    (b"esc\x1b[31m", "esc\\x1b[31m"),
    (b"bad\xff", "bad\\xff"),
    (b"back\\slash", "back\\\\slash"),
    (b"c1\xc2\x9bcontrol", "c1\\x9bcontrol"),
    (b"cut\xe2\x82", "cut\\xe2\\x82"),
])
def test_names_are_escaped_so_one_event_is_one_line(raw, shown):
    assert display(raw) == shown


def test_json_lines_follow_the_documented_schema():
    fmt = Formatter("json", boot_to_wall_ns=1000)
    record = json.loads(fmt.event(READ))
    assert record["type"] == "event"
    assert list(record)[1:] == list(EVENT_FIELDS)
    assert record["ts_ns"] == 1005 and record["bytes"] == 7 and record["errno"] is None
    hostile = json.loads(fmt.event(HOSTILE))
    assert hostile["errno"] == "EACCES" and hostile["path"] == "/w/\\xff\\nname"
    assert hostile["given_path"] == "../w/\\xff\\nname" and hostile["comm"] == "x\\x1b[2J"
    lost = json.loads(fmt.lost(Lost(ts_ns=0, ring=3, map_full=2)))
    assert lost == {"type": "lost", "ts_ns": 1000, "ring": 3, "map_full": 2}
    agg = json.loads(fmt.aggregate(Aggregate(0, 10, 11, 1, 0, b"dd", 4, b"/w/big", 5, 50,
                                             2, 20, True)))
    assert agg["type"] == "aggregate" and agg["read_bytes"] == 50 and agg["closed"] is True


@pytest.mark.parametrize("fmt", ["text", "table", "json"])
def test_every_format_prints_one_line_per_event(fmt):
    formatter = Formatter(fmt, verbose=True)
    for ev in (READ, HOSTILE):
        line = formatter.event(ev)
        assert "\n" not in line and "\x1b" not in line
        assert ("/w/a.txt" in line) or ("\\xff" in line)
    assert "EACCES" in formatter.event(HOSTILE)


def test_output_file_is_owner_only_and_reopens_for_rotation(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("")
    os.chmod(path, 0o644)
    sink = Sink(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    sink.write_lines(["first"])
    os.rename(path, tmp_path / "events.jsonl.1")
    sink.reopen()
    sink.write_lines(["second"])
    sink.close()
    assert (tmp_path / "events.jsonl.1").read_text() == "first\n"
    assert path.read_text() == "second\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_closed_pipe_is_a_quiet_exit():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from sniffwrites.sink import Sink, OutputClosed\n"
            "s = Sink()\n"
            "try:\n"
            "    for i in range(100000):\n"
            "        s.write_lines(['line %%d' %% i] * 10)\n"
            "    s.flush()\n"
            "except OutputClosed:\n"
            "    s.close(); sys.exit(0)\n" % os.getcwd())
    proc = subprocess.run("%s -c %s | head -1" % (sys.executable, _quote(code)), shell=True,
                          capture_output=True, text=True)
    assert proc.stdout == "line 0\n"
    assert proc.stderr == ""


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"
