"""``python -m pybpf.cli``: the ``pybpf`` command without its console script."""

from . import main

main()
