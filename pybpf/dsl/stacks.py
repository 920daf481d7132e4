"""Stack traces: the ``StackTrace`` map, ``p.get_stackid(ctx, stacks)`` in
programs, and the stacks read back with their kernel symbols.

.. code-block:: python

    stacks = StackTrace(max_entries=1024)
    seen = HashMap(key=u32, value=s64, max_entries=1024)

    @raw_tracepoint("sys_enter")
    def where(p, ctx):
        seen.update(u32(0), p.get_stackid(ctx, stacks))

    for frame in stacks.kernel_stack(coll.maps.stacks, coll.maps.seen[0]):
        print(frame)                    # do_syscall_64+0x87, ...

``bpf_get_stackid`` stores the stack (return addresses, innermost first,
``depth`` at most) in the map under a hash of it and returns that id (or a
negative errno: ``-EFAULT`` when the stack cannot be walked, ``-EEXIST`` on
a hash collision unless ``BPF_F_REUSE_STACKID``). Kernel addresses are named
from ``/proc/kallsyms`` as ``symbol+0xoffset``
(:class:`~pybpf.kernel.kallsyms.KernelSymbols`); user stacks
(``BPF_F_USER_STACK``) come back as addresses.
"""

from typing import Any, List, Optional

from ..consts import BPF_MAP_TYPE_STACK_TRACE, PERF_MAX_STACK_DEPTH
from ..kernel.kallsyms import KernelSymbols
from .codegen import current
from .helpers import call_helper, helper
from .maps import MapDecl
from .types import u32, u64
from .values import build_error


class StackTrace(MapDecl):
    """``BPF_MAP_TYPE_STACK_TRACE``: up to ``max_entries`` stacks of up to
    ``depth`` return addresses each, by the id ``p.get_stackid`` returns."""

    map_type = BPF_MAP_TYPE_STACK_TRACE

    def __init__(self, *, max_entries: int, depth: int = PERF_MAX_STACK_DEPTH,
                 name: Optional[str] = None):
        if not 0 < depth <= PERF_MAX_STACK_DEPTH:
            raise ValueError("StackTrace depth must be 1..%d (PERF_MAX_STACK_DEPTH), not %d"
                             % (PERF_MAX_STACK_DEPTH, depth))
        super().__init__(key=u32, value=u64[depth], max_entries=max_entries, name=name)
        self._symbols = KernelSymbols()

    def addresses(self, live: Any, stack_id: int) -> List[int]:
        """The return addresses of stack ``stack_id`` in the loaded map
        (``coll.maps.<name>``), innermost first (``KeyError`` if there is none)."""
        if stack_id < 0:
            raise KeyError("stack id %d is bpf_get_stackid's error -%d, not a stack"
                           % (stack_id, -stack_id))
        frames = live[stack_id]
        return frames[:frames.index(0)] if 0 in frames else list(frames)

    def kernel_stack(self, live: Any, stack_id: int) -> List[str]:
        """Stack ``stack_id`` as ``symbol+0xoffset`` lines, innermost first."""
        return [self._symbols.symbolise(address) for address in self.addresses(live, stack_id)]


def get_stackid(ctx: Any, stacks: Any, flags: Any = 0) -> Any:
    """``bpf_get_stackid(ctx, &stacks, flags)``: store the current stack in
    ``stacks`` (a :class:`StackTrace`) and return its id, negative on failure."""
    if not isinstance(stacks, StackTrace):
        raise build_error("p.get_stackid() stores into a StackTrace map, not %r" % (stacks,))
    return call_helper(current(), helper("get_stackid"), (ctx, stacks, flags), {})
