"""Caches cannot be poisoned: what root loads never comes from a place
another user can write, and never from a format that runs code when read.
A poisoned cache is ignored (the program builds normally) and the monitor
still attaches."""

import ast
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from planting import NOBODY, as_user

from pybpf.kernel import btf_index
from pybpf.kernel.btf import VMLINUX_PATH, BTF
from sniffwrites import buildcache

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sniffwrites_programs():
    from sniffwrites.bpf import hooks
    programs = list(hooks.PROGRAMS)
    built = {p.name: p.build() for p in programs}
    return programs, list(hooks.SOURCE_MODULES), built


def same_code(a, b):
    return (a.instructions, a.relocations, a.labels, a.lines, a.functions, a.name) == \
        (b.instructions, b.relocations, b.labels, b.lines, b.functions, b.name)


def prebuild(programs, modules, directory):
    """A start of the monitor: nothing built in this process yet."""
    for p in programs:
        p._built.clear()
    return buildcache.prebuild(programs, modules, directory)


def code_matches(programs, built):
    return all(same_code(p.build(), built[p.name]) for p in programs)


def the_entry(directory):
    (name,) = [n for n in os.listdir(directory) if n.endswith(buildcache.ENTRY_SUFFIX)]
    return os.path.join(directory, name)


def read_entry(path):
    """(header, programs) of an entry: a JSON line, then the JSON payload."""
    header, _, payload = open(path, "rb").read().partition(b"\n")
    return json.loads(header), json.loads(payload)


def entry_bytes(header, programs, rehash):
    """An entry with changed programs; ``rehash``: with the SHA-256 they now have."""
    payload = json.dumps(programs).encode()
    if rehash:
        header = dict(header, sha256=hashlib.sha256(payload).hexdigest())
    return json.dumps(header).encode() + b"\n" + payload


def test_an_entry_is_data_that_rebuilds_the_same_code(sniffwrites_programs, private_dir):
    programs, modules, built = sniffwrites_programs
    assert prebuild(programs, modules, private_dir) is False      # fills it
    entry = the_entry(private_dir)
    assert os.stat(entry).st_mode & 0o777 == 0o600
    header, entries = read_entry(entry)
    assert header["format"] == "sniffwrites-build" and set(entries) == set(built)
    assert prebuild(programs, modules, private_dir) is True       # a hit
    assert code_matches(programs, built)
    from sniffwrites.bpf import hooks
    assert {s.label for s in hooks.sniff_sys_exit.subprograms()} >= {"track_fd", "walk_step"}


def test_builds_for_another_kernels_btf_never_go_into_the_cache(sniffwrites_programs,
                                                                private_dir):
    from pybpf.dsl.kernel_types import using_btf
    from pybpf.kernel.btf import vmlinux
    programs, modules, built = sniffwrites_programs
    with using_btf(vmlinux()):
        assert prebuild(programs, modules, private_dir) is False
    assert os.listdir(private_dir) == []


def test_entries_of_other_installs_are_kept_up_to_a_few(sniffwrites_programs, private_dir):
    programs, modules, built = sniffwrites_programs
    others = ["other-%d%s" % (i, buildcache.ENTRY_SUFFIX) for i in range(6)]
    for age, name in enumerate(others):
        path = os.path.join(private_dir, name)
        open(path, "w").close()
        os.utime(path, (1000 + age, 1000 + age))
    prebuild(programs, modules, private_dir)
    kept = sorted(os.listdir(private_dir))
    assert len(kept) == buildcache.MAX_ENTRIES and os.path.basename(the_newest(private_dir)) \
        in kept and set(kept) - {os.path.basename(the_newest(private_dir))} == set(others[-3:])


def the_newest(directory):
    return max((os.path.join(directory, n) for n in os.listdir(directory)), key=os.path.getmtime)


def test_garbage_and_altered_bytecode_are_rebuilt(sniffwrites_programs, private_dir):
    programs, modules, built = sniffwrites_programs
    prebuild(programs, modules, private_dir)
    entry = the_entry(private_dir)
    header, entries = read_entry(entry)
    code = entries[sorted(entries)[0]]["code"]
    code["bytecode"] = "b700000000000000" + code["bytecode"][16:]    # r0 = 0 first
    with open(entry, "wb") as f:
        f.write(entry_bytes(header, entries, rehash=False))   # its SHA-256 no longer matches
    assert prebuild(programs, modules, private_dir) is False
    assert code_matches(programs, built)
    with open(the_entry(private_dir), "wb") as f:
        f.write(b"\x80\x04garbage")
    assert prebuild(programs, modules, private_dir) is False
    assert code_matches(programs, built)
    assert prebuild(programs, modules, private_dir) is True       # rewritten whole


