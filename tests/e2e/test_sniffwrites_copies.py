"""sniffwrites against strace for copies, splices and fallocate.

``workloads/sniffwrites_copies.py`` (cp, shutil, sendfile, copy_file_range,
splice, fallocate) runs under ``strace -f -y`` while the monitor watches,
as in :mod:`test_sniffwrites_strace`: every operation strace saw on a
watched file is reported once with the same pid, fd, op, path and byte
count (a copy as a write on its destination and a read on its source,
each watched end once); nothing outside is reported. Then what only the
monitor says: the other end (``peer_path``), offsets, fallocate's mode.
"""

import collections
import os
import shutil

import pytest
from test_sniffwrites_strace import HERE, observed, run_traced

WORKLOAD = os.path.join(HERE, "workloads", "sniffwrites_copies.py")

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None or shutil.which("fallocate") is None,
    reason="strace and util-linux fallocate are needed")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_traced(tmp_path_factory.mktemp("sniffwrites-copies"), WORKLOAD)


def events_of(run, name):
    path = os.path.join(run["watched"], name)
    return [r for r in run["records"] if r["type"] == "event" and r["path"] == path]


def test_every_operation_strace_saw_appears_once(run):
    expected = collections.Counter(run["expected"])
    seen = collections.Counter(observed(run))
    assert not expected - seen, "strace saw, the monitor did not: %s" % sorted(expected - seen)
    assert not seen - expected, "the monitor alone saw: %s" % sorted(seen - expected)
    ops = {op for _pid, op, _fd, _path, _moved in expected}
    assert {"read", "write", "fallocate"} <= ops


def test_nothing_outside_the_directory_is_reported(run):
    watched = run["watched"]
    for r in run["records"]:
        if r["type"] == "event":
            assert r["path"].startswith(watched + "/"), r


def copies(run, name, op):
    """The copies that moved bytes (the last call of a copy loop moves none)."""
    return [r for r in events_of(run, name) if r["op"] == op and r["bytes"]
            and r["syscall"] in ("copy_file_range", "sendfile", "splice")]


def test_copies_name_the_other_end_and_the_offsets(run):
    watched, outside = run["watched"], run["outside"]
    source = os.path.join(outside, "source.bin")
    inside = os.path.join(watched, "inside.bin")
    (cp,) = copies(run, "cp_default.bin", "write")
    assert cp["syscall"] == "copy_file_range" and cp["peer_path"] == source
    assert cp["bytes"] == 16384 and "offset" not in cp and cp["comm"] == "cp"
    (shutil_write,) = copies(run, "shutil.bin", "write")
    shutil_reads = copies(run, "inside.bin", "read")
    assert shutil_write["syscall"] == "sendfile" and shutil_write["peer_path"] == inside
    assert [(r["bytes"], r["offset"], r["peer_path"]) for r in shutil_reads
            if r["syscall"] == "sendfile"] == [(1000, 0, shutil_write["path"])]
    (sent,) = copies(run, "sent.bin", "write")
    assert (sent["syscall"], sent["bytes"], sent["peer_path"]) == ("sendfile", 500, source)
    assert "offset" not in sent          # sendfile's offset is the source's
    (ranged,) = copies(run, "ranged.bin", "write")
    assert (ranged["bytes"], ranged["offset"], ranged["peer_path"]) == (300, 20, inside)
    ranged_read = [r for r in shutil_reads if r["syscall"] == "copy_file_range"
                   and r["pid"] == ranged["pid"]]
    (cp_out,) = [r for r in shutil_reads if r["comm"] == "cp"]
    assert cp_out["peer_path"] == os.path.join(outside, "cp_out.bin") and "offset" not in cp_out
    assert [(r["bytes"], r["offset"], r["peer_path"]) for r in ranged_read] == \
        [(300, 10, ranged["path"])]
    (spliced,) = copies(run, "spliced.bin", "write")
    assert (spliced["syscall"], spliced["bytes"]) == ("splice", 14)
    assert "peer_path" not in spliced    # a pipe is not a file
    (to_pipe,) = [r for r in shutil_reads if r["syscall"] == "splice"]
    assert (to_pipe["bytes"], to_pipe["offset"]) == (64, 5) and "peer_path" not in to_pipe


def test_fallocate_names_its_range_and_mode(run):
    falloc = [r for r in events_of(run, "falloc.bin") if r["op"] == "fallocate"]
    assert [(r["offset"], r["length"], r["mode"], r["bytes"], r["syscall"]) for r in falloc] == [
        (0, 8192, [], 8192, "fallocate"),
        (0, 4096, ["keep_size", "punch_hole"], 4096, "fallocate")]
    assert falloc[1]["comm"] == "fallocate"


def test_the_exit_summary_counts_no_loss(run):
    (summary,) = [r for r in run["records"] if r["type"] == "summary"]
    assert summary["lost_records"] == 0 and summary["op_fallocate"] == 2
