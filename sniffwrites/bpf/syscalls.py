"""The syscalls sniffwrites classifies, per architecture, and where their
arguments are.

``sniff_sys_exit`` sees every syscall; a table in the frozen settings
(:func:`syscall_table`) maps its number to a class (``CL_*``) that says how
to read its arguments, or to ``CL_NONE``. :class:`Regs` reads the number
and arguments out of ``struct pt_regs`` at this kernel's BTF offsets;
:class:`Call` is the syscall as the slow paths get it. Userspace names
syscalls with :func:`syscall_names`.
"""

import platform

from pybpf.dsl import KernelPtr, Struct, s64, u32, u64
from pybpf.dsl.kernel_types import kernel_struct
from pybpf.errors import UnsupportedFeature
from pybpf.programs.lib_paths import kaddr

# Syscall classes: how to read a syscall's arguments (settings.syscalls[nr]).
(CL_NONE, CL_READ, CL_WRITE, CL_OPEN, CL_OPENAT, CL_OPENAT2, CL_DUP, CL_DUP2, CL_FCNTL,
 CL_CLOSE_RANGE, CL_FTRUNCATE, CL_TRUNCATE, CL_UNLINK, CL_UNLINKAT, CL_RENAME,
 CL_RENAMEAT, CL_COPY, CL_SENDFILE, CL_FALLOCATE) = range(19)

#: Syscall name -> class, for the architectures we know. Absent names do not
#: exist there (aarch64 has no open, creat, dup2, rename or unlink).
SYSCALL_CLASSES = {
    "read": CL_READ, "pread64": CL_READ, "readv": CL_READ, "preadv": CL_READ,
    "preadv2": CL_READ,
    "write": CL_WRITE, "pwrite64": CL_WRITE, "writev": CL_WRITE, "pwritev": CL_WRITE,
    "pwritev2": CL_WRITE,
    "open": CL_OPEN, "creat": CL_OPEN, "openat": CL_OPENAT, "openat2": CL_OPENAT2,
    "dup": CL_DUP, "dup2": CL_DUP2, "dup3": CL_DUP2, "fcntl": CL_FCNTL,
    "close_range": CL_CLOSE_RANGE,
    "ftruncate": CL_FTRUNCATE, "truncate": CL_TRUNCATE,
    "unlink": CL_UNLINK, "rmdir": CL_UNLINK, "unlinkat": CL_UNLINKAT,
    "rename": CL_RENAME, "renameat": CL_RENAMEAT, "renameat2": CL_RENAMEAT,
    "copy_file_range": CL_COPY, "splice": CL_COPY, "sendfile": CL_SENDFILE,
    "fallocate": CL_FALLOCATE,
}

#: Syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl and the generic
#: include/uapi/asm-generic/unistd.h that aarch64 uses).
SYSCALL_NUMBERS = {
    "x86_64": {"read": 0, "write": 1, "open": 2, "close": 3, "pread64": 17, "pwrite64": 18,
               "readv": 19, "writev": 20, "dup": 32, "dup2": 33, "fcntl": 72, "truncate": 76,
               "ftruncate": 77, "sendfile": 40, "rename": 82, "rmdir": 84, "creat": 85, "unlink": 87,
               "openat": 257, "unlinkat": 263, "renameat": 264, "splice": 275, "fallocate": 285,
               "dup3": 292, "preadv": 295, "pwritev": 296, "renameat2": 316,
               "copy_file_range": 326, "preadv2": 327, "pwritev2": 328,
               "close_range": 436, "openat2": 437},
    "aarch64": {"dup": 23, "dup3": 24, "fcntl": 25, "unlinkat": 35, "renameat": 38,
                "truncate": 45, "ftruncate": 46, "fallocate": 47, "openat": 56, "close": 57, "read": 63,
                "write": 64, "readv": 65, "writev": 66, "pread64": 67, "pwrite64": 68,
                "preadv": 69, "pwritev": 70, "sendfile": 71, "splice": 76,
                "renameat2": 276, "copy_file_range": 285, "preadv2": 286, "pwritev2": 287,
                "close_range": 436, "openat2": 437},
}
#: Where each syscall argument and the syscall number are in ``struct pt_regs``.
REGISTERS = {
    "x86_64": {"a0": "di", "a1": "si", "a2": "dx", "a3": "r10", "a4": "r8", "nr": "orig_ax"},
    "aarch64": {"a0": "regs[0]", "a1": "regs[1]", "a2": "regs[2]", "a3": "regs[3]",
                "a4": "regs[4]", "nr": "syscallno"},
}
MAX_SYSCALLS = 512
#: The syscall number and arguments lie within this many words of pt_regs.
REGS_WORDS = 16
#: The vectored reads and writes: --capture takes the first iovec's bytes.
VECTORED = ("readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2")


