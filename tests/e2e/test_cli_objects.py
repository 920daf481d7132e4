"""``pybpf prog|map|link``, ``features`` and the error and help conventions,
run as real subprocesses against objects this test loads into the kernel.

Where bpftool is installed its answers are the reference: the same facts in
JSON, the same ``map dump`` and ``prog dump xlated`` text.
"""

import json
import os
import re
import shutil
import subprocess

import pytest
from cli_run import pybpf

from pybpf import asm, isa
from pybpf.kernel import objects
from pybpf.kernel.link import attach_tracepoint
from pybpf.kernel.maps import Map, MapSpec
from pybpf.kernel.prog import Program, enable_stats
from pybpf.consts import BPF_PROG_TYPE_TRACEPOINT

BPFTOOL = "/usr/sbin/bpftool"
PROG_NAME = "cli_test"


def pybpf_json(*args):
    return json.loads(pybpf(*args, "--json").stdout)


def bpftool(*args, as_json=False):
    if not os.path.exists(BPFTOOL):
        pytest.skip("bpftool is not installed")
    out = subprocess.run((BPFTOOL,) + (("-j",) if as_json else ()) + args, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out) if as_json else out


def counting_program() -> asm.AssembledProgram:
    """counts[1] += 1 on every getpid()."""
    a = asm.Assembler(PROG_NAME)
    a.emit(isa.st(4, isa.R10, -4, 1))
    a.ld_map(isa.R1, "counts")
    a.emit(isa.mov(isa.R2, isa.R10))
    a.emit(isa.alu(isa.BPF_ADD, isa.R2, -4))
    a.call("map_lookup_elem")
    a.jump(isa.BPF_JEQ, isa.R0, 0, "out")
    a.emit(isa.mov(isa.R1, 1))
    a.emit(isa.atomic(8, isa.BPF_ADD, isa.R0, 0, isa.R1))
    a.label("out")
    a.emit(isa.mov(isa.R0, 0))
    a.emit(isa.exit_())
    return a.assemble()


@pytest.fixture(scope="module")
def loaded():
    """A tracepoint program attached to sys_enter_getpid that counts in a
    hash map (key 1; key 7 stays), plus two maps no program writes, so that
    two dumps of them must agree: a hash and a per-CPU array."""
    with Map.create(MapSpec("hash", key_size=4, value_size=8, max_entries=16,
                            name="cli_counts")) as counts, \
            Map.create(MapSpec("hash", key_size=8, value_size=20, max_entries=4,
                               name="cli_static")) as static, \
            Map.create(MapSpec("percpu_array", key_size=4, value_size=4, max_entries=2,
                               name="cli_percpu")) as percpu:
        counts[1] = 0
        counts[7] = 0x1122334455
        static[0x0102030405060708] = bytes(range(20))
        static[9] = bytes(20)
        percpu[1] = [0x01020304 + cpu for cpu in range(percpu.ncpus)]
        with Program.load(counting_program(), prog_type=BPF_PROG_TYPE_TRACEPOINT,
                          maps={"counts": counts}) as prog, \
                attach_tracepoint(prog, "syscalls/sys_enter_getpid") as link:
            yield dict(prog=prog, counts=counts, static=static, percpu=percpu, link=link)


# --- prog ------------------------------------------------------------------------------

def test_prog_list_shows_our_program(loaded):
    prog, counts = loaded["prog"], loaded["counts"]
    text = pybpf("prog", "list").stdout
    assert re.search(r"^%d: tracepoint  name %s  tag %s  gpl" % (prog.id, PROG_NAME, prog.tag),
                     text, re.M)
    assert re.search(r"^\txlated \d+B  jited \d+B  map_ids %d$" % counts.id, text, re.M)
    ours = [p for p in pybpf_json("prog", "list") if p["id"] == prog.id]
    assert len(ours) == 1
    assert (ours[0]["name"], ours[0]["type"], ours[0]["tag"], ours[0]["map_ids"]) == (
        PROG_NAME, "tracepoint", prog.tag, [counts.id])


def test_prog_show_has_bpftools_facts(loaded):
    prog = loaded["prog"]
    ours = pybpf_json("prog", "show", prog.id)
    theirs = bpftool("prog", "show", "id", str(prog.id), as_json=True)
    for key in ("id", "type", "name", "tag", "gpl_compatible", "uid", "bytes_xlated", "jited",
                "bytes_jited", "map_ids"):
        assert ours[key] == theirs[key], key
    assert abs(ours["loaded_at"] - theirs["loaded_at"]) <= 1
    assert list(ours) == ["id", "type", "name", "tag", "gpl_compatible", "loaded_at", "uid",
                          "bytes_xlated", "jited", "bytes_jited", "map_ids", "btf_id",
                          "verified_insns", "run_time_ns", "run_cnt", "recursion_misses"]


