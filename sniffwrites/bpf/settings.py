"""The frozen ``settings`` the kernel side is loaded with, and the filters
built on them.

``settings`` is filled from the command line at load
(:meth:`sniffwrites.config.Config.kernel_settings`) and frozen: the
verifier knows the values and drops the code of features that are off.
Every filter runs before anything is emitted; these are the conditions the
hooks test: :func:`process_filtered_out` (``--pid``, ``--follow``, ``-p``,
unless ``--debug``), :func:`op_wanted` (``-o``) and :func:`reported` (a
file under a watched directory, or ``--debug``).
"""

from pybpf.dsl import Config, HashMap, char, u8, u32, u64

from .records import FILE_WATCHED
from .syscalls import MAX_SYSCALLS, syscall_table

#: watched directory prefixes for absolute names of path-based operations
MAX_PREFIXES = 4
PREFIX_LEN = 256

settings = Config(
    self_tgid=u32,          # the monitor itself: never reported
    target_tgid=u32,        # --pid (0: any)
    follow=u8,              # --follow: children of target_tgid too (map ``followed``)
    use_comm=u8,            # -p given
    report_all=u8,          # --debug: every file, watched or not, no process/op filter
    all_files=u8,           # no -d: every file is "watched"
    failed=u8,              # --failed: report calls that failed
    aggregate=u8,           # --aggregate: count in the kernel, report at close
    capture=u32,            # --capture N (0: off)
    ops=u32,                # bit 1 << OP_*: operations to report
    comm=u64[2],            # -p, as two little-endian words of the 16-byte comm
    prefix0=char[PREFIX_LEN],   # watched dirs + "/", for absolute names of path operations
    prefix1=char[PREFIX_LEN],
    prefix2=char[PREFIX_LEN],
    prefix3=char[PREFIX_LEN],
    syscalls=u8[MAX_SYSCALLS],  # syscall number -> CL_*
    # Without a config (``pybpf verify``): this machine's syscalls, every
    # operation, failed calls too.
    defaults={"syscalls": syscall_table(), "ops": (1 << 16) - 1, "failed": 1, "capture": 64,
              "follow": 1},
)

#: --follow: the processes followed (the target and its descendants)
followed = HashMap(key=u32, value=u8, max_entries=1 << 14)


def process_wanted(p, tgid):
    """``--pid``/``--follow`` and ``-p``: a condition variable (u8)."""
    ok = p.var(u8, 1)
    with p.if_(settings.target_tgid != 0):
        with p.if_(settings.follow != 0):
            with p.if_(followed.lookup(tgid).is_null):
                ok.set(0)
        with p.else_():
            with p.if_(tgid != settings.target_tgid):
                ok.set(0)
    with p.if_(settings.use_comm != 0):
        name = p.stack(u64[2])
        p.helpers.get_current_comm(name)
        with p.if_((name[0] != settings.comm[0]) | (name[1] != settings.comm[1])):
            ok.set(0)
    return ok


def process_filtered_out(p, tgid):
    """The condition: process ``tgid`` is not one the filters ask for (and
    ``--debug`` is off, which reports every process)."""
    return (settings.report_all == 0) & (process_wanted(p, tgid) == 0)


def op_wanted(op):
    """The condition: operation ``op`` (a constant) is asked for."""
    return (settings.ops & (1 << op)) != 0


def reported(flags):
    """The condition: operations on a file with these ``FILE_*`` flags are
    reported (it is under a watched directory, or ``--debug`` is on)."""
    return ((flags & FILE_WATCHED) != 0) | (settings.report_all != 0)