def machine():
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())


def syscall_number(name):
    """``name``'s number on this machine, or None where it does not exist."""
    return SYSCALL_NUMBERS.get(machine(), {}).get(name)


#: close's number, for the records of closes seen from sys_enter_close
CLOSE_NR = syscall_number("close") or 0


def syscall_table():
    """settings.syscalls for this machine: a list of MAX_SYSCALLS classes."""
    numbers = SYSCALL_NUMBERS.get(machine(), {})
    table = [CL_NONE] * MAX_SYSCALLS
    for name, cls in SYSCALL_CLASSES.items():
        if name in numbers:
            table[numbers[name]] = cls
    return table


def syscall_names():
    """Number -> name for this machine (for output)."""
    return {nr: name for name, nr in SYSCALL_NUMBERS.get(machine(), {}).items()}


class Call(Struct):
    """A syscall as the slow paths see it: number, result, arguments.
    Passed by pointer to the subprograms (five arguments would not do)."""
    nr: u64
    ret: s64
    a0: u64
    a1: u64
    a2: u64
    a3: u64
    tgid: u32
    cls: u32
    raw: u64[REGS_WORDS]    # the span of pt_regs the arguments come from


class Regs:
    """The syscall number (``regs.nr``) and first argument (``regs.a0``) in
    ``struct pt_regs`` (``ctx.args[0]`` of sys_exit): what the hot path
    needs, copied with one ``bpf_probe_read_kernel`` of the bytes they span;
    each use is a load from that copy. :meth:`read_all` copies every argument
    into a :class:`Call` (the slow paths)."""

    def __init__(self, p, address):
        self._pointer = KernelPtr("pt_regs")(address)
        self._copy = p.fetch(self._pointer, *{regs_layout()[role][0] for role in ("nr", "a0")})

    def __getattr__(self, role):
        if role not in ("nr", "a0"):
            raise AttributeError(role)
        member, index = regs_layout()[role]
        value = getattr(self._copy, member)
        return value[index] if index is not None else value

    def read_all(self, p, call):
        """``call.raw`` = the span of pt_regs holding every argument (one
        read), then the arguments out of it."""
        low, index = regs_span()
        span = 8 * (max(index.values()) + 1)       # not past pt_regs: the stack ends there
        p.helpers.probe_read_kernel(call.raw, span, kaddr(self._pointer) + low)
        for role in ("nr", "a0", "a1", "a2", "a3"):
            setattr(call, role, call.raw[index[role]])


def regs_layout():
    """Role (nr, a0..a4) -> (pt_regs member, array index or None) here."""
    names = REGISTERS.get(machine())
    if names is None:
        raise UnsupportedFeature("sniffwrites on %s (known: %s)"
                                 % (machine(), ", ".join(sorted(REGISTERS))))
    layout = {}
    for role, name in names.items():
        member, _, index = name.partition("[")
        layout[role] = (member, int(index.rstrip("]")) if index else None)
    return layout


def regs_span():
    """(offset of the first register we read, role -> u64 index from it):
    where the syscall's number and arguments are in this kernel's pt_regs."""
    regs = kernel_struct("pt_regs")
    offsets = {role: regs.member(member).offset + 8 * (index or 0)
               for role, (member, index) in regs_layout().items()}
    low = min(offsets.values())
    if max(offsets.values()) + 8 - low > 8 * REGS_WORDS:
        raise ValueError("pt_regs: the arguments span more than %d words" % REGS_WORDS)
    return low, {role: (offset - low) // 8 for role, offset in offsets.items()}