def test_run_stats_when_enabled(loaded):
    prog = loaded["prog"]
    with enable_stats():
        for _ in range(5):
            os.getpid()
        shown = pybpf_json("prog", "show", prog.id)
        text = pybpf("prog", "show", prog.id).stdout
    assert shown["run_cnt"] >= 5 and shown["run_time_ns"] > 0
    assert re.search(r"  run_time_ns \d+ run_cnt \d+", text.splitlines()[0])


def test_dump_xlated_is_bpftools_text(loaded):
    prog = loaded["prog"]
    ours = pybpf("prog", "dump", "xlated", prog.id).stdout
    assert ours == bpftool("prog", "dump", "xlated", "id", str(prog.id))
    assert "map[id:%d]" % loaded["counts"].id in ours


def test_dump_xlated_other_styles_name_maps(loaded):
    prog = loaded["prog"]
    annotated = pybpf("prog", "dump", "xlated", prog.id, "--style", "annotated").stdout
    assert "r1 = map[cli_counts] ll" in annotated
    lines = pybpf_json("prog", "dump", "xlated", prog.id)
    assert lines[0] == {"slot": 0, "bytes": "62 0a fc ff 01 00 00 00",
                        "disasm": "(62) *(u32 *)(r10 -4) = 1"}


def test_dump_xlated_shows_kernel_rewrites():
    """The verifier inlines bpf_get_smp_processor_id and per-CPU array
    lookups with encodings no loader may submit; the kernel style prints them
    as bpftool does, the other styles refuse in one line."""
    a = asm.Assembler("cli_percpu")
    a.call("get_smp_processor_id")
    a.emit(isa.st(4, isa.R10, -4, 0))
    a.ld_map(isa.R1, "pc")
    a.emit(isa.mov(isa.R2, isa.R10))
    a.emit(isa.alu(isa.BPF_ADD, isa.R2, -4))
    a.call("map_lookup_elem")
    a.emit(isa.mov(isa.R0, 0))
    a.emit(isa.exit_())
    with Map.create(MapSpec("percpu_array", key_size=4, value_size=8, max_entries=1,
                            name="pc")) as pc, \
            Program.load(a.assemble(), prog_type=BPF_PROG_TYPE_TRACEPOINT,
                         maps={"pc": pc}) as prog:
        text = pybpf("prog", "dump", "xlated", prog.id).stdout
        theirs = bpftool("prog", "dump", "xlated", "id", str(prog.id)).splitlines()
        annotated = pybpf("prog", "dump", "xlated", prog.id, "--style", "annotated",
                          check=False)
    ours = text.splitlines()
    assert len(ours) == len(theirs)
    assert "(bf) r0 = &(void __percpu *)(r0)" in text
    assert "kernel-internal" not in text
    # A bpftool built with the disasm.c of Linux < 6.8 prints the move as a plain one.
    assert [b for a, b in zip(ours, theirs) if a != b] in (
        [], [re.sub(r"&\(void __percpu \*\)\((r\d+)\)", r"\1", line) for line in ours
             if "__percpu" in line])
    assert annotated.returncode == 1
    assert "kernel-internal instructions (slot 1: " in annotated.stderr


def test_dump_xlated_names_jited_functions_as_bpftool():
    """bpf-to-bpf calls: the verifier moves the offset and numbers the
    callee; the dump shows ``call pc+N#bpf_prog_<tag>_<name>`` like bpftool."""
    a = asm.Assembler("cli_calls")
    a.emit(isa.mov(isa.R1, 3))
    a.call_function("twice")
    a.emit(isa.exit_())
    a.function("twice")
    a.emit(isa.mov(isa.R0, isa.R1))
    a.emit(isa.alu(isa.BPF_ADD, isa.R0, isa.R1))
    a.emit(isa.exit_())
    with Program.load(a.assemble(), prog_type=BPF_PROG_TYPE_TRACEPOINT) as prog:
        ours = pybpf("prog", "dump", "xlated", prog.id).stdout
        theirs = bpftool("prog", "dump", "xlated", "id", str(prog.id))
        functions = pybpf_json("prog", "dump", "jited", prog.id)
        annotated = pybpf("prog", "dump", "xlated", prog.id, "--style", "annotated").stdout
    assert ours == theirs
    assert "(85) call pc+1#bpf_prog_" in ours
    assert len(functions) == 2 and functions[1]["name"].startswith("bpf_prog_")   # "_F": no BTF
    assert "call L3" in annotated and "\nL3:\n" in annotated


def test_dump_jited_shows_every_byte(loaded):
    prog = loaded["prog"]
    info = prog.info()
    functions = pybpf_json("prog", "dump", "jited", prog.id)
    assert sum(f["size"] for f in functions) == info.jited_len
    assert functions[0]["name"] == "bpf_prog_%s_%s" % (prog.tag, PROG_NAME)
    text = pybpf("prog", "dump", "jited", prog.id).stdout
    hex_digits = "".join(line.split(":", 1)[1] for line in text.splitlines()[1:])
    assert bytes.fromhex(hex_digits).hex() == functions[0]["code"]


