"""The kernel matrix: the kernel-dependent part of the test suite, run on the
host kernel and on Debian's LTS kernels booted in virtme-ng guests.

Minimal hosts run older kernels than this one; the matrix is how we know the
library's feature probes and fallbacks work there. ``tools/kernel_matrix.py``
is its command line (``cli.py``). The modules, in the order a run uses them:

``plan.py``
    what runs where: the test files, the kernel series and the labels;
``setup.py``
    the cache the guests need (host packages, virtme-ng, unpacked kernels);
``run.py``
    one kernel's run: a copy of the repository, the guest (or the host), the
    time limits and retries;
``results.py``
    what a run left behind (JUnit, progress log, meta, features), read back;
``report.py``
    the tables of results and feature answers, as text or Markdown;
``guest_run.py`` and ``matrix_timeout.py``
    the side that runs inside each kernel (standalone scripts: the guest
    imports nothing of this package).

This file holds what every module shares: where the repository is and how
the matrix writes its progress lines.
"""

import os
import sys

#: The checkout this package lives in (the default ``--repo``).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(message: str) -> None:
    print("kernel-matrix: %s" % message, file=sys.stderr, flush=True)
