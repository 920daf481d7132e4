"""``sniffwrites record`` and ``report``: what report prints is what monitor
printed, and bad or cut recordings are told, not misread."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kernel"))

from kernel_objects import assert_no_new_objects, snapshot  # noqa: E402
from sniffwrites.config import Config  # noqa: E402
from sniffwrites.monitor import Monitor  # noqa: E402
from sniffwrites.recfile import FRAME, MAGIC, RING, RecordingReader  # noqa: E402
from sniffwrites.recording import Recorder  # noqa: E402
from sniffwrites.sink import Sink  # noqa: E402
from test_sniffwrites_cli import BURST, Running, cli, python  # noqa: E402

# Every kind of record and the path-based operations (Text records), a dup,
# a file open across the whole run, and a thread.
WORKLOAD = ("import os, sys, threading\n"
            "d = sys.argv[1]\n"
            "keep = os.open(os.path.join(d, 'kept'), os.O_RDWR | os.O_CREAT, 0o600)\n"
            "for i in range(30):\n"
            "    p = os.path.join(d, 'f%d' % i)\n"
            "    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "    os.write(fd, b'x' * i); os.lseek(fd, 0, 0); os.read(fd, 100)\n"
            "    os.write(keep, b'k')\n"
            "    os.close(os.dup(fd)); os.close(fd)\n"
            "    os.truncate(p, 1); os.rename(p, p + '.r'); os.unlink(p + '.r')\n"
            "t = threading.Thread(target=lambda: os.write(keep, b'thread')); t.start(); t.join()\n"
            "os.close(keep)\n")


class Tee(Recorder):
    """A recorder that also formats each batch as the monitor would (to
    ``live``): the same records through both, so everything must match."""

    def __init__(self, cfg, path, live_path, log):
        super().__init__(cfg, path, log=log)
        self.live = Sink(live_path)
        self.handler = self._both

    def _both(self, lease):
        self._record(lease)
        self.pipeline.handle(lease)

    def _write(self, lines):
        self.live.write_lines(lines)

    def begin(self):
        Monitor.begin(self)

    def write_lost(self, lost):
        Monitor.write_lost(self, lost)
        Recorder.write_lost(self, lost)

    def _snapshot(self):
        Monitor._snapshot(self)
        Recorder._snapshot(self)

    def write_summary(self):
        Monitor.write_summary(self)
        Recorder.write_summary(self)

    def close(self):
        super().close()
        self.live.close()


def report(*args, check=True):
    result = subprocess.run(cli("report", *args), cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("fmt", ["json", "text", "table"])
@pytest.mark.parametrize("mode", [{}, {"aggregate": True}, {"failed": True, "verbose": True}],
                         ids=["per-event", "aggregate", "failed-verbose"])
def test_report_prints_exactly_what_monitor_printed_from_the_same_records(
        tmp_path, fmt, mode, monkeypatch):
    watched = tmp_path / "watched"
    watched.mkdir()
    # Snapshot and loss-notice times are taken twice (live and for the
    # file): one clock reading for both.
    monkeypatch.setattr(time, "monotonic_ns", lambda: 10 ** 12)
    logged = []
    cfg = Config.make(dirs=[str(watched)], fmt=fmt, **mode)
    before = snapshot()
    tee = Tee(cfg, str(tmp_path / "rec"), str(tmp_path / "live"), logged.append)
    try:
        tee.start()
        python(WORKLOAD, watched)
        tee.request_stop("test")
        tee.run()
    finally:
        tee.close()
    assert_no_new_objects(before)
    live = (tmp_path / "live").read_text()
    assert live.count("\n") > 100 if not mode.get("aggregate") else live
    result = report(tmp_path / "rec")
    assert result.stdout == live
    summary = [m for m in logged if not m.startswith(("attached", "recorded"))]
    assert ["sniffwrites: " + m for m in summary] == \
        [l for l in result.stderr.splitlines()], result.stderr
    recorded = [m for m in logged if m.startswith("recorded")]
    assert len(recorded) == 1 and "dropped 0" in recorded[0]


def test_record_and_report_match_a_monitor_attached_at_the_same_time(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    before = snapshot()
    monitor = Running(tmp_path, "monitor", "-d", watched, "-f", "json")
    recording = str(tmp_path / "rec")
    recorder = Running(tmp_path, "record", "-d", watched, "-f", "json", "--output", recording)
    python(WORKLOAD, watched)
    assert recorder.stop() == 0 and monitor.stop() == 0
    assert "records emitted" in recorder.stderr and "dropped 0" in recorder.stderr
    live = monitor.records()
    reported = [json.loads(line) for line in report(recording).stdout.splitlines()]
    assert len(reported) == len(live) > 100
    for a, b in zip(live, reported):
        # Each collection's programs read the clock themselves, one after
        # the other: the times differ by a program's run, nothing else does.
        ts_a, ts_b = a.pop("ts_ns", 0), b.pop("ts_ns", 0)
        assert abs(ts_a - ts_b) < 10 ** 6
        assert a == b
    assert_no_new_objects(before)


def test_a_full_ring_while_recording_is_accounted_exactly(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    recording = str(tmp_path / "rec")
    recorder = Running(tmp_path, "record", "-d", watched, "-f", "json", "--output", recording,
                       "--ring-size", 4096, "--interval", "0.2")
    python(BURST, watched)
    assert recorder.stop() == 0
    line = [l for l in recorder.stderr.splitlines() if "records emitted" in l][-1]
    assert "UNACCOUNTED" not in line and "dropped 0 " not in line
    lines = [json.loads(l) for l in report(recording).stdout.splitlines()]
    summary = lines[-1]
    assert summary["unaccounted"] == 0 and summary["dropped"] == summary["lost_records"] > 0
    assert sum(r["ring"] for r in lines if r["type"] == "lost") == summary["lost_records"]
    assert summary["received"] + summary["dropped"] == summary["emitted"]


def recorded(tmp_path, *extra):
    watched = tmp_path / "watched"
    watched.mkdir(exist_ok=True)
    path = str(tmp_path / ("rec-%d" % time.monotonic_ns()))
    recorder = Running(tmp_path, "record", "-d", watched, "-f", "json", "--output", path, *extra)
    return recorder, watched, path


def ring_frames(path):
    with open(path, "rb") as f:
        reader = RecordingReader(path, f.read())
        return [frame for frame in reader.frames() if frame.tag == RING]


def test_a_corrupt_recording_is_one_line_naming_the_offset(tmp_path):
    recorder, watched, path = recorded(tmp_path)
    python(WORKLOAD, watched)
    assert recorder.stop() == 0
    frame = ring_frames(path)[0]
    data = bytearray(open(path, "rb").read())
    data[frame.offset + FRAME.size + 20] ^= 0xFF
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(data))
    result = report(bad, check=False)
    assert result.returncode == 1
    assert result.stderr == "sniffwrites: %s: corrupt RING frame of %d bytes (CRC mismatch) " \
        "at offset %d\n" % (bad, len(frame.payload), frame.offset)
    # Not a recording at all, and a header cut short.
    (tmp_path / "text").write_text("hello\n")
    result = report(tmp_path / "text", check=False)
    assert result.returncode == 1 and "not a sniffwrites recording" in result.stderr
    (tmp_path / "short").write_bytes(bytes(data[:len(MAGIC) + 20]))
    result = report(tmp_path / "short", check=False)
    assert result.returncode == 1 and \
        result.stderr.strip().endswith("no whole header frame at offset %d" % len(MAGIC))


def test_a_recording_cut_short_reads_up_to_its_last_whole_record(tmp_path):
    recorder, watched, path = recorded(tmp_path)
    python(WORKLOAD, watched)
    assert recorder.stop() == 0
    full = [json.loads(l) for l in report(path).stdout.splitlines()]
    frame = max(ring_frames(path), key=lambda f: len(f.payload))
    cut = frame.offset + FRAME.size + len(frame.payload) // 2 + 3   # mid-record
    data = open(path, "rb").read()[:cut]
    (tmp_path / "cut").write_bytes(data)
    result = report(tmp_path / "cut", check=False)
    assert result.returncode == 1
    assert result.stderr == "sniffwrites: %s: cut short (no end of recording); reported the " \
        "whole records before the partial frame at offset %d\n" % (tmp_path / "cut",
                                                                    frame.offset)
    got = [json.loads(l) for l in result.stdout.splitlines()]
    events = [r for r in full if r["type"] == "event"]
    # A prefix of the whole report, with records of the partial frame in it.
    assert got == events[:len(got)]
    before_frame = report_of_prefix(tmp_path, data[:frame.offset])
    assert len(before_frame) < len(got) < len(events)


def report_of_prefix(tmp_path, data):
    (tmp_path / "prefix").write_bytes(data)
    return report(tmp_path / "prefix", check=False).stdout.splitlines()


def test_sighup_starts_a_new_self_describing_file(tmp_path):
    recorder, watched, path = recorded(tmp_path)
    code = ("import os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)\n"
            "os.write(fd, b'before')\n"
            "open(sys.argv[2], 'w').close()\n"
            "while os.path.exists(sys.argv[2]):\n    time.sleep(0.01)\n"
            "os.write(fd, b'after'); os.close(fd)\n")
    flag = tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", code, str(watched / "long"), str(flag)])
    while not flag.exists():
        time.sleep(0.01)
    time.sleep(0.3)
    os.rename(path, path + ".1")
    recorder.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    flag.unlink()
    assert proc.wait(timeout=30) == 0
    assert recorder.stop() == 0
    first = [json.loads(l) for l in report(path + ".1", check=False).stdout.splitlines()]
    second = [json.loads(l) for l in report(path).stdout.splitlines()]
    assert [(r["op"], r["bytes"]) for r in first if r["type"] == "event"] == \
        [("open", None), ("write", 6)]
    # The file opened before the SIGHUP still has its path in the new file.
    assert [(r["op"], r["path"]) for r in second if r["type"] == "event"] == \
        [("write", str(watched / "long")), ("close", str(watched / "long"))]
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_max_size_and_duration_end_the_recording_cleanly(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    path = str(tmp_path / "rec")
    proc = subprocess.Popen(cli("record", "-d", watched, "-o", path, "--max-size", 4096,
                                "--ready-file", tmp_path / "ready"), cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    while not (tmp_path / "ready").exists() or not (tmp_path / "ready").stat().st_size:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    python(BURST, watched)
    assert proc.wait(timeout=60) == 0
    with open(path, "rb") as f:
        reader = RecordingReader(path, f.read())
        end = list(reader.frames())[-1]
    assert end.payload["exit_reason"] == "max-size"
    assert report(path).returncode == 0
    result = subprocess.run(cli("record", "-d", watched, "-o", path, "--duration", "0.5"),
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "recorded" in result.stderr
    with open(path, "rb") as f:
        assert list(RecordingReader(path, f.read()).frames())[-1].payload["exit_reason"] == \
            "duration"


def test_report_filters_and_formats(tmp_path):
    recorder, watched, path = recorded(tmp_path)
    python(WORKLOAD, watched)
    assert recorder.stop() == 0
    writes = [json.loads(l) for l in report(path, "-o", "write").stdout.splitlines()]
    assert {r["op"] for r in writes if r["type"] == "event"} == {"write"}
    assert writes[-1]["type"] == "summary" and writes[-1]["events"] == len(writes) - 1
    kept = [json.loads(l) for l in report(path, "-d", watched / "kept").stdout.splitlines()]
    assert {r["path"] for r in kept if r["type"] == "event"} == {str(watched / "kept")}
    table = report(path, "-f", "table").stdout.splitlines()
    assert table[0].split()[:2] == ["TIME", "OP"]
