"""``pybpf disasm``, ``asm`` and ``verify`` as real subprocesses.

* ``disasm`` of every shipped program (``programs/*.py``, and sniffwrites'
  kernel side ``sniffwrites/bpf/hooks.py``) and of
  ``golden/sample.s`` matches a golden file in ``golden/``. After an
  intended change, regenerate them with ``PYBPF_UPDATE_GOLDEN=1 pytest
  tests/e2e/test_cli_code.py`` and review the diff.
* ``disasm --raw`` prints what llvm-objdump-19 prints for the object
  ``disasm -o`` writes; ``asm`` then ``llvm-objdump -d -r`` round-trips to
  the same program.
* ``verify`` accepts the shipped programs and, on a rejection, prints the
  log with the DSL line at fault marked.
"""

import json
import os
import re
import shutil
import subprocess

import golden
import pytest
from cli_run import REPO, pybpf

from pybpf import asm_text

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")
SAMPLE = os.path.join(GOLDEN, "sample.s")
LLVM_OBJDUMP = "llvm-objdump-19"
# programs/lib_*.py are DSL libraries that programs call: they define none.
# Golden file name -> the module whose programs it lists.
TARGETS = dict({name[:-3]: "pybpf.programs." + name[:-3]
                for name in os.listdir(os.path.join(REPO, "programs"))
                if name.endswith(".py") and not name.startswith(("_", "lib_"))},
               sniffwrites="sniffwrites.bpf.hooks")
SHIPPED = sorted(TARGETS)


def matches_golden(name: str, text: str) -> None:
    golden.matches_golden(os.path.join(GOLDEN, name), text)


@pytest.fixture(scope="module")
def llvm():
    if shutil.which(LLVM_OBJDUMP) is None:
        pytest.skip("%s is needed to check our objects" % LLVM_OBJDUMP)


def objdump(path: str) -> str:
    """llvm-objdump's listing after its "file format" line."""
    listing = subprocess.run([LLVM_OBJDUMP, "-d", "-r", "--no-print-imm-hex", "--mcpu=v4", path],
                             check=True, capture_output=True, text=True).stdout
    return listing.split("file format elf64-bpf\n", 1)[1].strip("\n")


# --- disasm ----------------------------------------------------------------------------------

def test_shipped_programs_exist():
    assert "opensnoop" in SHIPPED and "count_syscalls" in SHIPPED


@pytest.mark.parametrize("module", SHIPPED)
def test_disasm_of_shipped_program_matches_golden(module):
    text = pybpf("disasm", TARGETS[module]).stdout
    # Every instruction comes from a line of the program (shown relative to the
    # repository); a path outside it is the DSL blaming whoever called build().
    outside = sorted(set(re.findall(r"^; (/\S+)", text, re.M)))
    assert not outside, "instructions attributed to lines outside the repository: %s" % outside
    matches_golden("%s.disasm.txt" % module, text)


def test_disasm_of_assembly_text_matches_golden():
    matches_golden("sample.disasm.txt", pybpf("disasm", "golden/sample.s", cwd=HERE).stdout)


@pytest.mark.parametrize("module", SHIPPED)
def test_raw_disasm_is_what_llvm_objdump_prints(llvm, module, tmp_path):
    target = TARGETS[module]
    path = str(tmp_path / (module + ".o"))
    assert pybpf("disasm", target, "-o", path).stdout == ""
    assert pybpf("disasm", target, "--raw").stdout.strip("\n") == objdump(path)


def test_disasm_one_program_of_a_module():
    text = pybpf("disasm", "pybpf.programs.opensnoop:exit_openat").stdout
    assert text.startswith("# program exit_openat, section tracepoint/syscalls/sys_exit_openat")
    assert "# map events: ringbuf" in text
    assert "enter_openat" not in text
    assert re.search(r"^; programs/opensnoop\.py:\d+  ev\.pid = u32\(id >> 32\)$", text, re.M)


def test_disasm_json():
    (program,) = json.loads(pybpf("disasm", "pybpf.programs.count_syscalls", "--json").stdout)
    assert (program["name"], program["section"]) == ("count_syscalls", "raw_tracepoint/sys_enter")
    assert [m["name"] for m in program["maps"]] == ["counts"]
    insns = program["instructions"]
    assert insns[0]["slot"] == 0 and insns[-1]["text"] == "exit"
    assert {i["helper"] for i in insns if i["helper"]} >= {"bpf_map_lookup_elem"}
    assert {i["map"] for i in insns if i["map"]} == {"counts"}
    assert all(i["source"]["file"].endswith("programs/count_syscalls.py") for i in insns)
    assert program["slots"] == insns[-1]["slot"] + 1


def test_disasm_errors_are_one_line():
    for target, message in [
            ("no_such_module", "no module named 'no_such_module' (give a module with DSL "
                               "programs, such as pybpf.programs.opensnoop, a .py file or a "
                               ".s file)"),
            ("pybpf.programs.opensnoop:nope", "module pybpf.programs.opensnoop has no program "
                                              "'nope' (it has: enter_openat, enter_openat2, "
                                              "exit_openat, exit_openat2)"),
            ("pybpf.isa", "module pybpf.isa defines no DSL programs")]:
        result = pybpf("disasm", target, check=False)
        assert (result.returncode, result.stderr) == (1, "pybpf: error: %s\n" % message)


