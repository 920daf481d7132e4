#!/usr/bin/env python3
"""Run the kernel-dependent part of the test suite on other kernels.

Minimal hosts run LTS kernels. This boots Debian's generic 5.10, 6.1 and 6.12
kernels (from the package registry) with virtme-ng under QEMU emulation, runs
the matrix's tests inside each with ``CI=true`` (a skip is a failure), runs
the same tests on the host kernel as one more column, collects one JUnit file
per kernel and prints a table of results and one of feature-probe answers::

    sudo python3 tools/kernel_matrix.py                  # host, 5.10, 6.1, 6.12
    sudo python3 tools/kernel_matrix.py --kernel 6.1 --tests tests/kernel/test_maps.py
    sudo python3 tools/kernel_matrix.py --setup-only     # just prepare the cache
    sudo python3 tools/kernel_matrix.py --kernel host --kernel 6.1 --kernel 6.12 \\
        --budget 840 --timeout 330 --retries 1 --junit-dir build/kernel-matrix \\
        --markdown build/kernel-matrix/matrix.md         # what .ci/run runs

This file is only the entry point: the matrix is the package
``tools/kernel_matrix/`` beside it (its ``__init__.py`` lists the modules;
the options and exit status are in ``cli.py``). Run as a script, this
file's directory is first on ``sys.path``, and ``import kernel_matrix``
finds that package: a directory with an ``__init__.py`` is found before a
module of the same name.
"""

import sys

from kernel_matrix.cli import main

if __name__ == "__main__":
    sys.exit(main())
