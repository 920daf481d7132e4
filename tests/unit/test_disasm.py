"""pybpf.disasm without LLVM: the llvm quirks we mirror, the annotated style
(golden output with source lines), and errors on bad input.

The llvm style is checked against llvm-objdump-19 itself in
test_disasm_oracle.py; the cases here document what it showed us.
"""

import linecache

import pytest

from pybpf import asm, asm_text, disasm, isa
from pybpf.errors import DecodeError, SourceLocation
from pybpf.isa import R0, R1, R2, R3, R10

# --- llvm ------------------------------------------------------------------------------


@pytest.mark.parametrize("insn, text", [
    # alu32 (implied by --mcpu=v4): narrow loads and stores name w registers
    (isa.ldx(1, R1, R2, 0), "w1 = *(u8 *)(r2 + 0)"),
    (isa.ldx(8, R1, R10, -8), "r1 = *(u64 *)(r10 - 8)"),
    (isa.ldx(2, R1, R2, -4, signed=True), "r1 = *(s16 *)(r2 - 4)"),
    (isa.stx(4, R10, -4, R1), "*(u32 *)(r10 - 4) = w1"),
    (isa.st(8, R10, -8, -1), "*(u64 *)(r10 - 8) = -1"),
    (isa.atomic(4, isa.BPF_ADD | isa.BPF_FETCH, R1, 0, R0),
     "w0 = atomic_fetch_add((u32 *)(r1 + 0), w0)"),
    (isa.atomic(8, isa.BPF_CMPXCHG, R1, 0, R2), "r0 = cmpxchg_64(r1 + 0, r0, r2)"),
    (isa.atomic(4, isa.BPF_XCHG, R1, 0, R2), "w2 = xchg32_32(r1 + 0, w2)"),
    # every call prints its imm, whatever src says
    (isa.call_local(-3), "call -3"),
    (isa.call_kfunc(77), "call 77"),
    # an indirect packet load loses its imm; ld_abs keeps it, signed
    (isa.ld_ind(1, R1, 5), "r0 = *(u8 *)skb[r1]"),
    (isa.ld_abs(4, -1), "r0 = *(u32 *)skb[-1]"),
    # ld_imm64: signed 64-bit; with a pseudo src only the low 32 bits, unsigned
    (isa.ld_imm64(R1, 0x123456789), "r1 = 4886718345 ll"),
    (isa.ld_imm64(R1, -1 << 63), "r1 = -9223372036854775808 ll"),
    (isa.ld_imm64(R1, -2, isa.BPF_PSEUDO_MAP_VALUE), "ld_pseudo\tr1, 2, 4294967294"),
    # class ALU byte swaps name r registers too
    (isa.endian(R3, 16, big=True), "r3 = be16 r3"),
    (isa.bswap(R3, 64), "r3 = bswap64 r3"),
    (isa.addr_space_cast(R1, R2, 1, 0), "r1 = addr_space_cast(r2, 1, 0)"),
    (isa.movsx(R1, R2, 16, alu64=False), "w1 = (s16)w2"),
    (isa.alu(isa.BPF_MOD, R1, 3, off=1), "r1 s%= 3"),
    (isa.gotol(-5), "gotol -5"),
    (isa.ja(0), "goto +0"),
])
def test_llvm_text(insn, text):
    assert disasm.format_instruction(insn) == text


def test_llvm_jump_annotations_wrap_like_objdump():
    # llvm-objdump appends the target's byte offset; 0 prints bare, and
    # targets before the section wrap around 64 bits.
    assert disasm.format_instruction(isa.ja(-1), slot=0, section=".text") == "goto -1 <.text>"
    assert (disasm.format_instruction(isa.ja(-5), slot=0, section=".text")
            == "goto -5 <.text+0xffffffffffffffe0>")
    assert (disasm.format_instruction(isa.may_goto(2), slot=3, section=".text")
            == "may_goto +2 <.text+0x30>")
    assert disasm.format_instruction(isa.ja(2)) == "goto +2"  # no section, no annotation


# --- annotated -------------------------------------------------------------------------

# A pretend DSL program: its text is what source=True shows.
PROGRAM_FILE = "<count.py>"
PROGRAM = """\
def count(ctx):
    key = bpf_get_current_pid_tgid() >> 32
    value = counts.lookup(key)
    if value is None:
        return 0
    value += 1   # atomically
    return 0
"""


def build_count_program() -> asm.AssembledProgram:
    linecache.cache[PROGRAM_FILE] = (len(PROGRAM), None, PROGRAM.splitlines(True), PROGRAM_FILE)
    a = asm.Assembler()

    def at(line):
        return SourceLocation(PROGRAM_FILE, line)
    a.function("count", at(1))
    a.call("get_current_pid_tgid", at(2))
    a.emit(isa.alu(isa.BPF_RSH, R0, 32), at(2))
    a.emit(isa.stx(4, R10, -4, R0), at(2))
    a.emit(isa.mov(R2, R10), at(3))
    a.emit(isa.alu(isa.BPF_ADD, R2, -4), at(3))
    a.ld_map(R1, "counts", location=at(3))
    a.call("map_lookup_elem", at(3))
    a.jump(isa.BPF_JEQ, R0, 0, "out", location=at(4))
    a.emit(isa.mov(R1, 1), at(6))
    a.emit(isa.atomic(8, isa.BPF_ADD, R0, 0, R1), at(6))
    a.label("out", at(7))
    a.emit(isa.mov(R0, 0), at(7))
    a.emit(isa.exit_(), at(7))
    return a.assemble()


