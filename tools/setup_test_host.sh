#!/usr/bin/env bash
# Install what the test suite needs on a fresh host of this kind (run as root):
# the oracles (LLVM 19 for v4 instructions, clang, bpftool, strace), the
# tools the network and benchmark tests drive (iproute2, ping, bpftrace), and the
# package with its test extra.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v llvm-mc-19 >/dev/null || need+=(llvm-19)
command -v bpftool >/dev/null || need+=(bpftool)
command -v strace >/dev/null || need+=(strace)
command -v setpriv >/dev/null || need+=(util-linux)
command -v clang >/dev/null || need+=(clang)
command -v objdump >/dev/null || need+=(binutils)
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v bpftrace >/dev/null || need+=(bpftrace)
# the ELF loader's oracle corpus: clang-19 and libbpf headers build objects in the tests,
# cilium/ebpf's testdata/*.elf and libxdp's objects are loaded as they ship
command -v clang-19 >/dev/null || need+=(clang-19)
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -d /usr/share/gocode/src/github.com/cilium/ebpf/testdata ] || need+=(golang-github-cilium-ebpf-dev)
[ -d /usr/lib/x86_64-linux-gnu/bpf ] || need+=(libxdp1)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
