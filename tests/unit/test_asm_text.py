"""pybpf.asm_text: what it accepts, what it builds, and how it says no."""

import pytest

from pybpf import asm, asm_text, isa
from pybpf.errors import AssemblyError, SourceLocation
from pybpf.isa import R1, R2, R3, R10


def parse(text):
    return asm_text.parse(text).instructions


def test_labels_and_symbolic_jumps():
    program = asm_text.parse("""
        # comments, blank lines and slot numbers are ignored
        start:
           0: if r1 > r2 goto out   ; forward
           1: if w1 != 7 goto start // backward
        loop: may_goto out
              gotol loop
        out:  exit
    """, filename="jumps.s")
    assert program.instructions == (
        isa.jump(isa.BPF_JGT, R1, R2, 3), isa.jump(isa.BPF_JNE, R1, 7, -2, jmp32=True),
        isa.may_goto(1), isa.gotol(-2), isa.exit_())
    assert program.labels == {"start": 0, "loop": 2, "out": 4}
    assert program.lines[0] == SourceLocation("jumps.s", 4)
    assert program.lines[4] == SourceLocation("jumps.s", 8)


def test_numeric_offsets_are_kept_exactly():
    # even where they leave the program: the text is taken at its word
    assert parse("goto +3\nif r1 s< -1 goto -7\ngotol -100000\nmay_goto 0") == (
        isa.ja(3), isa.jump(isa.BPF_JSLT, R1, -1, -7), isa.gotol(-100000), isa.may_goto(0))


def test_calls():
    program = asm_text.parse("""
        call bpf_map_lookup_elem
        call ktime_get_ns
        call 100000
        call helper_like_name
        call pc-5
        call kfunc 4242
        exit
    helper_like_name:
        exit
    """)
    assert program.instructions == (
        isa.call_helper(1), isa.call_helper(5), isa.call_helper(100000), isa.call_local(3),
        isa.call_local(-5), isa.call_kfunc(4242), isa.exit_(), isa.exit_())
    assert program.functions == ("helper_like_name",)  # a local label wins over helpers


def test_ld_imm64_forms():
    program = asm_text.parse("""
        r1 = map[events] ll
        r2 = map[config][0]+16 ll
        r3 = subprog[callback] ll
        r4 = 0xffffffffffffffff ll
        ld_pseudo r5, 3, 0x100000007
    callback:
        exit
    """)
    assert program.instructions == (
        isa.ld_imm64(R1, 0, isa.BPF_PSEUDO_MAP_FD), isa.ld_imm64(R2, 0, isa.BPF_PSEUDO_MAP_VALUE),
        isa.ld_imm64(R3, 5, isa.BPF_PSEUDO_FUNC), isa.ld_imm64(isa.R4, -1),
        isa.ld_imm64(isa.R5, 0x100000007, isa.BPF_PSEUDO_BTF_ID), isa.exit_())
    assert program.relocations == (
        asm.Relocation(0, asm.RELOC_MAP_FD, "events"),
        asm.Relocation(1, asm.RELOC_MAP_VALUE, "config", 16))
    assert program.functions == ("callback",)


@pytest.mark.parametrize("text, insn", [
    ("r1 = 0xffffffff", isa.mov(R1, -1)),            # 32-bit immediates wrap, as in llvm
    ("w1 = 0x80000000", isa.mov(R1, -(1 << 31), alu64=False)),
    ("r1 = 0b101", isa.mov(R1, 5)),
    ("r1=r2", isa.mov(R1, R2)),
    ("r1 = - r1", isa.neg(R1)),
    ("r1 = *(u8 *)(r2 + 0)", isa.ldx(1, R1, R2, 0)),   # r and w both name a narrow load
    ("w1 = *(u8 *)(r2+0x10)", isa.ldx(1, R1, R2, 16)),
    ("*(u32 *)(r10 - 4) = r1", isa.stx(4, R10, -4, R1)),
    ("*(u8 *)(r1 - 32768) = 255", isa.st(1, R1, -32768, 255)),
    ("lock *(u32 *)(r1 + 0) += r2", isa.atomic(4, isa.BPF_ADD, R1, 0, R2)),
    ("r0 = *(u16 *)skb[r3 + 4]", isa.ld_ind(2, R3, 4)),
    ("r0 = *(u32 *)skb[0x10]", isa.ld_abs(4, 16)),
    ("r1 = addr_space_cast(r2, 65535, 65535)",
     isa.Instruction(0xBF, 1, 2, isa.BPF_ADDR_SPACE_CAST, -1)),
])
def test_spellings(text, insn):
    assert parse(text) == (insn,)


