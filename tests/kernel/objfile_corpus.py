"""The ELF loader's test corpus: objects clang-19 builds from
``objfile_c/*.bpf.c`` against a ``vmlinux.h`` that bpftool writes from this
kernel's BTF (libbpf-bootstrap style), cilium/ebpf's ``testdata/*.elf`` and
libxdp's objects (all installed by tools/setup_test_host.sh)."""

import contextlib
import glob
import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

from pybpf.errors import PyBPFError
from pybpf.objfile.bpf_object import BPFObject
from pybpf.objfile.maps import LIBBPF_PIN_BY_NAME

C_DIR = os.path.join(os.path.dirname(__file__), "objfile_c")
CILIUM = "/usr/share/gocode/src/github.com/cilium/ebpf"
LIBXDP = "/usr/lib/x86_64-linux-gnu/bpf"


def shipped_objects():
    """cilium/ebpf's little-endian test objects and libxdp's objects."""
    return sorted(glob.glob(CILIUM + "/testdata/*-el.elf") + glob.glob(LIBXDP + "/*.o"))


def build_objects(directory: str) -> dict:
    """Compile every ``objfile_c/*.bpf.c`` into ``directory``; {stem: path}."""
    header = os.path.join(directory, "vmlinux.h")
    with open(header, "w") as out:
        subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format",
                        "c"], stdout=out, check=True)
    built = {}
    for source in sorted(glob.glob(os.path.join(C_DIR, "*.bpf.c"))):
        stem = os.path.basename(source)[:-len(".bpf.c")]
        target = os.path.join(directory, stem + ".bpf.o")
        subprocess.run(["clang-19", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                        "-I", directory, "-c", source, "-o", target], check=True)
        built[stem] = target
    return built


@pytest.fixture(scope="session")
def clang_objects(tmp_path_factory):
    return build_objects(str(tmp_path_factory.mktemp("objfile")))


BPFFS = "/sys/fs/bpf"

_MAP_ID = re.compile(r"map\[id:\d+\]")


def xlated(prog_id: int) -> str:
    """The kernel's instructions with the C lines line_info gives, map ids
    left out."""
    text = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog_id)],
                          capture_output=True, text=True, check=True).stdout
    return _MAP_ID.sub("map[id:N]", text)


def _by_name_pins(path: str):
    """The pins libbpf makes for maps declared with LIBBPF_PIN_BY_NAME."""
    try:
        maps = BPFObject(path).maps
    except PyBPFError:
        return []
    return [os.path.join(BPFFS, m.name) for m in maps if m.pinning == LIBBPF_PIN_BY_NAME]


@contextlib.contextmanager
def by_name_pins_removed(path: str):
    """Remove the maps ``path`` pins by name (those not there before) on exit."""
    ours = [pin for pin in _by_name_pins(path) if not os.path.exists(pin)]
    try:
        yield
    finally:
        for pin in ours:
            if os.path.exists(pin):
                os.unlink(pin)


def bpftool_loadall(path: str):
    """{program name: xlated} as libbpf loads ``path``, or None if it refuses.
    The pins (and maps pinned by name) are removed before returning, which
    unloads everything."""
    pin_dir = BPFFS + "/pybpf_test_%s" % uuid.uuid4().hex[:12]
    with by_name_pins_removed(path):
        return _bpftool_pinned(path, pin_dir)


def _bpftool_pinned(path: str, pin_dir: str):
    try:
        done = subprocess.run(["bpftool", "prog", "loadall", path, pin_dir],
                              capture_output=True, text=True)
        if done.returncode:
            return None
        out = {}
        for pin in sorted(os.listdir(pin_dir)) if os.path.isdir(pin_dir) else ():
            info = json.loads(subprocess.run(
                ["bpftool", "-j", "prog", "show", "pinned", os.path.join(pin_dir, pin)],
                capture_output=True, text=True, check=True).stdout)
            out[pin] = xlated(info["id"])
        return out
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)
