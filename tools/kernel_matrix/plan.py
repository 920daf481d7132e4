"""What the kernel matrix runs and where: the test files, the kernel series
and the labels the command line accepts.

One place says which tests differ between kernels and which kernels we care
about, so that adding a test file or a series is a one-line change here and
nowhere else; how a series is found and booted is ``setup.py``'s and
``run.py``'s business.
"""

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

#: What differs between kernels: feature probes, map types, program loading,
#: tracepoint attach, perf and ring buffer readers, BTF parsing and struct walks,
#: object enumeration. Files that do not exist (yet) are left out with a note.
MATRIX_TESTS: Tuple[str, ...] = (
    "tests/kernel/test_features.py",        # feature probes
    "tests/kernel/test_maps.py",            # map types and operations
    "tests/kernel/test_prog.py",            # program loading, verifier logs, test runs
    "tests/kernel/test_objects.py",         # object enumeration and info structs
    "tests/kernel/test_btf_vmlinux.py",     # the BTF parser against bpftool
    "tests/kernel/test_btf_load.py",        # BTF we write, loaded
    "tests/kernel/test_btf_dsl.py",         # struct walks: fd -> path through BTF offsets
    "tests/kernel/test_dsl_kernel.py",      # DSL code through this kernel's verifier
    "tests/kernel/test_programs.py",        # our programs, loaded and attached
    "tests/kernel/test_net_testrun.py",     # XDP/tc programs on crafted packets
    "tests/kernel/test_tracepoint.py",      # tracepoint attach: link or ioctl
    "tests/kernel/test_perf_reader.py",     # perf buffer reader
    "tests/kernel/test_ringbuf_reader.py",  # ring buffer reader
    "tests/kernel/test_privileges.py",      # the unprivileged hint
    # sniffwrites end to end against strace: symlinks, fds opened before the monitor
    "tests/e2e/test_sniffwrites_strace.py",
)
# Left out for the time budget (an emulated guest runs Python ~14x slower):
# tests/e2e/test_sniffwrites_cli.py (~16 s here, ~4 min in a guest), and
# tests/kernel/test_net_e2e.py (veth pairs in network namespaces).

#: The label of the column that runs on this machine's own kernel.
HOST = "host"


@dataclass(frozen=True)
class Series:
    """One kernel series, found in the package registry by name. ``suite``
    names a Debian release other than the host's: its package lists are
    fetched into a private apt state under the cache (the host's apt
    configuration is never changed)."""
    label: str
    search: str       # apt-cache search --names-only pattern
    exact: str        # the package names we accept (signed, generic flavour)
    suite: str = ""   # "" : the host's apt sources

    def matches(self, name: str) -> Optional[Tuple[int, ...]]:
        """A sort key (the numbers in the name) when ``name`` is ours, else None."""
        found = re.match(self.exact, name)
        return tuple(int(n) for n in found.groups()) if found else None


SERIES: Dict[str, Series] = {
    # Debian 11 (LTS): no perf-event BPF links (5.15) and no bpf_loop (5.17), so
    # the fallbacks (ioctl attach, bounded loops) run for real.
    "5.10": Series("5.10", r"^linux-image-5\.10\.0-[0-9]+-amd64$",
                   r"^linux-image-5\.10\.0-([0-9]+)-amd64$", suite="bullseye"),
    "6.1": Series("6.1", r"^linux-image-6\.1\.0-[0-9]+-amd64$",
                  r"^linux-image-6\.1\.0-([0-9]+)-amd64$"),
    "6.12": Series("6.12", r"^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64$",
                   r"^linux-image-6\.12\.([0-9]+)\+deb([0-9]+)-amd64$"),
}

KERNEL_CHOICES = (HOST,) + tuple(SERIES) + ("all",)


def kernel_labels(chosen: Optional[Sequence[str]]) -> List[str]:
    if not chosen or "all" in chosen:
        return [HOST] + list(SERIES)
    return [label for label in KERNEL_CHOICES if label in chosen]
