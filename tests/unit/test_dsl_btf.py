"""Kernel structs in the DSL, against a small hand-made kernel BTF: member
chains compile to probe reads at the offsets BTF gives, types and bitfields
come from BTF, and names this "kernel" lacks are build errors at the line."""

import pytest

from pybpf import isa
from pybpf.dsl import KernelPtr, Struct, char, s32, s64, subprogram, u8, u32, u64
from pybpf.kernel.btf import BTF
from pybpf.kernel.btf_writer import BTFBuilder, Member
from pybpf.dsl.kernel_types import using_btf

from dsl_helpers import build, build_error

PROBE_READ_KERNEL = 113


def fake_kernel() -> BTF:
    """A "kernel" whose structs differ from any real one's, so that the
    offsets below can only have come from this BTF."""
    b = BTFBuilder()
    uint = b.int("unsigned int", 4)
    sint = b.int("int", 4, signed=True)
    ulong = b.int("long unsigned int", 8)
    pid_t = b.typedef("pid_t", sint)
    task_fwd = b.fwd("task_struct")
    dentry_fwd = b.fwd("dentry")
    vfsmount = b.struct("vfsmount", 16, [("mnt_flags", ulong, 0),
                                         ("mnt_root", b.ptr(dentry_fwd), 8)])
    b.struct("mount", 40, [("mnt_id", ulong, 0), ("mnt", vfsmount, 24)])
    path = b.struct("path", 16, [("dentry", b.ptr(dentry_fwd), 0),
                                 ("mnt", b.ptr(vfsmount), 8)])
    file_fwd = b.fwd("file")
    fdtable = b.struct("fdtable", 24, [("fd", b.ptr(b.ptr(file_fwd)), 0),
                                       ("max_fds", uint, 16)])
    files = b.struct("files_struct", 24, [("count", ulong, 0), ("fdt", b.ptr(fdtable), 16),
                                          ("fd_array", b.array(b.ptr(file_fwd), 0), 24)])
    b.struct("file", 48, [("f_mode", uint, 0),
                          ("", b.union("", 16, [("f_path", path, 0), ("f_raw", ulong, 0)]), 24)])
    flags = b.struct("", 4, [Member("policy", uint, 0, 3, 0), Member("nice", sint, 0, 5, 3)])
    b.struct("task_struct", 96, [
        ("__state", uint, 8), ("tgid", pid_t, 12), ("pid", pid_t, 16), ("", flags, 20),
        ("real_parent", b.ptr(task_fwd), 32), ("files", b.ptr(files), 40),
        ("comm", b.char_array(16), 56), ("set", uint, 72)])
    return BTF(b.encode())


@pytest.fixture(autouse=True)
def kernel():
    btf = fake_kernel()
    with using_btf(btf):
        yield btf


def probe_reads(program):
    """(size, source offset) of each bpf_probe_read_kernel, from the
    ``r2 = size`` and ``r3 += offset`` that set up its arguments."""
    reads, size, offset = [], None, 0
    for insn in program.instructions:
        if insn.opcode == isa.BPF_ALU64 | isa.BPF_MOV | isa.BPF_K and insn.dst == 2:
            size, offset = insn.imm, 0
        elif insn.opcode == isa.BPF_ALU64 | isa.BPF_ADD | isa.BPF_K and insn.dst == 3:
            offset = insn.imm
        elif insn.opcode == isa.BPF_JMP | isa.BPF_CALL and insn.imm == PROBE_READ_KERNEL:
            reads.append((size, offset))
    return reads


class Out(Struct):
    a: u64
    b: s32
    comm: char[16]


def test_a_two_level_chain_reads_the_offsets_btf_gives(kernel):
    seen = {}

    def body(p, ctx):
        out = p.stack(Out)
        tgid = p.current_task().real_parent.tgid
        seen["type"] = tgid.type
        out.b = tgid
    reads = probe_reads(build(body))
    assert reads == [(8, kernel.resolve("task_struct.real_parent").offset),
                     (4, kernel.resolve("task_struct.tgid").offset)] == [(8, 32), (4, 12)]
    assert seen["type"] is s32                      # pid_t is a typedef of int


