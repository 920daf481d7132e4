"""This kernel as a build for an older one sees it.

What a program build asks of the kernel beyond struct offsets is in its
BTF: ``enum bpf_func_id`` lists the helpers it has. A copy of this kernel's
BTF with one enumerator renamed is what a build sees on a kernel without
that helper, while every offset stays this kernel's, so what is built
inside loads and runs here: the fallbacks are tested in this kernel, not
only in the VMs of tools/kernel_matrix.py.
"""

import functools
import os

from pybpf.dsl.kernel_types import using_btf
from pybpf.kernel.btf import BTF, VMLINUX_PATH


@functools.lru_cache(maxsize=None)
def _btf_without(enumerator: bytes) -> BTF:
    with open(VMLINUX_PATH, "rb") as f:
        data = f.read()
    name = b"\0" + enumerator + b"\0"
    assert data.count(name) <= 1, "%s is more than an enumerator here" % enumerator
    # a kernel that lacks it already (Linux 5.10 has no bpf_loop): as it is
    return BTF(data.replace(name, name.lower()), source="vmlinux without %s" % enumerator)


def without_bpf_loop():
    """``using_btf()`` for a kernel before 5.17, which has no ``bpf_loop``."""
    return using_btf(_btf_without(b"BPF_FUNC_loop"))


#: ``python3 -c`` code that runs the sniffwrites command line (arguments
#: after it) as a kernel without ``bpf_loop`` builds it: bounded loops.
SNIFFWRITES_WITHOUT_BPF_LOOP = (
    "import sys; sys.path.insert(0, %r)\n"
    "from older_kernels import without_bpf_loop\n"
    "from sniffwrites.cli import main\n"
    "with without_bpf_loop():\n"
    "    main(prog_name='sniffwrites')\n" % os.path.dirname(os.path.abspath(__file__)))
