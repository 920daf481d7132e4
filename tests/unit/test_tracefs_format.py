"""Tracepoint format files -> layouts, on texts copied from Linux 6.18's tracefs."""

import pytest

from pybpf.errors import NotFoundError
from pybpf.kernel import tracefs
from pybpf.kernel.tracefs import Field, FormatParseError, parse_format

OPENAT = """\
name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "dfd: 0x%08lx", ((unsigned long)(REC->dfd))
"""

SCHED_SWITCH = """\
name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:__data_loc char[] reason;\toffset:40;\tsize:4;\tsigned:0;

print fmt: "prev_comm=%s", REC->prev_comm
"""


def test_syscall_tracepoint_layout():
    fmt = parse_format(OPENAT, "syscalls")
    assert (fmt.category, fmt.name, fmt.id) == ("syscalls", "sys_enter_openat", 782)
    assert fmt.field("common_pid") == Field("common_pid", "int", 4, 4, True)
    # the declared C type says int, the kernel stores 8 bytes: size wins
    assert fmt.field("dfd") == Field("dfd", "int", 16, 8, False)
    assert fmt.field("filename") == Field("filename", "const char *", 24, 8, False)
    assert [f.name for f in fmt.event_fields] == ["__syscall_nr", "dfd", "filename", "flags",
                                                  "mode"]
    assert fmt.size == 48
    assert "mode" in fmt and "path" not in fmt


def test_arrays_and_dynamic_fields():
    fmt = parse_format(SCHED_SWITCH, "sched")
    comm = fmt.field("prev_comm")
    assert (comm.type, comm.array_len, comm.element_size, comm.is_dynamic) == \
        ("char[16]", 16, 1, False)
    reason = fmt.field("reason")
    assert (reason.type, reason.size, reason.array_len, reason.is_dynamic) == \
        ("__data_loc char[]", 4, None, True)
    assert fmt.field("prev_state").signed


def test_unknown_field_names_the_choices():
    fmt = parse_format(OPENAT, "syscalls")
    with pytest.raises(KeyError, match="syscalls/sys_enter_openat has no field 'path'.*filename"):
        fmt.field("path")


def test_old_kernels_without_signed():
    fmt = parse_format("name: x\nID: 1\n\tfield:int a;\toffset:8;\tsize:4;\n", "c")
    assert fmt.field("a") == Field("a", "int", 8, 4, False)


@pytest.mark.parametrize("text, problem", [
    ("name: x\nID: 7\n\tfield:int a;\toffset:8;\n", "line 3: not a field line"),
    ("name: x\nID: 7\n\tfield:[3];\toffset:8;\tsize:4;\tsigned:0;\n", "line 3: cannot find"),
    ("name: x\nID: seven\n", "line 2"),
    ("name: x\n\tfield:int a;\toffset:8;\tsize:4;\tsigned:0;\n", "has no ID line"),
])
def test_malformed_format_names_the_line(text, problem):
    with pytest.raises(FormatParseError, match=problem):
        parse_format(text, "cat")


@pytest.mark.parametrize("spelling", ["syscalls/sys_enter_openat", "syscalls:sys_enter_openat"])
def test_split_name(spelling):
    assert tracefs.split_name(spelling) == ("syscalls", "sys_enter_openat")


@pytest.mark.parametrize("bad", ["sys_enter_openat", "/x", "a/b/c", "a/"])
def test_split_name_rejects(bad):
    with pytest.raises(ValueError, match="category/name"):
        tracefs.split_name(bad)


@pytest.fixture
def fake_tracefs(tmp_path, monkeypatch):
    """A directory that looks like tracefs, and no real tracefs mounted."""
    monkeypatch.setattr(tracefs.mounts, "find_mount", lambda fstype: None)
    event = tmp_path / "events" / "syscalls" / "sys_enter_openat"
    event.mkdir(parents=True)
    (event / "format").write_text(OPENAT)
    return tmp_path


def test_tracefs_found_among_candidates(fake_tracefs, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    assert tracefs.tracefs_root(mount=False, candidates=(str(empty), str(fake_tracefs))) == \
        str(fake_tracefs)


def test_missing_tracefs_says_how_to_mount(tmp_path, monkeypatch):
    monkeypatch.setattr(tracefs.mounts, "find_mount", lambda fstype: None)
    with pytest.raises(NotFoundError, match="tracefs is not mounted .*%s.*mount -t tracefs"
                       % tmp_path):
        tracefs.tracefs_root(mount=False, candidates=(str(tmp_path),))


def test_format_from_tree(fake_tracefs):
    fmt = tracefs.tracepoint_format("syscalls", "sys_enter_openat", str(fake_tracefs))
    assert fmt.field("filename").offset == 24
    assert tracefs.tracepoint_id("syscalls", "sys_enter_openat", str(fake_tracefs)) == 782


def test_missing_tracepoint_is_named(fake_tracefs):
    with pytest.raises(NotFoundError, match="tracepoint syscalls/sys_enter_nothing does not exist"):
        tracefs.tracepoint_format("syscalls", "sys_enter_nothing", str(fake_tracefs))
    with pytest.raises(NotFoundError, match="there is no category 'nosuch'"):
        tracefs.tracepoint_format("nosuch", "x", str(fake_tracefs))