def test_embedded_members_and_anonymous_unions_cost_no_read(kernel):
    def body(p, ctx):
        file = KernelPtr("file")(ctx.args[0])
        p.stack(Out).a = u64(file.f_path.mnt.mnt_root)
    reads = probe_reads(build(body))
    assert reads == [(8, kernel.resolve("file.f_path.mnt").offset),
                     (8, kernel.resolve("vfsmount.mnt_root").offset)] == [(8, 32), (8, 8)]


def test_fetch_reads_the_span_of_its_members_once():
    def body(p, ctx):
        out = p.stack(Out)
        task = p.fetch(p.current_task(), "tgid", "pid", "real_parent")
        out.b = task.pid
        out.a = u64(task.real_parent)
        out.b = task.__state               # outside the copy: read from the kernel
    assert probe_reads(build(body)) == [(40 - 12, 12), (4, 8)]


def test_bitfields_are_extracted_by_their_signedness():
    seen = {}

    def body(p, ctx):
        task = p.current_task()
        out = p.stack(Out)
        seen["policy"], seen["nice"] = task.policy, task.nice
        out.a = seen["policy"]
        out.b = seen["nice"]
    program = build(body)
    assert (seen["policy"].type, seen["nice"].type) == (u32, s32)
    shifts = [(insn.opcode & 0xF0, insn.imm) for insn in program.instructions
              if insn.opcode & 0x07 == isa.BPF_ALU64 and insn.opcode & 0xF0 in
              (isa.BPF_LSH, isa.BPF_RSH, isa.BPF_ARSH) and insn.opcode & isa.BPF_X == 0]
    # policy: bits 0..2 of the u32 at 20; nice: bits 3..7, sign-extended
    assert shifts == [(isa.BPF_LSH, 61), (isa.BPF_RSH, 61), (isa.BPF_LSH, 56),
                      (isa.BPF_ARSH, 59)]


def test_char_arrays_copy_into_program_memory_in_one_read():
    def body(p, ctx):
        out = p.stack(Out)
        out.comm = p.current_task().comm
    assert probe_reads(build(body)) == [(16, 56)]

    def fetched(p, ctx):
        out = p.stack(Out)
        task = p.fetch(p.current_task(), "comm", "set")
        out.comm = task.comm                  # copied from the copy: no second read
        out.b = s32(p.field(task, "set"))
    assert probe_reads(build(fetched)) == [(20, 56)]


def test_a_missing_member_names_struct_member_near_names_and_line():
    def body(p, ctx):
        p.var(u32, p.current_task().state)  # error: missing
    with build_error("missing") as caught:
        build(body)
    message = str(caught.value)
    assert "struct task_struct" in message and "'state'" in message
    assert "__state" in message                         # the near name
    assert "p.field(" in message                        # how to give alternatives


def test_a_missing_struct_names_near_names():
    def body(p, ctx):
        p.var(u64, u64(KernelPtr("fil")(ctx.args[0]).f_mode))  # error: struct
    with build_error("struct", match="no struct/union named 'fil'.*did you mean file"):
        build(body)


def test_alternatives_pick_the_first_member_that_exists():
    def body(p, ctx):
        task = p.current_task()
        p.var(u32, p.field(task, "state", "__state"))
        p.var(s32, p.field(task, "parent.tgid", "real_parent.tgid"))
        p.var(u32, p.field(task, "set"))        # a member named like a method
    assert probe_reads(build(body)) == [(4, 8), (8, 32), (4, 12), (4, 72)]


def test_no_alternative_exists():
    def body(p, ctx):
        p.field(p.current_task(), "state", "task_state")  # error: none
    with build_error("none", match="none of 'state', 'task_state'.*did you mean __state"):
        build(body)