GOLDEN = """\
# slot: instruction. rN is a 64-bit register, wN its low 32 bits; r0 holds results
# and the return value, r1-r5 call arguments (clobbered by calls), r6-r9 survive
# calls, r10 is the read-only frame pointer. An ld_imm64 ("... ll") fills two slots.

count:
; <count.py>:2  key = bpf_get_current_pid_tgid() >> 32
   0: call bpf_get_current_pid_tgid             # helper 14
   1: r0 >>= 32
   2: *(u32 *)(r10 - 4) = w0
; <count.py>:3  value = counts.lookup(key)
   3: r2 = r10
   4: r2 += -4
   5: r1 = map[counts] ll                       # the map, set at load time
   7: call bpf_map_lookup_elem                  # helper 1
; <count.py>:4  if value is None:
   8: if r0 == 0 goto out
; <count.py>:6  value += 1   # atomically
   9: r1 = 1
  10: lock *(u64 *)(r0 + 0) += r1
out:
; <count.py>:7  return 0
  11: r0 = 0
  12: exit                                      # return r0"""


def test_annotated_golden_with_source():
    program = build_count_program()
    assert disasm.disassemble(program, style="annotated", source=True) == GOLDEN
    parsed = asm_text.parse(GOLDEN)
    assert parsed.instructions == program.instructions
    assert parsed.relocations == program.relocations


def test_annotated_invents_labels_for_unnamed_targets():
    insns = [isa.jump(isa.BPF_JGT, R1, R2, 1), isa.call_local(1), isa.exit_(),
             isa.ld_imm64(R1, -1, isa.BPF_PSEUDO_FUNC), isa.ja(-10), isa.exit_()]
    text = disasm.disassemble(insns, style="annotated", legend=False)
    assert text.splitlines() == [
        "   0: if r1 > r2 goto L2",
        "   1: call L3                                   # bpf-to-bpf call",
        "L2:",
        "   2: exit                                      # return r0",
        "",  # functions start after a blank line
        "L3:",
        "   3: r1 = subprog[L3] ll                       # address of a function (a callback)",
        "   5: goto -10                                  # target is not an instruction of "
        "this program",
        "   6: exit                                      # return r0",
    ]


def test_annotated_keeps_what_llvm_cannot_say():
    lines = [disasm.format_instruction(insn, style="annotated") for insn in (
        isa.ld_ind(1, R1, 5), isa.call_kfunc(77), isa.call_helper(100000),
        isa.ld_imm64(R1, 5 | 8 << 32, isa.BPF_PSEUDO_MAP_VALUE))]
    assert [line.split("  ")[0] for line in lines] == [
        "r0 = *(u8 *)skb[r1 + 5]", "call kfunc 77", "call 100000", "ld_pseudo r1, 2, 0x800000005"]
    assert lines[3].endswith(
        "# BPF_PSEUDO_MAP_VALUE: address in the value of the map with fd 5, offset 8")


def test_annotated_label_names_never_clash():
    a = asm.Assembler()
    a.label("L1")
    a.emit(isa.ja(0))
    a.emit(isa.exit_())
    text = disasm.disassemble(a.assemble(), style="annotated", legend=False)
    assert "L1_:" in text.splitlines()
    assert "goto L1_" in text


# --- input and errors ----------------------------------------------------------------


def test_accepts_programs_instructions_and_bytes():
    insns = [isa.mov(R0, 0), isa.exit_()]
    program = asm.AssembledProgram(insns)
    for source in (insns, tuple(insns), program, isa.encode(insns), bytearray(isa.encode(insns))):
        assert disasm.disassemble(source) == "r0 = 0\nexit"


@pytest.mark.parametrize("data, offset, shown", [
    (b"\xff" * 8, 0, "ff ff ff ff ff ff ff ff"),
    (isa.exit_().encode() + bytes.fromhex("0c0b000000000000"), 8, "0c 0b 00 00 00 00 00 00"),
    (isa.exit_().encode() + b"\x95\x00\x00", 8, "95 00 00"),
    (bytes.fromhex("1801000001000000"), 0, "18 01 00 00 01 00 00 00"),
])
def test_garbage_bytes_name_offset_and_bytes(data, offset, shown):
    with pytest.raises(DecodeError) as info:
        disasm.disassemble(data)
    assert info.value.offset == offset
    assert "byte offset %d" % offset in str(info.value)
    assert shown in str(info.value)


def test_invalid_instructions_are_refused():
    with pytest.raises(DecodeError) as info:
        disasm.disassemble([isa.exit_(), isa.Instruction(0xE7, 1)])  # ALU64 op 0xe0
    assert "byte offset 8" in str(info.value)
    with pytest.raises(DecodeError):
        disasm.format_instruction(isa.Instruction(isa.BPF_JMP | isa.BPF_EXIT, imm=1))


def test_unknown_style():
    with pytest.raises(ValueError, match="unknown style"):
        disasm.disassemble([isa.exit_()], style="intel")