def test_text_is_remembered_for_source_lines():
    import linecache
    asm_text.parse("r0 = 0\nexit\n", filename="<remembered>")
    assert linecache.getline("<remembered>", 2) == "exit\n"


# --- errors ----------------------------------------------------------------------------

BAD = [
    ("frobnicate r1", "unknown mnemonic 'frobnicate'"),
    ("r1 +== 2", "cannot parse"),
    ("goto nowhere", "unknown label 'nowhere'"),
    ("goto +32768", "jump offset +32768 does not fit in a signed 16-bit offset"),
    ("gotol +2147483648", "does not fit in a signed 32-bit offset"),
    ("r11 = 1", "bad register 'r11'"),
    ("w1 = w11", "bad register 'w11'"),
    ("*(u64 *)(w10 - 8) = r1", "register 'w10' is not allowed here"),
    ("r1 += w2", "register 'w2' is not allowed here"),
    ("if w1 > r2 goto +1", "register 'r2' is not allowed here"),
    ("w1 = *(u64 *)(r2 + 0)", "register 'w1' is not allowed here"),
    ("w1 = *(s8 *)(r2 + 0)", "register 'w1' is not allowed here"),
    ("w1 = be16 w1", "register 'w1' is not allowed here"),
    ("r1 = 4294967296", "immediate 4294967296 does not fit in 32 bits"),
    ("r1 = -2147483649", "does not fit in 32 bits"),
    ("r1 = 18446744073709551616 ll", "does not fit in 64 bits"),
    ("r1 = 010", "bad number '010'"),
    ("r1 = 0xzz", "bad number '0xzz'"),
    ("*(u8 *)(r1 + 32768) = 1", "offset +32768 does not fit"),
    ("*(u24 *)(r1 + 0) = 1", "bad size 'u24'"),
    ("*(s8 *)(r1 + 0) = 1", "bad size 's8'"),
    ("r1 = *(s64 *)(r1 + 0)", "bad size 's64'"),
    ("lock *(u16 *)(r1 + 0) += w2", "bad size 'u16'"),
    ("lock *(u64 *)(r1 + 0) -= r2", "no atomic '-='"),
    ("r1 = xchg_16(r1 + 0, r1)", "bad size '_16'"),
    ("r1 = cmpxchg_64(r1 + 0, r1, r2)", "cmpxchg compares with and returns in r0"),
    ("r1 = atomic_fetch_add((u64 *)(r2 + 0), r3)", "result register must be the operand"),
    ("r1 = -r2", "neg works in place"),
    ("w1 = (s32)w2", "bad size 's32'"),
    ("r1 = *(u8 *)skb[4]", "packet loads always load into r0"),
    ("call bpf_no_such_helper", "unknown helper or function 'bpf_no_such_helper'"),
    ("r1 = subprog[nothing] ll", "unknown function 'nothing'"),
    ("ld_pseudo r1, 7, 0", "pseudo source 7 does not fit"),
    ("r1 = map[m][0]+2147483648 ll", "value offset 2147483648 does not fit"),
    ("r1 = addr_space_cast(r2, 65536, 0)", "address space 65536 does not fit"),
    ("here:\nhere:\nexit", "label 'here' defined twice"),
]


@pytest.mark.parametrize("line, message", BAD)
def test_bad_assembly_names_file_line_and_text(line, message):
    text = "r0 = 0\n" + line + "\nexit\n"
    with pytest.raises(AssemblyError) as info:
        asm_text.parse(text, filename="bad.s")
    error = info.value
    assert message in error.message
    bad_line = 2 if "\n" not in line else 3  # a second definition is the culprit
    assert error.location == SourceLocation("bad.s", bad_line)
    assert error.text == text.splitlines()[bad_line - 1]
    assert str(error).startswith("bad.s:%d: " % bad_line)


def test_label_too_far_for_a_16_bit_offset():
    text = "goto far\n" + "r0 = 0\n" * 40000 + "far:\nexit\n"
    with pytest.raises(AssemblyError) as info:
        asm_text.parse(text, filename="far.s")
    assert str(info.value).startswith("far.s:1: jump to 'far' is 40000 instructions away")
    assert info.value.text == "goto far"
    program = asm_text.parse(text.replace("goto far", "gotol far"))
    assert program.instructions[0] == isa.gotol(40000)


def test_call_of_a_local_function_named_like_nothing_known():
    with pytest.raises(AssemblyError, match="unknown helper or function 'later'"):
        asm_text.parse("call later\nexit")
    assert parse("call later\nexit\nlater: exit")[0] == isa.call_local(1)
