"""The ELF loader's test corpus: objects clang-19 builds from
``objfile_c/*.bpf.c`` against a ``vmlinux.h`` that bpftool writes from this
kernel's BTF (libbpf-bootstrap style), cilium/ebpf's ``testdata/*.elf`` and
libxdp's objects (all installed by tools/setup_test_host.sh)."""

import glob
import os
import subprocess

import pytest

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
