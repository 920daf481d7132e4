"""sniffwrites' userspace without a kernel: options, naming files, and the
record stream -> events path, fed with records built from the same Struct
declarations the kernel side writes."""

import json
import os
import struct

import pytest

from sniffwrites import views
from sniffwrites.bpf import records
from sniffwrites.config import Config, ConfigError, kernel_dev, parse_operations
from sniffwrites.output import Formatter
from sniffwrites.pipeline import Pipeline
from sniffwrites.bpf.records import FILE_PSEUDO, FILE_TRUNCATED, FILE_WATCHED
from sniffwrites.resolve import (ANON_INODE_FS_MAGIC, PIPEFS_MAGIC, SOCKFS_MAGIC, FileTable,
                                 join_path, pseudo_name)


# --- config ------------------------------------------------------------------------------------

def test_operations_parse_and_reject_unknown_names():
    assert parse_operations("read,write") == {"read", "write"}
    assert parse_operations("all") == set(records.OP_NAMES.values()) - {"dup"}
    with pytest.raises(ConfigError, match="unknown operation 'wirte'"):
        parse_operations("wirte")


def test_a_missing_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config.make(dirs=[str(tmp_path / "nope")])
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        Config.make(dirs=[str(tmp_path / "file")])


def test_directories_are_canonical_and_deduplicated(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    cfg = Config.make(dirs=[str(tmp_path / "link"), str(real)])
    assert [w.path for w in cfg.dirs] == [str(real)]
    st = os.stat(real)
    assert cfg.dirs[0].kernel_dev == (os.major(st.st_dev) << 20) | os.minor(st.st_dev)


def test_kernel_settings_carry_the_filters(tmp_path):
    cfg = Config.make(dirs=[str(tmp_path)], comm="worker", pid=42, follow=True,
                      operations="write,close", failed=True)
    table = [0] * 512
    s = cfg.kernel_settings(7, table)
    assert s["self_tgid"] == 7 and s["target_tgid"] == 42 and s["follow"] == 1
    assert s["use_comm"] == 1 and s["failed"] == 1 and s["all_files"] == 0
    comm = b"worker".ljust(16, b"\0")
    assert s["comm"] == [int.from_bytes(comm[:8], "little"), int.from_bytes(comm[8:], "little")]
    assert s["ops"] == (1 << records.OP_WRITE) | (1 << records.OP_CLOSE) | (1 << records.OP_DUP)
    assert s["prefix0"] == os.fsencode(str(tmp_path)) + b"/"
    debug = Config.make(dirs=[str(tmp_path)], comm="worker", debug=True).kernel_settings(7, table)
    assert debug["report_all"] == 1 and debug["use_comm"] == 0


def test_option_values_are_checked():
    with pytest.raises(ConfigError, match="--follow needs --pid"):
        Config.make(follow=True)
    with pytest.raises(ConfigError, match="--capture"):
        Config.make(capture=5000)
    cfg = Config.make(comm="a-very-long-process-name")
    assert cfg.comm == b"a-very-long-pro" and cfg.warnings


def test_kernel_dev_is_major_20_minor():
    assert kernel_dev(os.makedev(259, 3)) == (259 << 20) | 3


# --- naming -------------------------------------------------------------------------------

@pytest.mark.parametrize("magic, ino, name, shown", [
    (PIPEFS_MAGIC, 77, b"", b"pipe:[77]"),
    (SOCKFS_MAGIC, 78, b"TCP", b"socket:[78]"),
    (ANON_INODE_FS_MAGIC, 1, b"[eventfd]", b"anon_inode:[eventfd]"),
    (0x01021994, 5, b"memfd:buf", b"/memfd:buf"),
])
def test_files_without_a_path_are_named_like_proc(magic, ino, name, shown):
    assert pseudo_name(magic, ino, name) == shown


def test_paths_of_path_operations_are_joined_and_normalised():
    assert join_path(b"/w/sub", b"a.txt") == b"/w/sub/a.txt"
    assert join_path(b"/w/sub", b"../x") == b"/w/x"
    assert join_path(b"/w", b"/abs//p/./q") == b"/abs/p/q"
    assert join_path(b"/", b"x") == b"/x"


def test_file_table_forgets_a_file_with_its_last_fd():
    table = FileTable()
    table.add(9, FILE_WATCHED, 1, 2, 3, 0o100644, 1, b"/w/a")
    table.ref(9)                       # dup
    table.release(9)
    assert table.files[9].path == b"/w/a"
    table.release(9)
    assert 9 not in table.files


def test_an_unknown_file_id_falls_back_to_proc_and_is_counted(tmp_path):
    table = FileTable()
    fd = os.open(str(tmp_path), os.O_RDONLY)
    try:
        info, fallback = table.lookup(12345, os.getpid(), fd)
    finally:
        os.close(fd)
    assert fallback and info.path == os.fsencode(str(tmp_path))
    assert table.unresolved == 1


# --- records -> events --------------------------------------------------------------------

def io(op, fd, ret, file_id, *, pid=100, tid=100, flags=0, aux=0, nr=0, comm=b"app", data=b""):
    rec = views.IO_FORMAT.pack(records.REC_IO, op, flags, pid, tid, 1, 1000, fd, 5000, ret,
                                file_id, aux, nr, len(data), comm.ljust(16, b"\0"))
    return rec + data


def file_rec(file_id, path, *, flags=FILE_WATCHED, pid=100, fd=3, magic=0xEF53, ino=11):
    header = views.FILE_HEADER_FORMAT.pack(records.REC_FILE, 0, flags, pid, pid, fd, file_id, ino,
                                     magic, (8 << 20) | 1, 0o100644, 1, 1, 0, len(path))
    return header + path + b"\0"


def text(tid, which, value):
    return views.TEXT_HEADER_FORMAT.pack(records.REC_TEXT, which, 0, 0, tid, len(value) + 1, 0) \
        + value + b"\0"


def agg(fd, file_id, *, flags=0, pid=100, counts=(0, 0, 0, 0)):
    return views.AGG_FORMAT.pack(records.REC_AGG, records.OP_CLOSE, flags, pid, pid, 1, 0, fd,
                                  6000, file_id, *counts, b"app".ljust(16, b"\0"))


def pipeline(cfg, fmt, names):
    """A pipeline whose output lines collect in ``.lines``."""
    lines = []
    handler = Pipeline(cfg, fmt, lines.extend, names)
    handler.lines = lines
    return handler


def run(cfg, *records):
    handler = pipeline(cfg, Formatter("json", boot_to_wall_ns=0),
                       {0: "read", 1: "write", 257: "openat"})
    handler.feed([memoryview(r) for r in records])
    return handler, [json.loads(line) for line in handler.lines]


def test_the_views_are_the_kernel_declarations():
    assert views.IO_FORMAT.size == records.Io.layout.size == 80
    assert views.FILE_HEADER_FORMAT.size == records.FILE_HEADER
    assert views.TEXT_HEADER_FORMAT.size == records.Text.layout.fields["text"].offset
    assert views.AGG_FORMAT.size == records.Agg.layout.size
    assert views.IoView._fields == tuple(records.Io.layout.fields)
    assert views.IO_HOT.size == 80
    io_rec = views.view(memoryview(io(records.OP_OPEN, 3, 3, 9, aux=0o101)))
    assert io_rec.open_flags == io_rec.aux == 0o101 and io_rec.file_id == 9


def test_an_open_then_io_then_close_becomes_three_events_with_the_path():
    cfg = Config.make()
    _, events = run(cfg, file_rec(0x1001, b"/w/a.txt"), text(100, records.TEXT_GIVEN, b"a.txt"),
                    io(records.OP_OPEN, 3, 3, 0x1001, aux=os.O_RDONLY, nr=257),
                    io(records.OP_READ, 3, 7, 0x1001, nr=0),
                    agg(3, 0x1001))
    assert [e["op"] for e in events] == ["open", "read", "close"]
    assert all(e["path"] == "/w/a.txt" for e in events)
    assert events[0]["given_path"] == "a.txt" and events[0]["syscall"] == "openat"
    assert events[1]["bytes"] == 7 and events[1]["comm"] == "app"


def test_a_dup_shares_the_file_until_both_fds_close():
    cfg = Config.make()
    handler, events = run(cfg, file_rec(5, b"/w/d"), io(records.OP_DUP, 50, 50, 5, aux=3),
                            agg(3, 5), io(records.OP_WRITE, 50, 2, 5, nr=1))
    assert [(e["op"], e["fd"], e["path"]) for e in events] == [("close", 3, "/w/d"),
                                                              ("write", 50, "/w/d")]
    assert 5 in handler.table.files


def test_pseudo_files_are_named_and_truncation_is_flagged():
    cfg = Config.make()
    _, events = run(cfg, file_rec(1, b"/", flags=FILE_WATCHED | FILE_PSEUDO, magic=PIPEFS_MAGIC,
                                  ino=4242),
                    io(records.OP_WRITE, 4, 1, 1, nr=1),
                    file_rec(2, b"/tail/of/a/long/path", flags=FILE_WATCHED | FILE_TRUNCATED),
                    io(records.OP_READ, 5, 1, 2))
    assert events[0]["path"] == "pipe:[4242]"
    assert events[1]["truncated"] is True


def test_path_operations_are_joined_to_their_directory_and_checked(tmp_path):
    watched = tmp_path / "w"
    watched.mkdir()
    cfg = Config.make(dirs=[str(watched)])
    root = os.fsencode(str(watched))
    dir_rec = file_rec(7, root + b"/sub", flags=FILE_WATCHED | 16, fd=-100)
    new_dir = file_rec(9, root + b"/sub", flags=FILE_WATCHED | 16, fd=-100)
    _, events = run(cfg, dir_rec, new_dir, text(100, records.TEXT_NAME, b"old"),
                    text(100, records.TEXT_NEW_NAME, b"../new"),
                    io(records.OP_RENAME, -1, 0, 7, flags=records.IO_PATH_OP, aux=9),
                    file_rec(8, root + b"/sub", flags=FILE_WATCHED | 16, fd=-100),
                    text(100, records.TEXT_NAME, b"../../escaped"),
                    io(records.OP_UNLINK, -1, 0, 8, flags=records.IO_PATH_OP))
    (rename,) = events
    assert rename["path"] == str(watched / "sub" / "old")
    assert rename["new_path"] == str(watched / "new")


def test_capture_data_is_escaped_in_json():
    cfg = Config.make(capture=16)
    _, events = run(cfg, file_rec(1, b"/w/x"),
                    io(records.OP_WRITE, 3, 4, 1, flags=records.IO_CAPTURE, data=b"a\nb\xff"))
    assert events[0]["data"] == "a\\nb\\xff"


def test_aggregate_mode_reports_counts_at_close():
    cfg = Config.make(aggregate=True)
    handler, events = run(cfg, file_rec(1, b"/w/big"), agg(3, 1, counts=(10, 100, 2, 20)))
    (record,) = events
    assert record["type"] == "aggregate" and record["reads"] == 10 and record["closed"] is True
    assert handler.open_files == {}


def test_records_are_viewed_by_kind():
    record = views.view(memoryview(file_rec(3, b"/w/z")))
    assert record.path == b"/w/z" and record.file_id == 3
    assert views.view(memoryview(io(records.OP_READ, 3, 1, 3))).op == records.OP_READ
    assert views.view(memoryview(text(7, records.TEXT_NAME, b"x"))).text == b"x"
    with pytest.raises(ValueError):
        views.view(memoryview(b"\x09" + bytes(100)))
    assert struct.calcsize("<" + views.IO_FORMAT.format[1:]) == 80


@pytest.mark.parametrize("flags", [FILE_WATCHED, FILE_WATCHED | FILE_TRUNCATED])
def test_the_json_hot_path_writes_what_the_formatter_writes(flags):
    """Reads and writes skip the Event object in JSON mode: same line."""
    from sniffwrites.events import Event
    cfg = Config.make()
    fmt = Formatter("json", boot_to_wall_ns=0)
    slow = [fmt.event(Event(5000, "read", 100, 100, 1, 1000, b"c%d\x1b", 3, b"/w/\xff%odd\n",
                            n, n, 0, truncated=bool(flags & FILE_TRUNCATED), syscall="read"))
            for n in (9, 0, 12345)]
    handler = pipeline(cfg, fmt, {0: "read"})
    handler.feed([memoryview(file_rec(1, b"/w/\xff%odd\n", flags=flags))] +
                 [memoryview(io(records.OP_READ, 3, n, 1, nr=0, comm=b"c%d\x1b"))
                  for n in (9, 0, 12345)])
    assert handler.lines == slow      # the first makes the template, the rest use it
    assert len(handler._hot) == 1 and handler.ops["read"] == 3


# --- the exact account ----------------------------------------------------------------------

class _Counters:
    """The live ``counters`` map as LossAccount reads it: key 0, per CPU."""

    def __init__(self, *per_cpu):
        self.per_cpu = [dict(dict.fromkeys(records.Counters.layout.fields, 0), **c)
                        for c in per_cpu]

    def __getitem__(self, key):
        return self.per_cpu


def test_the_account_balances_by_kind_across_cpus_and_names_what_does_not():
    from sniffwrites.losses import LossAccount, balance_text
    account = LossAccount(counters=_Counters(
        {"emitted_io": 7, "dropped_io": 2, "emitted_file": 1},
        {"emitted_io": 3, "emitted_text": 2, "dropped_text": 1}))
    account.refresh()
    counts = account.balance({"io": 8, "file": 1, "text": 1})
    assert (counts["emitted"], counts["received"], counts["dropped"]) == (13, 10, 3)
    assert counts["unaccounted"] == 0 and counts["dropped_io"] == 2
    assert balance_text(counts) == ("records emitted 13 = received 10 + dropped 3 "
                                    "(io 8+2, file 1+0, text 1+1)")
    short = account.balance({"io": 7, "file": 1, "text": 1, "unknown": 1})
    assert short["unaccounted"] == 2 and balance_text(short).endswith("UNACCOUNTED 2")


def test_the_pipeline_counts_what_it_received_by_kind():
    cfg = Config.make(dirs=(), fmt="json")
    pipeline = Pipeline(cfg, Formatter("json", boot_to_wall_ns=0), lambda lines: None)
    io = bytearray(records.Io.layout.size)
    io[0] = records.REC_IO
    text = bytearray(records.Text.layout.size)
    text[0] = records.REC_TEXT
    pipeline.feed([text, io, bytes([99]) + bytes(80)])
    assert pipeline.received == {"io": 1, "text": 1, "unknown": 1}
