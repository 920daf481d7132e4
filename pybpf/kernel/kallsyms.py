"""Kernel symbol names by address, from ``/proc/kallsyms``.

Three readers need them. ``prog dump``: the verifier rewrites a helper
call's immediate into the helper's address relative to ``__bpf_call_base``
(``call __htab_map_lookup_elem#336864``), and each JIT-compiled function of
a program has an address the kernel names ``bpf_prog_<tag>_<name>``
(bpftool resolves both the same way). Stack traces
(:mod:`pybpf.dsl.stacks`): a return address inside a function is shown as
``do_syscall_64+0x87``, the symbol at or below it and the distance, as
bcc's ``ksym`` and ``perf`` print them. Without root the kernel shows every
address as 0 and nothing resolves; callers then fall back to numbers.
"""

from bisect import bisect_right
from typing import Dict, List, Optional

KALLSYMS = "/proc/kallsyms"
CALL_BASE = "__bpf_call_base"


class KernelSymbols:
    """Symbol names by address, read once when first asked."""

    def __init__(self, path: str = KALLSYMS):
        self._path = path
        self._names: Optional[Dict[int, str]] = None
        self._call_base: Optional[int] = None
        self._starts: List[int] = []       # sorted addresses of _names, for symbolise()

    def _load(self) -> Dict[int, str]:
        if self._names is None:
            names: Dict[int, str] = {}
            try:
                with open(self._path) as lines:
                    for line in lines:
                        address, _, name = line.split(None, 3)[:3]
                        value = int(address, 16)
                        if value:
                            names.setdefault(value, name)
                            if name == CALL_BASE:
                                self._call_base = value
            except OSError:
                pass   # no /proc, or hidden: nothing resolves, numbers are shown
            self._names = names
            self._starts = sorted(names)
        return self._names

    def name_at(self, address: int) -> Optional[str]:
        """The kernel symbol that starts at ``address``, or None."""
        return self._load().get(address)

    def helper_name(self, imm: int) -> Optional[str]:
        """The function a rewritten helper call (``imm`` relative to
        ``__bpf_call_base``) goes to, or None."""
        self._load()
        if self._call_base is None:
            return None
        return self.name_at(self._call_base + imm)

    def symbolise(self, address: int) -> str:
        """``name+0xoff`` for an address inside a symbol (the nearest one at
        or below it), ``name`` at its start, or the address in hex when no
        symbol is below it."""
        names = self._load()
        index = bisect_right(self._starts, address) - 1
        if index < 0:
            return "0x%x" % address
        start = self._starts[index]
        offset = address - start
        return names[start] + ("+0x%x" % offset if offset else "")