def test_dump_jited_through_objdump(loaded):
    """With binutils' objdump: its disassembly; without: one clear error."""
    result = pybpf("prog", "dump", "jited", loaded["prog"].id, "--objdump", check=False)
    if shutil.which("objdump") is None:
        assert result.returncode == 1
        assert result.stderr.startswith("pybpf: error: --objdump needs binutils' objdump")
    else:
        assert result.returncode == 0, result.stderr
        assert re.search(r"^\s*[0-9a-f]+:\s+([0-9a-f]{2} )+\s*\S+", result.stdout, re.M)


# --- map ---------------------------------------------------------------------------------

def test_map_list_and_show(loaded):
    counts = loaded["counts"]
    text = pybpf("map", "list").stdout
    assert "%d: hash  name cli_counts  flags 0x0\n\tkey 4B  value 8B  max_entries 16\n" \
        % counts.id in text
    shown = pybpf_json("map", "show", counts.id)
    theirs = bpftool("map", "show", "id", str(counts.id), as_json=True)
    for key in ("id", "type", "name", "flags", "bytes_key", "bytes_value", "max_entries"):
        assert shown[key] == theirs[key], key


@pytest.mark.parametrize("which", ["static", "percpu"])
def test_map_dump_is_bpftools(loaded, which):
    map_id = loaded[which].id
    assert pybpf("map", "dump", map_id).stdout == bpftool("map", "dump", "id", str(map_id))
    assert pybpf_json("map", "dump", map_id) == bpftool("map", "dump", "id", str(map_id),
                                                          as_json=True)


def test_map_dump_shows_the_entries(loaded):
    text = pybpf("map", "dump", loaded["counts"].id).stdout
    assert "key: 07 00 00 00  value: 55 44 33 22 11 00 00 00\n" in text
    assert text.endswith("Found 2 elements\n")


# --- link --------------------------------------------------------------------------------

def test_link_list_shows_the_attachment(loaded):
    prog = loaded["prog"]
    ours = [link for link in pybpf_json("link", "list") if link["prog_id"] == prog.id]
    assert len(ours) == 1
    assert ours[0]["type"] == "perf_event"
    assert ours[0]["tp_name"] == "sys_enter_getpid"
    text = pybpf("link", "show", ours[0]["id"]).stdout
    assert text == "%d: perf_event  prog %d\n\ttp_name sys_enter_getpid  perf_event_type " \
        "tracepoint  cookie 0\n" % (ours[0]["id"], prog.id)


# --- features ------------------------------------------------------------------------------

def test_features_table_and_json():
    text = pybpf("features").stdout
    assert re.search(r"^  BPF_MAP_TYPE_RINGBUF\s+yes$", text, re.M)
    found = pybpf_json("features")
    assert found["map_types"]["BPF_MAP_TYPE_HASH"] == {"available": True, "state": "present",
                                                       "detail": ""}
    assert found["other"]["btf"]["available"] is True
    # Each answer says which of three it is, in both forms: refused (EPERM,
    # EACCES: policy) is told apart from absent (the kernel lacks it).
    verdicts = {"present": "yes", "absent": "no", "refused": "refused"}
    for group in ("map_types", "prog_types", "link_types", "other"):
        for name, answer in found[group].items():
            assert answer["available"] == (answer["state"] == "present")
            assert answer["state"] != "refused" or answer["detail"].startswith(("EPERM", "EACCES")) \
                or ": EPERM" in answer["detail"] or ": EACCES" in answer["detail"], answer
            line = re.search(r"^  %s\s+(\S+)" % re.escape(name), text, re.M)
            assert line and line.group(1) == verdicts[answer["state"]], (name, answer)


# --- errors and help ------------------------------------------------------------------------

def test_errors_are_one_line_and_exit_1():
    missing = max(objects.PROGS.ids() or [0]) + 1000000
    result = pybpf("prog", "show", missing, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ("pybpf: error: BPF_PROG_GET_FD_BY_ID failed (ENOENT): "
                             "no program with id %d\n" % missing)


def test_debug_shows_the_traceback():
    result = pybpf("--debug", "map", "dump", 0x7FFFFFFF, check=False)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "NotFoundError" in result.stderr


def test_usage_errors_exit_2():
    result = pybpf("prog", "show", "not-a-number", check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def _commands(group, path=()):
    import click
    for name, command in group.commands.items():
        yield path + (name,)
        if isinstance(command, click.Group):
            yield from _commands(command, path + (name,))


def test_every_help_shows_an_example():
    from pybpf.cli import cli
    paths = [()] + list(_commands(cli))
    assert ("prog", "dump", "xlated") in paths and ("verify",) in paths
    for path in paths:
        text = pybpf(*path, "--help").stdout
        assert re.search(r"^  Example:\n    pybpf %s" % re.escape(" ".join(path[:1])),
                         text, re.M), "no example in: pybpf %s --help" % " ".join(path)
