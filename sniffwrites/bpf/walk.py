"""sniffwrites' side of the fd -> path walk: its watched map, and the hook
that tests each ancestor against it.

The walk itself is :mod:`pybpf.programs.lib_paths` (two ``bpf_loop``
passes, or bounded loops on a kernel without it: pass 1 tests every
ancestor's (device, inode) against ``watched`` and only remembers where the
names are; pass 2 composes the path, only for a file that will be reported,
into its :class:`~sniffwrites.bpf.records.FileRec`). This module binds those
passes to sniffwrites' maps: :func:`walk` and :func:`compose`, with
``walk_step`` and ``compose_step`` the subprograms they loop over (module
names here, so that the build cache finds them). It sets the ``FILE_*``
flags the walk decides: ``FILE_TRUNCATED`` when the path lost its start
(longer than PATH_MAX, or deeper than ``lib_paths.level_bound()``),
``FILE_PSEUDO`` for a pipe, socket or anonymous inode (userspace names it
``pipe:[ino]`` from the superblock magic).

It also holds :func:`kread` and :func:`scratch_box`, the small stack
helpers every module of the kernel side reads kernel memory with.
"""

from pybpf.dsl import HashMap, KernelPtr, PerCPUArray, u16, u32
from pybpf.programs.lib_paths import WALK_PSEUDO, compose_steps, cut, kaddr, walk_steps
from pybpf.programs.lib_paths import compose as lib_compose
from pybpf.programs.lib_paths import walk as lib_walk

from .records import FILE_PSEUDO, FILE_TRUNCATED, FileRec, Watched

file_recs = PerCPUArray(value=FileRec, max_entries=1)
watched = HashMap(key=Watched, value=u32, max_entries=64)

def scratch_box(p, vtype):
    """A stack slot of ``vtype`` in this function, reused by every
    :func:`kread` of that type (each loads the value out of it at once)."""
    boxes = getattr(p, "_sniffwrites_boxes", None)
    if boxes is None:
        boxes = p._sniffwrites_boxes = {}
    if vtype not in boxes:
        boxes[vtype] = p.stack(vtype)
    return boxes[vtype]


def kread(p, vtype, address):
    """``*(vtype *)address`` from kernel memory at a computed address (0 if
    it cannot be read: bpf_probe_read_kernel zeroes its buffer on failure)."""
    box = scratch_box(p, vtype)
    p.helpers.probe_read_kernel(box, kaddr(address))
    return box[0]


def _watched_dir(p, s, dev, ino):
    """The ancestry test: is (dev, ino) a watched directory? Its index + 1
    ends the test."""
    key = p.stack(Watched)
    key.dev = dev
    key.pad = 0
    key.ino = ino
    hit = watched.lookup(key)
    with p.if_(hit):
        s.watched = hit[0]


walk_step = walk_steps(_watched_dir)
compose_step = compose_steps(file_recs)


def walk(p, s, task, mnt, dentry, all_files):
    """Pass 1 over (mnt, dentry): ``s.watched``, ``s.status`` and the
    remembered components are the result."""
    lib_walk(p, s, task, mnt, dentry, all_files, walk_step)


def compose(p, s, rec):
    """Pass 2: the path into ``rec.path``; sets ``rec.path_len`` and the
    truncation flag in ``rec.flags``."""
    length = lib_compose(p, s, rec.path, compose_step)
    rec.path_len = length
    flags = p.var(u16, rec.flags)
    with p.if_(cut(s)):
        flags |= FILE_TRUNCATED
    with p.if_(s.status == WALK_PSEUDO):
        flags |= FILE_PSEUDO
    rec.flags = flags
    return length


def describe_file(p, rec, inode):
    """Inode facts of a file for its record: number, mode, links, device
    and filesystem magic (``inode``: a ``struct inode`` kernel pointer)."""
    i = p.fetch(inode, "i_ino", "__i_nlink")       # adjacent: one read
    rec.ino = i.i_ino
    rec.nlink = i.__i_nlink
    rec.mode = inode.i_mode
    sb = p.var(KernelPtr("super_block"), inode.i_sb)
    rec.dev = sb.s_dev
    rec.magic = sb.s_magic
