"""The kernel style says what the kernel says.

``corpus/every_opcode.kernel.txt`` is real kernel output: the "Live regs
before insn" listing of a verifier log (BPF_PROG_LOAD, log_level 2, Linux
6.18) for ``corpus/every_opcode.s`` without its ``ld_pseudo`` lines (the
kernel rejects those unknown map fds before it prints anything), loaded as a
socket filter. That listing is printed by print_bpf_insn() in
kernel/bpf/disasm.c, as verifier logs and ``bpftool prog dump xlated`` are.
What it cannot show (kfuncs, unknown helpers, map references, which bpftool
prints through its print_imm() callback) is checked against strings derived
from the kernel sources, cited at each case.
"""

import os

import pytest

from pybpf import asm_text, disasm, isa
from pybpf.errors import DecodeError
from pybpf.isa import R0, R1, R2, R10

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def test_every_opcode_reads_as_the_kernel_printed_it():
    with open(os.path.join(CORPUS, "every_opcode.s")) as f:
        source = "".join(line for line in f if "ld_pseudo" not in line)
    with open(os.path.join(CORPUS, "every_opcode.kernel.txt")) as f:
        kernel = f.read().splitlines()  # the verifier prints "%d: ", bpftool "% 4d: "
    ours = disasm.disassemble(asm_text.parse(source), style="kernel").splitlines()
    assert [line.lstrip() for line in ours] == kernel


@pytest.mark.parametrize("insn, text", [
    # __func_get_name(): helper names from func_id_str, "kernel-function" for a
    # kfunc without a callback, "unknown" otherwise; "(%02x) call %s#%d"
    (isa.call_helper(1), "(85) call bpf_map_lookup_elem#1"),
    (isa.call_helper(100000), "(85) call unknown#100000"),
    (isa.call_kfunc(4242), "(85) call kernel-function#4242"),
    # "(%02x) call pc%s" with "%+d" of imm
    (isa.call_local(-3), "(85) call pc-3"),
    # bpftool print_imm(): "map[id:%u]", "map[id:%u][0]+%u", "map[idx:%u]+%u",
    # "subprog[%+d]", else "0x%llx" of the whole 64-bit immediate
    (isa.ld_imm64(R1, 5, isa.BPF_PSEUDO_MAP_FD), "(18) r1 = map[id:5]"),
    (isa.ld_imm64(R1, 5 | 8 << 32, isa.BPF_PSEUDO_MAP_VALUE), "(18) r1 = map[id:5][0]+8"),
    (isa.ld_imm64(R1, 2 | 4 << 32, isa.BPF_PSEUDO_MAP_IDX_VALUE), "(18) r1 = map[idx:2]+4"),
    (isa.ld_imm64(R1, -2 & 0xFFFFFFFF, isa.BPF_PSEUDO_FUNC), "(18) r1 = subprog[-2]"),
    (isa.ld_imm64(R1, 3, isa.BPF_PSEUDO_MAP_IDX), "(18) r1 = 0x3"),
    (isa.ld_imm64(R1, 7 | 1 << 32, isa.BPF_PSEUDO_BTF_ID), "(18) r1 = 0x100000007"),
    (isa.ld_imm64(R1, -1), "(18) r1 = 0xffffffffffffffff"),
    # "(%02x) r0 = *(%s *)skb[r%d + %d]"
    (isa.ld_ind(2, R2, 14), "(48) r0 = *(u16 *)skb[r2 + 14]"),
    # "(%02x) if %c%d %s 0x%x goto pc%+d": the immediate as unsigned hex
    (isa.jump(isa.BPF_JSLT, R1, -1, -5, jmp32=True), "(c6) if w1 s< 0xffffffff goto pc-5"),
    # "(%02x) *(%s *)(r%d %+d) = r%d": r registers for every width
    (isa.stx(1, R10, -1, R1), "(73) *(u8 *)(r10 -1) = r1"),
    # "(%02x) r%d = atomic%s_xchg((%s *)(r%d %+d), r%d)" on 32 bits
    (isa.atomic(4, isa.BPF_XCHG, R1, 4, R2), "(c3) r2 = atomic_xchg((u32 *)(r1 +4), r2)"),
    (isa.atomic(8, isa.BPF_CMPXCHG, R1, 0, R0),
     "(db) r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r0)"),
    # is_mov_percpu_addr(): "(%02x) r%d = &(void __percpu *)(r%d)", written by
    # the verifier only (off BPF_ADDR_PERCPU)
    (isa.Instruction(0xbf, 0, 1, isa.BPF_ADDR_PERCPU), "(bf) r0 = &(void __percpu *)(r1)"),
])
def test_kernel_strings(insn, text):
    assert disasm.format_instruction(insn, style="kernel") == text


def test_kernel_layout_numbers_slots_like_bpftool():
    # dump_xlated_plain(): printf("% 4d: ", i) per slot; ld_imm64 takes two.
    insns = [isa.ld_imm64(R1, 1)] + [isa.mov(R0, 0)] * 1000 + [isa.exit_()]
    lines = disasm.disassemble(insns, style="kernel").splitlines()
    assert lines[:2] == ["   0: (18) r1 = 0x1", "   2: (b7) r0 = 0"]
    assert lines[-1] == " 1002: (95) exit"


def test_percpu_move_is_kernel_only():
    """No loader may submit the per-CPU move: the other styles refuse it in one
    line that says which style prints it, and so does an assembler."""
    move = isa.Instruction(0xbf, 0, 0, isa.BPF_ADDR_PERCPU)
    for style in ("llvm", "annotated"):
        with pytest.raises(DecodeError, match=r"per-CPU address move \(off -1\), which only "
                                              r"the verifier writes; only the kernel style"):
            disasm.format_instruction(move, style=style)
    assert disasm.disassemble([move, isa.exit_()], style="kernel").splitlines() == [
        "   0: (bf) r0 = &(void __percpu *)(r0)", "   1: (95) exit"]
    with pytest.raises(DecodeError, match="imm 0"):   # the rest must still be a valid move
        disasm.format_instruction(move._replace(imm=1), style="kernel")