def _forge(directory):
    """A valid-looking entry with altered bytecode whose SHA-256 is right:
    only ownership can tell it from ours."""
    entry = the_entry(directory)
    header, entries = read_entry(entry)
    for program in entries.values():
        program["code"]["bytecode"] = "b7000000000000009500000000000000" * (
            len(program["code"]["bytecode"]) // 32)
    return entry, entry_bytes(header, entries, rehash=True)


@pytest.mark.parametrize("how", ["entry planted by another uid", "directory of another uid",
                                 "world-writable directory", "world-writable ancestor"])
def test_a_forged_entry_is_never_loaded(sniffwrites_programs, private_dir, how):
    programs, modules, built = sniffwrites_programs
    directory = private_dir
    if how == "world-writable ancestor":
        directory = os.path.join(private_dir, "cache")
        os.mkdir(directory, 0o700)
    prebuild(programs, modules, directory)
    entry, forged = _forge(directory)
    if how == "entry planted by another uid":
        os.unlink(entry)
        os.chmod(directory, 0o777)

        def plant():
            with open(entry, "wb") as f:
                f.write(forged)
        as_user(plant)
        os.chmod(directory, 0o700)
        assert os.stat(entry).st_uid == NOBODY
    else:
        with open(entry, "wb") as f:
            f.write(forged)
        if how == "directory of another uid":
            os.chown(directory, NOBODY, NOBODY)
        elif how == "world-writable directory":
            os.chmod(directory, 0o777)
        else:
            os.chmod(private_dir, 0o1777)      # like /tmp: others could swap "cache"
    before = os.listdir(directory)
    assert prebuild(programs, modules, directory) is False
    assert code_matches(programs, built)
    if how != "entry planted by another uid":
        assert os.listdir(directory) == before        # nothing written there either


def test_a_planted_pickle_never_runs(sniffwrites_programs, private_dir, tmp_path):
    """The format of wave 1 could run code when read; nothing reads it now."""
    programs, modules, built = sniffwrites_programs
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch %s" % marker,))
    import pickle
    key = buildcache.cache_key(modules)
    for name in (key[:32] + ".pickle", key[:32] + buildcache.ENTRY_SUFFIX):
        with open(os.path.join(private_dir, name), "wb") as f:
            pickle.dump((1, Payload()), f)
    assert prebuild(programs, modules, private_dir) is False
    assert not marker.exists() and code_matches(programs, built)


def test_no_module_of_ours_imports_pickle():
    for package in ("pybpf", "sniffwrites"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n and n.split(".")[0] in ("pickle", "marshal", "shelve",
                                                         "dill", "cloudpickle")
                               for n in names), path


def test_the_default_place_of_roots_caches_ignores_the_environment(monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "/tmp/someone-elses")
    monkeypatch.setenv("HOME", "/tmp/someone-elses")
    assert buildcache.cache_dir() == "/var/cache/sniffwrites"
    assert btf_index.default_cache_dir() == "/var/cache/pybpf"


# --- the BTF index: offsets decide what root loads too -----------------------------------------

def _index_is_used(directory, monkeypatch) -> bool:
    def parsed(*args, **kwargs):
        raise LookupError("parsed")
    with monkeypatch.context() as m:
        m.setattr(btf_index, "build_index", parsed)
        try:
            BTF.load(VMLINUX_PATH, cache=directory)
        except LookupError:
            return False
    return True


def test_a_btf_index_from_an_untrusted_place_is_ignored(private_dir, monkeypatch):
    BTF.load(VMLINUX_PATH, cache=private_dir)
    assert _index_is_used(private_dir, monkeypatch)
    (name,) = os.listdir(private_dir)
    os.chown(os.path.join(private_dir, name), NOBODY, NOBODY)      # another uid's file
    assert not _index_is_used(private_dir, monkeypatch)
    os.chown(os.path.join(private_dir, name), 0, 0)
    os.chmod(private_dir, 0o777)                                   # others may write there
    assert not _index_is_used(private_dir, monkeypatch)
    with tempfile.TemporaryDirectory() as under_tmp:               # /tmp is world-writable
        os.chmod(under_tmp, 0o700)
        shutil.copy(os.path.join(private_dir, name), under_tmp)
        assert not _index_is_used(under_tmp, monkeypatch)


# --- the monitor with a poisoned cache ------------------------------------------------------

def test_the_monitor_attaches_past_a_poisoned_cache(sniffwrites_programs, private_dir, tmp_path):
    programs, modules, built = sniffwrites_programs
    cache = os.path.join(private_dir, "cache")
    prebuild(programs, modules, cache)
    entry, forged = _forge(cache)
    os.unlink(entry)
    os.chmod(private_dir, 0o755)      # still closed to others: nobody may only pass
    os.chmod(cache, 0o777)

    def plant():
        with open(entry, "wb") as f:
            f.write(forged)
    as_user(plant)
    watched = tmp_path / "watched"
    watched.mkdir()
    output = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "sniffwrites.cli", "monitor", "-d",
                             str(watched), "--cache-dir", cache, "-f", "json", "--output",
                             str(output), "--duration", "3", "--ready-file",
                             str(tmp_path / "ready")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (watched / "file").write_text("hello")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in output.read_text().splitlines()]
    assert any(e.get("op") == "write" and e.get("path") == str(watched / "file")
               for e in events), events
