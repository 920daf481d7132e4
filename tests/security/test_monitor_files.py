"""The monitor's --output and --ready-file, and the SIGHUP reopen, refuse
what another user planted: one line on stderr, a non-zero exit, the target
untouched, nothing left in the kernel."""

import os
import signal
import subprocess
import sys
import time

from planting import NOBODY, as_user, snapshot

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "kernel"))
from kernel_objects import assert_no_new_objects  # noqa: E402
from kernel_objects import snapshot as kernel_snapshot  # noqa: E402

EXIT_USAGE = 2


def monitor(*args, command="monitor"):
    return subprocess.Popen([sys.executable, "-m", "sniffwrites.cli", command] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_line_refusal(proc, code, *words):
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    errors = [line for line in err.splitlines() if not line.startswith("sniffwrites: attached")]
    assert len(errors) == 1 and errors[0].startswith("sniffwrites: "), err
    assert "refused as unsafe" in errors[0] and all(word in errors[0] for word in words), err
    return out


def test_output_through_a_planted_middle_symlink_is_refused(shared, tmp_path):
    keys = tmp_path / "ssh"
    keys.mkdir()
    as_user(lambda: os.symlink(str(keys), os.path.join(shared, "evil")))
    proc = monitor("-d", str(tmp_path), "--output", os.path.join(shared, "evil", "authorized_keys"))
    one_line_refusal(proc, EXIT_USAGE, "symlink evil", str(NOBODY))
    assert os.listdir(keys) == []


def test_output_through_a_planted_last_symlink_is_refused(shared, tmp_path, victim):
    before = snapshot(victim)
    path = os.path.join(shared, "events.json")
    as_user(lambda: os.symlink(victim, path))
    one_line_refusal(monitor("-d", str(tmp_path), "--output", path), EXIT_USAGE,
                     "symlink events.json")
    assert snapshot(victim) == before


def test_a_recording_through_a_planted_last_symlink_is_refused(shared, tmp_path, victim):
    before = snapshot(victim)
    path = os.path.join(shared, "events.rec")
    as_user(lambda: os.symlink(victim, path))
    one_line_refusal(monitor("-d", str(tmp_path), "-o", path, command="record"), EXIT_USAGE,
                     "symlink events.rec")
    assert snapshot(victim) == before


def test_a_planted_ready_file_is_refused_after_attach_and_nothing_stays(shared, tmp_path,
                                                                       victim):
    before, kernel_before = snapshot(victim), kernel_snapshot()
    path = os.path.join(shared, "ready")
    as_user(lambda: os.symlink(victim, path))
    one_line_refusal(monitor("-d", str(tmp_path), "--output", str(tmp_path / "out"),
                             "--ready-file", path), 1, path)
    assert snapshot(victim) == before
    assert_no_new_objects(kernel_before)


def test_the_sighup_reopen_follows_the_same_rules(shared, tmp_path, victim):
    before = snapshot(victim)
    output, ready = os.path.join(shared, "events.json"), str(tmp_path / "ready")
    proc = monitor("-d", str(tmp_path), "--output", output, "--ready-file", ready)
    deadline = time.monotonic() + 60
    while not os.path.exists(ready) or not os.path.getsize(ready):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "monitor did not attach"
        time.sleep(0.02)
    os.rename(output, output + ".1")                 # logrotate moves it away ...
    as_user(lambda: os.symlink(victim, output))      # ... and someone plants a link there
    proc.send_signal(signal.SIGHUP)
    one_line_refusal(proc, 1, output, "symlink events.json")
    assert snapshot(victim) == before
