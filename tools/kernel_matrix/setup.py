"""What booting the guest kernels needs, prepared once and cached: host
packages, virtme-ng, and the kernels themselves.

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
Every failure here is a :class:`SetupError` (the command line exits 2).
"""

import json
import os
import shutil
import subprocess
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from kernel_matrix import REPO, log
from kernel_matrix.plan import SERIES, Series

VIRTME_NG = "virtme-ng==1.42"
HOST_PACKAGES = ("qemu-system-x86", "kmod", "udev", "busybox-static", "file")
DEFAULT_CACHE = "/var/lib/pybpf-matrix"
# virtme-ng mounts tmpfs over these in the guest: a cache below them is invisible there.
GUEST_MASKED = ("/var/cache", "/var/tmp", "/var/log", "/var/lib/apt", "/var/lib/private",
                "/run", "/dev", "/proc", "/sys")

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITE_SOURCES = "".join("deb [signed-by=%s] http://deb.debian.org/%s {suite}%s main\n"
                        % (KEYRING, archive, suffix)
                        for archive, suffix in (("debian", ""), ("debian-security", "-security")))


class SetupError(RuntimeError):
    """Something booting the kernels needs could not be prepared."""


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


def run_command(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` that checks and, on failure, raises a SetupError
    with the command and the last lines it printed."""
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
            run_command(["apt-get"] + self.apt_options(suite) + ["update", "-qq"],
                        capture_output=True)
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
        run_command(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
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
            run_command([sys.executable, "-m", "venv", self.venv], capture_output=True)
        log("pip install %s into %s" % (VIRTME_NG, self.venv))
        run_command([os.path.join(self.venv, "bin", "python"), "-m", "pip", "install", "-q",
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
            out = run_command(["apt-cache"] + options
                              + ["search", "--names-only", series.search],
                              capture_output=True).stdout
            names = [n for n in parse_search(out) if series.matches(n)]
            candidates = parse_policy(run_command(["apt-cache"] + options + ["policy"] + names,
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
            run_command(["apt-get", "-o", "APT::Sandbox::User=root"]
                        + self.apt_options(series.suite)
                        + ["download", "%s=%s" % (name, version)],
                        cwd=self.debs, capture_output=True)
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
        run_command(["dpkg-deb", "-x", deb, tmp], capture_output=True)
        boot = os.path.join(tmp, "boot")
        images = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-")) \
            if os.path.isdir(boot) else []
        if not images:
            raise SetupError("%s has no boot/vmlinuz-*" % os.path.basename(deb))
        kver = images[0][len("vmlinuz-"):]
        if not os.path.isdir(os.path.join(tmp, "lib", "modules", kver)):
            raise SetupError("%s has no lib/modules/%s" % (os.path.basename(deb), kver))
        run_command(["depmod", "-a", "-b", tmp, kver], capture_output=True)
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


