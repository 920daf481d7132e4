#!/usr/bin/env python3
"""Run the kernel-dependent part of the test suite on other kernels.

Minimal hosts run LTS kernels. This boots Debian's generic 5.10, 6.1 and 6.12
kernels (from the package registry) with virtme-ng under QEMU emulation, runs
:data:`MATRIX_TESTS` inside each with ``CI=true`` (a skip is a failure), runs
the same tests on the host kernel as one more column, collects one JUnit file
per kernel and prints a table of results and one of feature-probe answers::

    sudo python3 tools/kernel_matrix.py                  # host, 5.10, 6.1, 6.12
    sudo python3 tools/kernel_matrix.py --kernel 6.1 --tests tests/kernel/test_maps.py
    sudo python3 tools/kernel_matrix.py --setup-only     # just prepare the cache
    sudo python3 tools/kernel_matrix.py --kernel host --kernel 6.1 --kernel 6.12 \
        --budget 840 --timeout 330 --retries 1 --junit-dir build/kernel-matrix \
        --markdown build/kernel-matrix/matrix.md         # what .ci/run runs

Setup is idempotent and cached in ``--cache`` (default
``/var/lib/pybpf-matrix``, outside the repository):

- host packages ``qemu-system-x86 kmod udev busybox-static file``, installed
  with apt only when missing (udev is only installed, never started; virtme-ng
  needs busybox to build the initramfs that loads 9p, which Debian builds as
  modules, and ``file`` to read the kernel's version);
- virtme-ng from PyPI, pinned (:data:`VIRTME_NG`), in a venv at ``CACHE/venv``
  (a venv, not ``--user``: it never touches the interpreter the tests run with);
- per kernel series the newest signed ``linux-image-*-amd64`` package with an
  install candidate, fetched with ``apt-get download`` and unpacked with
  ``dpkg-deb -x`` into ``CACHE/kernels/PACKAGE`` (never installed into /boot),
  ``depmod`` run on the unpacked tree. The signed package carries the bootable
  ``vmlinuz`` and all modules (Debian publishes no ``-unsigned`` variant for
  some ABIs); the ``-cloud`` flavour lacks 9p and cannot boot this way. 6.1
  and 6.12 come from the host's own apt sources (bookworm); 5.10 from
  bullseye, through a private apt state in ``CACHE/apt-bullseye`` (the host's
  apt configuration is not touched). Once a series is unpacked it is reused
  without network access; ``--refresh`` looks for a newer package.

The cache must not live under ``/var/cache``, ``/var/tmp``, ``/var/log`` or
``/run``: virtme-ng mounts tmpfs there in the guest, which would hide it.

Each guest boots with ``--disable-kvm`` (this machine's ``/dev/kvm`` is a
paravirtual variant Debian kernels cannot run on), 2 CPUs and 2 GiB, the host
root shared read-only and ``CACHE/runs/LABEL`` as the one writable directory:
it holds a copy of the repository (byte-compiled on the host; the tests run
there, with ``PYTHONPATH`` pointing at it) and the results (``out/junit.xml``,
``out/progress.jsonl``, ``out/meta.json``, ``out/features.json``,
``out/pytest.log``, ``console.log``). Inside, the host's own interpreter runs
``tools/kernel_matrix/guest_run.py`` by full path, with ``TMPDIR`` on a tmpfs
of its own (no test bounds its own run time: timings live in tools/bench.py,
so the ~14x slower emulation changes no outcome). Each test has
``--test-timeout`` seconds, each kernel ``--timeout`` (a killed run still
reports the tests it finished and the one it was running, from the progress
log, and the guest kernel's console is in ``console.log``), setup and all
kernels together ``--budget``. ``--retries`` runs a kernel again when it
timed out with nothing failed (an emulated guest can hang); failing tests
are never run again. Nothing kernel-specific is decided here: the tests
decide with feature probes and BTF, as the library does.

Exit status: 0 when every selected kernel ran every test and none failed; 1
when a test failed or a kernel produced no results; 2 on a setup error.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPPORT = os.path.join("tools", "kernel_matrix")
GUEST_RUNNER = os.path.join(SUPPORT, "guest_run.py")

# --- what runs in each kernel (the one place that says so) ---------------------------------

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

#: Features shown in the second table (names as pybpf.kernel.features has them).
FEATURE_ROWS: Tuple[Tuple[str, str], ...] = (
    ("other", "btf"), ("other", "btf_enum64"), ("other", "bounded_loops"), ("other", "bpf_probe_read_kernel"),
    ("other", "ringbuf"), ("other", "bpf_loop"), ("other", "enable_stats"),
    ("other", "atomic_fetch"), ("other", "cpu_v4"),
    ("link_types", "BPF_LINK_TYPE_PERF_EVENT"), ("link_types", "BPF_LINK_TYPE_RAW_TRACEPOINT"),
    ("link_types", "BPF_LINK_TYPE_XDP"), ("link_types", "BPF_LINK_TYPE_TCX"),
    ("link_types", "BPF_LINK_TYPE_NETKIT"),
    ("prog_types", "BPF_PROG_TYPE_TRACING"), ("prog_types", "BPF_PROG_TYPE_SYSCALL"),
    ("prog_types", "BPF_PROG_TYPE_NETFILTER"),
    ("map_types", "BPF_MAP_TYPE_BLOOM_FILTER"), ("map_types", "BPF_MAP_TYPE_USER_RINGBUF"),
    ("map_types", "BPF_MAP_TYPE_CGRP_STORAGE"), ("map_types", "BPF_MAP_TYPE_ARENA"),
)

# --- kernels ----------------------------------------------------------------------------------

HOST = "host"
VIRTME_NG = "virtme-ng==1.42"
HOST_PACKAGES = ("qemu-system-x86", "kmod", "udev", "busybox-static", "file")
DEFAULT_CACHE = "/var/lib/pybpf-matrix"
# virtme-ng mounts tmpfs over these in the guest: a cache below them is invisible there.
GUEST_MASKED = ("/var/cache", "/var/tmp", "/var/log", "/var/lib/apt", "/var/lib/private",
                "/run", "/dev", "/proc", "/sys")


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
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITE_SOURCES = "".join("deb [signed-by=%s] http://deb.debian.org/%s {suite}%s main\n"
                        % (KEYRING, archive, suffix)
                        for archive, suffix in (("debian", ""), ("debian-security", "-security")))

KERNEL_CHOICES = (HOST,) + tuple(SERIES) + ("all",)


class SetupError(RuntimeError):
    pass


def parse_search(output: str) -> List[str]:
    """Package names from ``apt-cache search`` output (``name - description``)."""
    return [line.split(" - ", 1)[0].strip() for line in output.splitlines()
            if " - " in line and line.strip()]


def parse_policy(output: str) -> Dict[str, Optional[str]]:
    """``{package: candidate version or None}`` from ``apt-cache policy A B ...``."""
    result: Dict[str, Optional[str]] = {}
    current = None
    for line in output.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1]
            result[current] = None
        elif current is not None and line.strip().startswith("Candidate:"):
            value = line.split(":", 1)[1].strip()
            result[current] = None if value in ("", "(none)") else value
    return result


def select_package(series: Series, names: Iterable[str],
                   candidates: Optional[Dict[str, Optional[str]]] = None) -> Optional[str]:
    """The newest of ``names`` that belongs to ``series`` (signed generic
    flavour: no -cloud, -rt, -dbg, -unsigned) and, when ``candidates`` is
    given, has an install candidate (apt-cache search also lists names
    that only old package lists mention)."""
    best: Optional[Tuple[Tuple[int, ...], str]] = None
    for name in names:
        key = series.matches(name)
        if key is None:
            continue
        if candidates is not None and not candidates.get(name):
            continue
        if best is None or key > best[0]:
            best = (key, name)
    return best[1] if best else None


# --- running commands -----------------------------------------------------------------------

def log(message: str) -> None:
    print("kernel-matrix: %s" % message, file=sys.stderr, flush=True)


def run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("text", True)
    try:
        return subprocess.run(list(cmd), **kwargs)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()[-5:]
        raise SetupError("%s failed (exit %d)%s" % (" ".join(cmd), exc.returncode,
                                                   (": " + " | ".join(detail)) if detail else ""))
    except FileNotFoundError as exc:
        raise SetupError("%s: %s" % (cmd[0], exc))


def check_cache_dir(cache: str) -> str:
    cache = os.path.abspath(cache)
    repo = os.path.realpath(REPO)
    real = os.path.realpath(cache)
    if real == repo or real.startswith(repo + os.sep):
        raise SetupError("the cache %s must be outside the repository" % cache)
    for masked in GUEST_MASKED:
        if real == masked or real.startswith(masked + os.sep):
            raise SetupError("the cache %s is under %s, which virtme-ng hides inside the guest "
                             "(tmpfs); choose e.g. %s" % (cache, masked, DEFAULT_CACHE))
    return cache


# --- setup ----------------------------------------------------------------------------------

class Setup:
    """Prepares (idempotently) what booting the kernels needs, in ``cache``."""

    def __init__(self, cache: str, refresh: bool = False):
        self.cache = cache
        self.refresh = refresh
        self.venv = os.path.join(cache, "venv")
        self.kernels = os.path.join(cache, "kernels")
        self.debs = os.path.join(cache, "debs")
        self._apt_updated: Dict[str, bool] = {}

    # host packages
    @staticmethod
    def missing_packages(packages: Sequence[str] = HOST_PACKAGES) -> List[str]:
        missing = []
        for package in packages:
            done = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", package],
                                  capture_output=True, text=True)
            if done.returncode != 0 or done.stdout.strip() != "installed":
                missing.append(package)
        return missing

    def apt_options(self, suite: str = "") -> List[str]:
        """apt options for ``suite``: none for the host's sources, else a
        private sources list, package lists and archive cache in CACHE/apt-SUITE."""
        if not suite:
            return []
        base = os.path.join(self.cache, "apt-" + suite)
        for sub in ("lists/partial", "archives/partial", "sources.list.d", "preferences.d"):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        sources = os.path.join(base, "sources.list")
        text = SUITE_SOURCES.format(suite=suite)
        if not os.path.exists(sources) or open(sources).read() != text:
            with open(sources, "w") as f:
                f.write(text)
        return ["-o", "Dir::Etc::SourceList=" + sources,
                "-o", "Dir::Etc::SourceParts=" + os.path.join(base, "sources.list.d"),
                "-o", "Dir::Etc::PreferencesParts=" + os.path.join(base, "preferences.d"),
                "-o", "Dir::State::Lists=" + os.path.join(base, "lists"),
                "-o", "Dir::Cache=" + base, "-o", "Dir::Cache::Archives=" + os.path.join(
                    base, "archives")]

    def apt_update(self, suite: str = "") -> None:
        if not self._apt_updated.get(suite):
            log("apt-get update%s" % (" (%s)" % suite if suite else ""))
            run(["apt-get"] + self.apt_options(suite) + ["update", "-qq"], capture_output=True)
            self._apt_updated[suite] = True

    def host_packages(self) -> None:
        missing = self.missing_packages()
        if not missing:
            return
        if os.geteuid() != 0:
            raise SetupError("missing host packages %s; run as root to install them"
                             % " ".join(missing))
        self.apt_update()
        log("installing %s" % " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
            capture_output=True, env=env)

    # virtme-ng
    @property
    def vng(self) -> str:
        return os.path.join(self.venv, "bin", "vng")

    def virtme_ng(self) -> None:
        wanted = VIRTME_NG.split("==")[-1]
        if os.path.exists(self.vng):
            done = subprocess.run([self.vng, "--version"], capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.split()[-1:] == [wanted]:
                return
        if not os.path.exists(os.path.join(self.venv, "bin", "python")):
            log("creating venv %s" % self.venv)
            run([sys.executable, "-m", "venv", self.venv], capture_output=True)
        log("pip install %s into %s" % (VIRTME_NG, self.venv))
        run([os.path.join(self.venv, "bin", "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", VIRTME_NG], capture_output=True)

    # kernels
    def _pointer(self, label: str) -> str:
        return os.path.join(self.kernels, "%s.json" % label)

    def cached_kernel(self, label: str) -> Optional[Dict[str, str]]:
        try:
            with open(self._pointer(label)) as f:
                info = json.load(f)
        except (OSError, ValueError):
            return None
        if os.path.exists(info.get("vmlinuz", "")) and os.path.isdir(info.get("moddir", "")):
            return info
        return None

    def find_package(self, series: Series) -> Tuple[str, str]:
        """(name, candidate version) of the newest package of ``series``."""
        options = self.apt_options(series.suite)
        for attempt in range(2):
            out = run(["apt-cache"] + options + ["search", "--names-only", series.search],
                      capture_output=True).stdout
            names = [n for n in parse_search(out) if series.matches(n)]
            candidates = parse_policy(run(["apt-cache"] + options + ["policy"] + names,
                                          capture_output=True).stdout) if names else {}
            name = select_package(series, names, candidates)
            if name:
                return name, candidates[name] or ""
            if attempt == 0:
                self.apt_update(series.suite)
        raise SetupError("no package matching %s has an install candidate (apt sources: %s)"
                         % (series.search, series.suite or "the host's"))

    def kernel(self, series: Series) -> Dict[str, str]:
        cached = self.cached_kernel(series.label)
        if cached and not self.refresh:
            return cached
        if self.refresh:
            self.apt_update(series.suite)
        name, version = self.find_package(series)
        if cached and cached.get("package") == name and cached.get("version") == version:
            return cached
        os.makedirs(self.debs, exist_ok=True)
        debs = [f for f in os.listdir(self.debs) if f.startswith(name + "_")
                and f.endswith(".deb") and _deb_version(f) == version]
        if not debs:
            log("apt-get download %s (%s)" % (name, version))
            run(["apt-get", "-o", "APT::Sandbox::User=root"] + self.apt_options(series.suite)
                + ["download", "%s=%s" % (name, version)], cwd=self.debs, capture_output=True)
            debs = [f for f in os.listdir(self.debs) if f.startswith(name + "_")
                    and f.endswith(".deb") and _deb_version(f) == version]
            if not debs:
                raise SetupError("apt-get download %s left no .deb in %s" % (name, self.debs))
        deb = os.path.join(self.debs, debs[0])
        root = os.path.join(self.kernels, name)
        info = self._unpack(deb, root)
        info.update(package=name, version=version, series=series.label)
        tmp = self._pointer(series.label) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        os.replace(tmp, self._pointer(series.label))
        self._prune(series, keep_package=name, keep_deb=debs[0])
        return info

    def _unpack(self, deb: str, root: str) -> Dict[str, str]:
        if os.path.isdir(root):
            shutil.rmtree(root)
        tmp = root + ".partial"
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        log("dpkg-deb -x %s" % os.path.basename(deb))
        run(["dpkg-deb", "-x", deb, tmp], capture_output=True)
        boot = os.path.join(tmp, "boot")
        images = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-")) \
            if os.path.isdir(boot) else []
        if not images:
            raise SetupError("%s has no boot/vmlinuz-*" % os.path.basename(deb))
        kver = images[0][len("vmlinuz-"):]
        if not os.path.isdir(os.path.join(tmp, "lib", "modules", kver)):
            raise SetupError("%s has no lib/modules/%s" % (os.path.basename(deb), kver))
        run(["depmod", "-a", "-b", tmp, kver], capture_output=True)
        os.rename(tmp, root)
        return {"vmlinuz": os.path.join(root, "boot", images[0]), "kver": kver,
                "moddir": os.path.join(root, "lib", "modules", kver)}

    def _prune(self, series: Series, keep_package: str, keep_deb: str) -> None:
        """Drop older packages of the same series from the cache."""
        for entry in os.listdir(self.kernels):
            if series.matches(entry) and entry != keep_package:
                shutil.rmtree(os.path.join(self.kernels, entry), ignore_errors=True)
        for entry in os.listdir(self.debs):
            if series.matches(entry.split("_")[0]) and entry != keep_deb:
                os.unlink(os.path.join(self.debs, entry))

    def all(self, labels: Sequence[str]) -> Dict[str, Dict[str, str]]:
        os.makedirs(self.cache, exist_ok=True)
        kernels = {}
        guests = [label for label in labels if label in SERIES]
        if guests:
            self.host_packages()
            self.virtme_ng()
        for label in guests:
            kernels[label] = self.kernel(SERIES[label])
        return kernels


def _deb_version(filename: str) -> str:
    """``linux-image-X_6.1.192-2_amd64.deb`` -> ``6.1.192-2`` (apt-get download
    writes an epoch's ``:`` as ``%3a``)."""
    parts = filename[:-len(".deb")].split("_")
    return parts[1].replace("%3a", ":") if len(parts) == 3 else ""


# --- results --------------------------------------------------------------------------------

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
_OUTCOMES = {"failure": FAILED, "error": ERROR, "skipped": SKIPPED}   # JUnit tag -> outcome


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    outcome: str
    message: str = ""
    seconds: float = 0.0

    @property
    def nodeid(self) -> str:
        return "%s::%s" % (self.file, self.name)


@dataclass
class KernelRun:
    """What one kernel's run gave: its cases, or why there are none."""
    label: str
    release: str = ""
    cases: List[Case] = field(default_factory=list)
    problem: str = ""             # no results at all: boot failure, timeout, crash
    boot_seconds: Optional[float] = None
    test_seconds: Optional[float] = None
    wall_seconds: Optional[float] = None
    features: Dict[str, object] = field(default_factory=dict)
    timed_out: bool = False       # killed by --timeout (a hung guest, or a slow one)
    earlier: List[str] = field(default_factory=list)   # why earlier attempts were retried

    def counts(self, file: Optional[str] = None) -> Dict[str, int]:
        counts = {PASSED: 0, FAILED: 0, ERROR: 0, SKIPPED: 0}
        for case in self.cases:
            if file is None or case.file == file:
                counts[case.outcome] += 1
        return counts

    @property
    def ok(self) -> bool:
        c = self.counts()
        return not self.problem and c[PASSED] > 0 and c[FAILED] + c[ERROR] + c[SKIPPED] == 0


def _classname_to_file(classname: str) -> str:
    """``tests.kernel.test_maps.TestX`` -> ``tests/kernel/test_maps.py`` (best effort)."""
    parts = classname.split(".")
    while parts and parts[-1][:1].isupper():
        parts.pop()
    return "/".join(parts) + ".py" if parts else classname


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_junit(text: str) -> List[Case]:
    """The cases of a pytest JUnit report (xunit1 or xunit2, one or many suites)."""
    root = ET.fromstring(text)
    cases = []
    for tc in root.iter("testcase"):
        file = tc.get("file") or _classname_to_file(tc.get("classname", ""))
        name = tc.get("name", "")
        classname = tc.get("classname", "")
        # a test inside a class: keep the class in the name, as in a node id
        tail = classname.split(".")[-1] if classname else ""
        if tail[:1].isupper() and not file.endswith(tail + ".py"):
            name = "%s::%s" % (tail, name)
        outcome, message = PASSED, ""
        for child in tc:
            if child.tag in _OUTCOMES:
                outcome = _OUTCOMES[child.tag]
                message = child.get("message") or _first_line(child.text or "")
                if outcome != SKIPPED:
                    break
        try:
            seconds = float(tc.get("time", "0") or 0)
        except ValueError:
            seconds = 0.0
        cases.append(Case(file, name, outcome, message, seconds))
    return cases


def parse_progress(text: str) -> Tuple[List[Case], str]:
    """Cases from ``progress.jsonl`` (see tools/kernel_matrix/matrix_timeout.py)
    and the node id of a test that started but never reported its end."""
    phases: Dict[str, Dict[str, dict]] = {}
    started: List[str] = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue          # a line cut by the kill
        if "start" in record:
            started.append(record["start"])
        elif "nodeid" in record:
            phases.setdefault(record["nodeid"], {})[record.get("when", "call")] = record
    cases = []
    for nodeid, by_phase in phases.items():
        outcome, message, seconds = PASSED, "", 0.0
        for when in ("setup", "call", "teardown"):
            record = by_phase.get(when)
            if record is None:
                continue
            seconds += float(record.get("duration", 0) or 0)
            if record.get("outcome") == "failed":
                outcome = FAILED if when == "call" else ERROR
                message = record.get("message", "")
                break
            if record.get("outcome") == "skipped":
                outcome, message = SKIPPED, record.get("message", "")
        file, _, name = nodeid.partition("::")
        cases.append(Case(file, name, outcome, message, seconds))
    unfinished = [nodeid for nodeid in started if "teardown" not in phases.get(nodeid, {})]
    return cases, (unfinished[-1] if unfinished else "")


def load_run(label: str, out: str) -> KernelRun:
    """A KernelRun from a run's output directory (junit.xml, meta.json, features.json)."""
    result = KernelRun(label)
    meta: Dict[str, object] = {}
    try:
        with open(os.path.join(out, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        pass
    result.release = str(meta.get("release", ""))
    if isinstance(meta.get("pytest_seconds"), (int, float)):
        result.test_seconds = float(meta["pytest_seconds"])  # type: ignore[arg-type]
    try:
        with open(os.path.join(out, "features.json")) as f:
            result.features = json.load(f)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(out, "junit.xml")) as f:
            result.cases = parse_junit(f.read())
    except OSError:
        result.problem = "no JUnit report (the VM did not boot, or the run was killed)"
    except ET.ParseError as exc:
        result.problem = "unreadable JUnit report: %s" % exc
    if not result.problem and not result.cases:
        result.problem = "the JUnit report has no test cases (collection failed?)"
    return result


# --- tables ---------------------------------------------------------------------------------

def cell(counts: Dict[str, int]) -> str:
    """``12 passed`` / ``10 passed, 2 failed`` / ``-`` for nothing run."""
    parts = ["%d %s" % (counts[k], k) for k in (PASSED, FAILED, ERROR, SKIPPED) if counts.get(k)]
    return ", ".join(parts) if parts else "-"


def _column_title(run_: KernelRun) -> str:
    return run_.label if not run_.release else "%s (%s)" % (run_.label, run_.release)


def table_rows(runs: Sequence[KernelRun]) -> Tuple[List[str], List[List[str]]]:
    """Header and rows of the results table: one row per test file, one column per kernel."""
    files: List[str] = []
    for r in runs:
        for case in r.cases:
            if case.file not in files:
                files.append(case.file)
    header = ["tests"] + [_column_title(r) for r in runs]
    rows = []
    for file in files:
        rows.append([file] + [_cell(r, file) for r in runs])
    rows.append(["total"] + [_total(r) for r in runs])
    rows.append(["time (boot + tests)"] + [_times(r) for r in runs])
    return header, rows


def _cell(r: KernelRun, file: str) -> str:
    counts = r.counts(file)
    if not r.problem:
        return cell(counts)
    if not r.cases:
        return "no results"
    return cell(counts) + " (partial)" if any(counts.values()) else "not run"


def _total(r: KernelRun) -> str:
    if not r.problem:
        return cell(r.counts())
    # the whole story is under "Failures:"; the cell keeps the table narrow
    return "%s; %s" % (cell(r.counts()), r.problem.split(" while ")[0]) if r.cases else r.problem


def _times(r: KernelRun) -> str:
    parts = []
    if r.boot_seconds is not None:
        parts.append("boot %.0f s" % r.boot_seconds)
    if r.test_seconds is not None:
        parts.append("tests %.0f s" % r.test_seconds)
    return ", ".join(parts) or "-"


def feature_rows(runs: Sequence[KernelRun]) -> Tuple[List[str], List[List[str]]]:
    header = ["feature"] + [_column_title(r) for r in runs]
    rows = []
    for group, name in FEATURE_ROWS:
        row = [name]
        for r in runs:
            answer = r.features.get(group, {}).get(name) if isinstance(r.features, dict) else None
            row.append("?" if not isinstance(answer, dict) else
                       ("yes" if answer.get("available") else "no"))
        rows.append(row)
    return header, rows


def render_text(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(values: List[str]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(values, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_markdown(header: List[str], rows: List[List[str]]) -> str:
    def esc(value: str) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def failures(runs: Sequence[KernelRun]) -> List[str]:
    out = []
    for r in runs:
        if r.problem:
            out.append("%s: %s" % (r.label, r.problem))
        for case in r.cases:
            if case.outcome != PASSED:
                out.append("%s: %s %s: %s" % (r.label, case.outcome.upper(), case.nodeid,
                                              case.message[:300]))
    return out


def retried(runs: Sequence[KernelRun]) -> List[str]:
    """Why kernels were run again: their earlier attempts timed out."""
    return ["%s: attempt %d %s" % (r.label, attempt, why)
            for r in runs for attempt, why in enumerate(r.earlier, 1)]


def report(runs: Sequence[KernelRun], markdown: bool = False) -> str:
    render = render_markdown if markdown else render_text
    parts = [render(*table_rows(runs))]
    if any(r.features for r in runs):
        parts.append(render(*feature_rows(runs)))
    for title, lines in (("Failures", failures(runs)), ("Run again (--retries)", retried(runs))):
        if lines:
            parts.append(title + (":\n\n" if markdown else ":\n")
                         + "\n".join(("- " if markdown else "  ") + line for line in lines))
    return "\n\n".join(parts) + "\n"


# --- running the tests ----------------------------------------------------------------------

def existing_tests(tests: Sequence[str], repo: str = REPO) -> List[str]:
    keep = []
    for test in tests:
        if os.path.exists(os.path.join(repo, test.split("::")[0])):
            keep.append(test)
        else:
            log("leaving out %s: not in the repository (yet)" % test)
    return keep


def copy_repo(dest: str, repo: str = REPO) -> None:
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    shutil.copytree(repo, dest, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", ".benchmarks",
        "*.egg-info", "build", "dist"))
    _link_package_dirs(dest)
    # Byte-compile on the host: the emulated guest would otherwise compile
    # every module itself, which costs more than the tests.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", dest],
                   stdout=subprocess.DEVNULL, check=False)


def package_dirs(pyproject: str) -> Dict[str, str]:
    """``[tool.setuptools.package-dir]`` of a pyproject.toml: package -> directory
    (``{"pybpf.programs": "programs"}``). A tiny reader: Python 3.9 has no tomllib."""
    found: Dict[str, str] = {}
    section = False
    for line in pyproject.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped == "[tool.setuptools.package-dir]"
        elif section:
            pair = re.match(r'^"([\w.]*)"\s*=\s*"([^"]+)"', stripped)
            if pair and pair.group(1):
                found[pair.group(1)] = pair.group(2)
    return found


def _link_package_dirs(copy: str) -> None:
    """Make the copy importable from PYTHONPATH as installed: packages that
    pyproject maps to another directory (pybpf.programs -> programs/) get a
    symlink in their place. Without it, ``import pybpf.programs`` would go
    to the editable install's finder, i.e. the original checkout."""
    try:
        with open(os.path.join(copy, "pyproject.toml")) as f:
            mapping = package_dirs(f.read())
    except OSError:
        return
    for package, directory in mapping.items():
        where = os.path.join(copy, *package.split("."))
        target = os.path.join(copy, directory)
        if os.path.isdir(target) and not os.path.lexists(where) and \
                os.path.isdir(os.path.dirname(where)):
            os.symlink(os.path.relpath(target, os.path.dirname(where)), where)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # the group we started: vng and its QEMU
    except ProcessLookupError:
        pass


def run_kernel(label: str, cache: str, tests: Sequence[str], *, test_timeout: float,
               timeout: float, vng: str = "", vmlinuz: str = "", memory: str = "2G",
               cpus: int = 2, features: bool = True, repo: str = REPO) -> KernelRun:
    """Run ``tests`` on one kernel (``host``, or a guest booted from ``vmlinuz``)
    in ``CACHE/runs/LABEL``; return what the run left there."""
    work = os.path.join(cache, "runs", label)
    repo_copy, out = os.path.join(work, "repo"), os.path.join(work, "out")
    os.makedirs(work, exist_ok=True)
    copy_repo(repo_copy, repo)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    runner = [sys.executable, os.path.join(repo_copy, GUEST_RUNNER), "--out", out,
              "--test-timeout", str(test_timeout)]
    if label != HOST:
        # The rwdir is 9p; the guest's /tmp is an overlay of tmpfs on 9p, where
        # st_dev of a file is not its superblock's s_dev: a tmpfs of its own
        # (not /dev/shm, which some tests watch as a separate mount).
        runner += ["--tmp", "/tmp/pybpf-matrix", "--mount-tmpfs"]
    runner += (["--features"] if features else []) + ["--"] + list(tests)
    env = dict(os.environ)
    if label == HOST:
        cmd = runner
    else:
        env["PATH"] = os.path.dirname(vng) + os.pathsep + env.get("PATH", "")
        guest_cmd = "cd %s && exec %s" % (shlex.quote(repo_copy), shlex.join(runner))
        # --verbose: the guest kernel's console goes to console.log too, so a
        # guest that hangs still says why (lockups, RCU stalls, oopses)
        cmd = [vng, "--run", vmlinuz, "--disable-kvm", "--user", "root", "--cpus", str(cpus),
               "--memory", memory, "--rwdir", work, "--cwd", repo_copy, "--verbose",
               "--exec", guest_cmd]
    log("%s: %s" % (label, "running on the host" if label == HOST else "booting %s" % vmlinuz))
    started = time.time()
    console = os.path.join(work, "console.log")
    problem = ""
    killed = False
    with open(console, "w") as console_file:
        proc = subprocess.Popen(cmd, cwd=repo_copy, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                errors="replace", start_new_session=True)
        try:
            assert proc.stdout is not None
            deadline = started + timeout
            for line in _lines_until(proc, deadline):
                console_file.write(line)
                console_file.flush()
            try:
                proc.wait(timeout=max(0.0, deadline - time.time()) + 1)
            except subprocess.TimeoutExpired:
                problem = "timed out after %.0f s (--timeout)" % timeout
                killed = True
                _kill_group(proc)
                proc.wait()
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
    wall = time.time() - started
    result = load_run(label, out)
    result.timed_out = killed
    if killed:
        # pytest writes JUnit only at its end: take what the progress log has
        try:
            with open(os.path.join(out, "progress.jsonl")) as f:
                result.cases, running = parse_progress(f.read())
        except OSError:
            result.cases, running = [], ""
        result.problem = problem + (" while running %s" % running if running else
                                    " before the tests started" if not result.cases else "")
    elif result.problem:
        result.problem += "; see %s" % console
    result.wall_seconds = wall
    try:
        with open(os.path.join(out, "meta.json")) as f:
            meta = json.load(f)
        if label != HOST and meta.get("uptime_at_start", -1) >= 0:
            # boot = everything before the runner started: vng's preparation,
            # QEMU, the kernel, virtme's init (uptime counts from the kernel's start)
            result.boot_seconds = wall - (meta.get("total_seconds") or 0)
    except (OSError, ValueError):
        pass
    log("%s: done in %.0f s: %s" % (label, wall, result.problem or cell(result.counts())))
    return result


def _lines_until(proc: subprocess.Popen, deadline: float):
    """Lines of ``proc``'s output until it ends or ``deadline`` passes."""
    import selectors
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    fd = proc.stdout.fileno()
    pending = b""
    while True:
        left = deadline - time.time()
        if left <= 0:
            break
        if not sel.select(timeout=min(left, 5)):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace") + "\n"
    if pending:
        yield pending.decode("utf-8", "replace")
    sel.close()


# --- command line ---------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the kernel-dependent tests on the host kernel and on Debian's 6.1 "
                    "and 6.12 kernels in virtme-ng VMs; print a table of the results.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--kernel", action="append", choices=KERNEL_CHOICES,
                        help="kernel to run on; repeat for several (default: all)")
    parser.add_argument("--tests", nargs="+", metavar="PATH",
                        help="test files or node ids (default: MATRIX_TESTS in this file)")
    parser.add_argument("--cache", default=DEFAULT_CACHE,
                        help="where virtme-ng, the kernels and the runs are kept")
    parser.add_argument("--junit-dir", help="also copy each kernel's JUnit file here "
                                            "as junit-LABEL.xml")
    parser.add_argument("--timeout", type=float, default=480,
                        help="seconds for one kernel's whole run, boot included")
    parser.add_argument("--budget", type=float, default=0,
                        help="seconds for setup and all kernels together (0: no limit); each "
                             "kernel gets at most what is left, and kernels with under a minute "
                             "left are reported as not run")
    parser.add_argument("--retries", type=int, default=0,
                        help="run a kernel again (at most this many times) when it timed out "
                             "with no test failed: an emulated guest can hang; the report "
                             "says so")
    parser.add_argument("--test-timeout", type=float, default=120,
                        help="seconds one test may take inside a kernel")
    parser.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown here")
    parser.add_argument("--memory", default="2G", help="guest memory")
    parser.add_argument("--cpus", type=int, default=2, help="guest CPUs (tests need 2)")
    parser.add_argument("--refresh", action="store_true",
                        help="look for newer kernel packages even when some are cached")
    parser.add_argument("--setup-only", action="store_true",
                        help="prepare the cache (packages, virtme-ng, kernels) and stop")
    parser.add_argument("--repo", default=REPO,
                        help="the checkout whose tests and code run (copied for each kernel)")
    parser.add_argument("--no-features", action="store_true",
                        help="skip the feature-probe dump per kernel")
    return parser.parse_args(argv)


def kernel_labels(chosen: Optional[Sequence[str]]) -> List[str]:
    if not chosen or "all" in chosen:
        return [HOST] + list(SERIES)
    return [label for label in KERNEL_CHOICES if label in chosen]


def run_with_retries(label: str, run_once: Callable[[float], KernelRun], timeout: float,
                     budget_end: Optional[float], retries: int) -> KernelRun:
    """``run_once(timeout)``, again (up to ``retries`` times) while it times
    out with no test failed: an emulated guest can hang, and a hang says
    nothing about our code. Failing tests are never retried; each attempt
    gets at most what is left of the budget, and none starts with under a
    minute left."""
    earlier: List[str] = []
    while True:
        limit = timeout if budget_end is None else min(timeout, budget_end - time.time())
        if limit < 60:
            result = KernelRun(label, problem="not run: the --budget was used up")
            log("%s: %s" % (label, result.problem))
            break
        result = run_once(limit)
        counts = result.counts()
        if not (result.timed_out and not counts[FAILED] + counts[ERROR]
                and len(earlier) < retries):
            break
        earlier.append(result.problem)
        log("%s: %s; running it again (--retries)" % (label, result.problem))
    result.earlier = earlier
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    labels = kernel_labels(args.kernel)
    # the budget covers setup too: on a fresh host that is apt, pip and the kernels
    budget_end = time.time() + args.budget if args.budget > 0 else None
    try:
        cache = check_cache_dir(args.cache)
        if os.geteuid() != 0:
            raise SetupError("run as root: the tests load BPF programs, and setup uses apt")
        setup = Setup(cache, refresh=args.refresh)
        t0 = time.time()
        kernels = setup.all(labels)
        log("setup done in %.0f s" % (time.time() - t0))
    except SetupError as exc:
        log("setup failed: %s" % exc)
        return 2
    for label, info in kernels.items():
        log("%s: %s %s (%s)" % (label, info.get("package"), info.get("version"), info["vmlinuz"]))
    if args.setup_only:
        return 0
    repo = os.path.abspath(args.repo)
    tests = existing_tests(args.tests or MATRIX_TESTS, repo)
    if not tests:
        log("no tests to run")
        return 2
    runs = []
    for label in labels:
        info = kernels.get(label, {})

        def run_once(timeout: float, label: str = label, info: Dict[str, str] = info) -> KernelRun:
            return run_kernel(label, cache, tests, test_timeout=args.test_timeout,
                              timeout=timeout, vng=setup.vng, vmlinuz=info.get("vmlinuz", ""),
                              memory=args.memory, cpus=args.cpus,
                              features=not args.no_features, repo=repo)
        runs.append(run_with_retries(label, run_once, args.timeout, budget_end, args.retries))
        if args.junit_dir:
            os.makedirs(args.junit_dir, exist_ok=True)
            src = os.path.join(cache, "runs", label, "out", "junit.xml")
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(args.junit_dir, "junit-%s.xml" % label))
    text = report(runs)
    print(text, end="")
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write(report(runs, markdown=True))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