# --- asm --------------------------------------------------------------------------------------

def relink(listing: str) -> str:
    """llvm-objdump's listing back into assembly text: each relocated
    ``r1 = 0 ll`` (or ``ld_pseudo r1, 2, off``) becomes a map reference to
    the relocation's symbol, a bpf-to-bpf call ``call pc+N``; jump
    annotations and symbol headers go."""
    lines = []
    for line in listing.splitlines():
        reloc = re.match(r"\s+[0-9a-f]+:  R_BPF_64_64\t(\S+)$", line)
        if reloc:
            previous = lines.pop()
            pseudo = re.match(r"ld_pseudo\s+(r\d+), 2, (\d+)$", previous)
            if pseudo:
                lines.append("%s = map[%s][0]+%s ll" % (pseudo.group(1), reloc.group(1),
                                                        pseudo.group(2)))
            else:
                lines.append(re.sub(r"= 0 ll$", "= map[%s] ll" % reloc.group(1), previous))
            continue
        fields = line.split("\t", 2)   # "     12:" <tab> "85 10 ..." <tab> text
        if len(fields) == 3 and fields[0].strip().endswith(":"):
            text = re.sub(r" <[^<>\s]*>$", "", fields[2])
            if fields[1].startswith("85 10 "):   # llvm writes a bpf-to-bpf call as "call imm"
                text = "call pc%+d" % int(text.split()[1])
            lines.append(text)
    return "\n".join(lines)


def test_asm_then_llvm_objdump_round_trips(llvm, tmp_path):
    section = "tracepoint/syscalls/sys_enter_getpid"
    path = str(tmp_path / "sample.o")
    pybpf("asm", SAMPLE, "-o", path, "--section", section)
    listing = objdump(path)
    assert listing == pybpf("disasm", SAMPLE, "--raw", "--section", section).stdout.strip("\n")
    assert "Disassembly of section %s:" % section in listing
    assert "0000000000000000 <sample>:" in listing and "<clamp>:" in listing
    with open(SAMPLE) as f:
        original = asm_text.parse(f.read())
    again = asm_text.parse(relink(listing))
    assert again.instructions == original.instructions
    assert again.relocations == original.relocations


def test_asm_defaults_and_name(llvm, tmp_path):
    source = tmp_path / "tiny.s"
    source.write_text("r0 = 0\nexit\n")
    pybpf("asm", source, "--name", "tiny_prog")
    listing = objdump(str(tmp_path / "tiny.o"))
    assert "Disassembly of section .text:" in listing and "<tiny_prog>:" in listing


def test_asm_error_names_the_line(tmp_path):
    source = tmp_path / "bad.s"
    source.write_text("r0 = 0\ngoto nowhere\nexit\n")
    result = pybpf("asm", source, check=False)
    assert result.returncode == 1
    assert result.stderr == "pybpf: error: %s:2: unknown label 'nowhere' (in 'goto nowhere')\n" \
        % source


# --- verify -------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", SHIPPED)
def test_verify_accepts_shipped_programs(module):
    records = json.loads(pybpf("verify", TARGETS[module], "--json").stdout)
    assert records and all(r["verdict"] == "accepted" for r in records)
    assert all(r["insns_processed"] >= r["instructions"] for r in records)
    text = pybpf("verify", TARGETS[module]).stdout
    assert re.search(r"^\S+ \(\S+\): accepted$", text, re.M)


REJECTED = '''\
from pybpf.dsl import HashMap, raw_tracepoint, u32, u64

counts = HashMap(key=u32, value=u64, max_entries=16)


@raw_tracepoint("sys_enter")
def rejected(p, ctx):
    pid = u32(p.helpers.get_current_pid_tgid() >> 32)
    ip = p.helpers.get_func_ip(ctx)
    counts.update(pid, u64(ip))
'''


def test_verify_rejection_marks_the_source_line(tmp_path):
    (tmp_path / "rejected_prog.py").write_text(REJECTED)
    result = pybpf("verify", "rejected_prog", check=False, cwd=str(tmp_path))
    assert result.returncode == 1
    assert re.search(r"^>> rejected_prog\.py:9  ip = p\.helpers\.get_func_ip\(ctx\)$",
                     result.stdout, re.M)
    assert "call bpf_get_func_ip#173" in result.stdout
    assert result.stderr.startswith("pybpf: error: BPF_PROG_LOAD failed")
    assert result.stderr.count("\n") == 1
    assert "verifier rejected program 'rejected' at instruction" in result.stderr
    assert "rejected_prog.py:9" in result.stderr


def test_verify_needs_a_dsl_program():
    result = pybpf("verify", SAMPLE, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("pybpf: error: verify needs DSL programs")