def test_an_index_into_a_kernel_pointer_takes_a_bound():
    def body(p, ctx):
        fdt = p.fetch(p.current_task().files.fdt, "fd", "max_fds")
        file = p.index(fdt.fd, ctx.args[0], fdt.max_fds)
        p.stack(Out).a = u64(file.f_path.dentry)
    program = build(body)
    assert probe_reads(program) == [(8, 40), (8, 16), (20, 0), (8, 0), (8, 24)]
    assert any(insn.opcode == isa.BPF_JMP | isa.BPF_JGE | isa.BPF_X
               for insn in program.instructions)          # fd >= max_fds: NULL

    def unbounded(p, ctx):
        fdt = p.current_task().files.fdt
        p.var(u64, u64(fdt.fd[ctx.args[0]]))  # error: bound
    with build_error("bound", match="needs a bound.*p.index"):
        build(unbounded)


def test_a_flexible_array_member_is_indexed_with_a_bound():
    def body(p, ctx):
        files = p.current_task().files
        out = p.stack(Out)
        out.a = u64(files.fd_array[1])
        out.a = u64(p.index(files.fd_array, ctx.args[0], 4))
    assert probe_reads(build(body)) == [(8, 40), (8, 32), (8, 24)]

    def unbounded(p, ctx):
        p.stack(Out).a = u64(p.current_task().files.fd_array[ctx.args[0]])  # error: flexible
    with build_error("flexible", match="struct file \\*\\[\\] in kernel memory needs a bound"):
        build(unbounded)


def test_container_of_subtracts_the_member_offset_and_checks_its_type(kernel):
    def body(p, ctx):
        file = KernelPtr("file")(ctx.args[0])
        mount = p.container_of(file.f_path.mnt, "mount", "mnt")
        p.stack(Out).a = mount.mnt_id
    program = build(body)
    assert any(insn.opcode == isa.BPF_ALU64 | isa.BPF_SUB | isa.BPF_K and insn.imm == 24
               for insn in program.instructions)

    def wrong(p, ctx):
        file = KernelPtr("file")(ctx.args[0])
        p.container_of(file.f_path.dentry, "mount", "mnt")  # error: type
    with build_error("type", match="mount.mnt is struct vfsmount, but this pointer is to "
                                   "struct dentry"):
        build(wrong)


def test_kernel_pointer_variables_keep_their_type():
    def body(p, ctx):
        file = KernelPtr("file")(ctx.args[0])
        dentry = p.var(KernelPtr("dentry"), file.f_path.dentry)
        dentry.set(file.f_path.mnt)  # error: assign
    with build_error("assign", match="cannot assign a struct vfsmount in kernel memory to a "
                                     "kernel struct dentry \\* variable"):
        build(body)


TaskPtr = KernelPtr("task_struct")


def test_a_subprogram_takes_a_kernel_pointer():
    @subprogram
    def parent_tgid(p, task: TaskPtr) -> s64:
        p.return_(task.real_parent.tgid)

    def body(p, ctx):
        p.stack(Out).b = s32(parent_tgid(p, p.current_task()))
    assert probe_reads(build(body)) == [(8, 32), (4, 12)]


def test_kernel_memory_is_read_only():
    def body(p, ctx):
        p.current_task().pid = 1  # error: write
    with build_error("write", match="kernel memory is read-only"):
        build(body)


def test_kernel_types_are_read_lazily(monkeypatch):
    """Naming a kernel type, or building a program that reads none, never
    loads the kernel's BTF: only a member access does."""
    import pybpf.dsl.kernel_types as kernel_types

    def no_btf():
        raise AssertionError("BTF asked for")
    monkeypatch.setattr(kernel_types, "current_btf", no_btf)
    file_ptr = KernelPtr("file")

    class Holder(Struct):
        file: file_ptr
        flag: u8
    assert Holder.layout.size == 16

    def body(p, ctx):
        file = KernelPtr("file")(ctx.args[0])
        with p.if_(file):
            p.stack(Out).a = u64(file)
    build(body)
