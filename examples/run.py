"""What every example's ``main`` does: parse ``--duration``, load the module's
programs, attach them, wait for Ctrl-C or the duration (or follow a ring
buffer meanwhile), print the report."""

import argparse
import sys
import time
from types import ModuleType
from typing import Callable, List, Optional

from pybpf.dsl import collection_spec
from pybpf.loader import Collection


def sleep(loaded: Collection, seconds: float) -> None:
    """Wait while the programs count."""
    time.sleep(seconds)


def main(module: ModuleType, report: Callable[[Collection], str],
         argv: Optional[List[str]] = None,
         attach: Callable[[Collection], None] = Collection.attach,
         wait: Callable[[Collection, float], None] = sleep) -> None:
    """Run ``module``'s programs until Ctrl-C or ``--duration`` (``wait``
    spends that time), then print ``report``."""
    parser = argparse.ArgumentParser(prog="python3 -m " + module.__name__,
                                     description=(module.__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: at Ctrl-C)")
    args, _rest = parser.parse_known_args(argv)
    with Collection(collection_spec(module)) as loaded:
        attach(loaded)
        print("Tracing... Hit Ctrl-C to end.", file=sys.stderr)
        try:
            wait(loaded, args.duration if args.duration is not None else 1e9)
        except KeyboardInterrupt:
            pass
        print(report(loaded), end="")
