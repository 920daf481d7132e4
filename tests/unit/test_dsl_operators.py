"""Operators: signedness picks the instruction, constants fold, identities
and powers of two simplify, and typing mistakes are build errors."""

from pybpf import isa
from pybpf.dsl import UserPtr, s16, s32, s64, u8, u16, u32, u64
from pybpf.isa import BPF_K, BPF_X

from dsl_helpers import ALU32, ALU64, JMP, JMP32, build, build_error, has, opcodes


def arg(ctx, vtype):
    return vtype(ctx.args[0])


def store(p, value, vtype=u64):
    """Keep ``value`` alive: store it to the stack."""
    slot = p.stack(vtype)
    slot[0] = value


def test_shift_right_is_arithmetic_on_signed_values():
    program = build(lambda p, ctx: store(p, arg(ctx, s64) >> 3))
    assert has(program, ALU64 | isa.BPF_ARSH | BPF_K, imm=3)
    program = build(lambda p, ctx: store(p, arg(ctx, u64) >> 3))
    assert has(program, ALU64 | isa.BPF_RSH | BPF_K, imm=3)


def test_32_bit_values_use_32_bit_operations():
    program = build(lambda p, ctx: store(p, arg(ctx, s32) >> ctx.args[1], s32))
    assert has(program, ALU32 | isa.BPF_ARSH | BPF_X)
    program = build(lambda p, ctx: store(p, arg(ctx, u16) + arg(ctx, u8), u32))
    assert has(program, ALU32 | isa.BPF_ADD | BPF_X)


def test_comparisons_pick_signed_or_unsigned_and_width():
    def body(vtype):
        def compare(p, ctx):
            with p.if_(arg(ctx, vtype) < 5):
                p.return_(1)
        return compare
    # the jump skips the body: it tests the negated condition
    assert has(build(body(s64)), JMP | isa.BPF_JSGE | BPF_K, imm=5)
    assert has(build(body(u64)), JMP | isa.BPF_JGE | BPF_K, imm=5)
    assert has(build(body(s32)), JMP32 | isa.BPF_JSGE | BPF_K, imm=5)
    assert has(build(body(u32)), JMP32 | isa.BPF_JGE | BPF_K, imm=5)


def test_unsigned_division_and_modulo():
    program = build(lambda p, ctx: store(p, arg(ctx, u64) / arg(ctx, u64)))
    assert has(program, ALU64 | isa.BPF_DIV | BPF_X, off=0)
    program = build(lambda p, ctx: store(p, arg(ctx, u32) % 7, u32))
    assert has(program, ALU32 | isa.BPF_MOD | BPF_K, off=0, imm=7)


def test_signed_division_needs_cpu_v4():
    def divide(p, ctx):
        store(p, arg(ctx, s64) / 3)  # error: sdiv
    with build_error("sdiv", match="cpu v4"):
        build(divide)
    assert has(build(divide, cpu=4), ALU64 | isa.BPF_DIV | BPF_K, off=1, imm=3)
    program = build(lambda p, ctx: store(p, arg(ctx, s32) % 3, s32), cpu=4)
    assert has(program, ALU32 | isa.BPF_MOD | BPF_K, off=1, imm=3)


def test_constants_fold():
    program = build(lambda p, ctx: store(p, u64((2 + 3) * 4) << 2))
    assert not any(op & 0x07 in (ALU32, ALU64) for op in opcodes(program)[:-2])
    assert has(program, isa.BPF_ST | isa.BPF_MEM | isa.BPF_DW, imm=80)
    # typed constants fold with C's conversions
    assert (u8(255) + u8(1)).value == 256      # promoted to 32 bits first
    assert (u32(0xFFFFFFFF) + 1).value == 0    # wraps
    assert (s32(-7) / 2).value == -3           # truncates toward zero, like C
    assert (s32(-7) % 2).value == -1
    assert (s64(-8) >> 1).value == -4


def test_identities_and_powers_of_two():
    program = build(lambda p, ctx: store(p, arg(ctx, u64) + 0))
    assert not has(program, ALU64 | isa.BPF_ADD | BPF_K)
    program = build(lambda p, ctx: store(p, arg(ctx, u64) * 8))
    assert has(program, ALU64 | isa.BPF_LSH | BPF_K, imm=3)
    program = build(lambda p, ctx: store(p, arg(ctx, u64) / 16))
    assert has(program, ALU64 | isa.BPF_RSH | BPF_K, imm=4)
    program = build(lambda p, ctx: store(p, arg(ctx, u64) % 16))
    assert has(program, ALU64 | isa.BPF_AND | BPF_K, imm=15)
    program = build(lambda p, ctx: store(p, arg(ctx, s64) / 16), cpu=4)
    assert has(program, ALU64 | isa.BPF_DIV | BPF_K, off=1)   # not a shift: rounds differently


def test_large_constants_need_ld_imm64():
    program = build(lambda p, ctx: store(p, arg(ctx, u64) + 0x100000000))
    assert has(program, isa.LD_IMM64_OPCODE, imm=0x100000000)
    program = build(lambda p, ctx: store(p, arg(ctx, u64) + 0x7FFFFFFF))
    assert has(program, ALU64 | isa.BPF_ADD | BPF_K, imm=0x7FFFFFFF)
    program = build(lambda p, ctx: store(p, arg(ctx, u32) + 0xFFFFFFFF, u32))
    assert has(program, ALU32 | isa.BPF_ADD | BPF_K, imm=-1)   # a 32-bit pattern


def test_conversions():
    assert has(build(lambda p, ctx: store(p, s64(arg(ctx, s32)))), ALU64 | isa.BPF_ARSH | BPF_K,
               imm=32)
    assert has(build(lambda p, ctx: store(p, s64(arg(ctx, s32))), cpu=4),
               ALU64 | isa.BPF_MOV | BPF_X, off=32)
    # u32 -> u64 costs nothing: 32-bit values are kept zero-extended
    program = build(lambda p, ctx: store(p, u64(arg(ctx, u32)) + 1))
    assert opcodes(program).count(ALU64 | isa.BPF_MOV | BPF_X) == 0
    # narrowing costs nothing until the full register is needed
    program = build(lambda p, ctx: store(p, u32(arg(ctx, u64)), u32))
    assert not has(program, ALU32 | isa.BPF_MOV | BPF_X)
    program = build(lambda p, ctx: store(p, u64(u32(arg(ctx, u64)))))
    assert has(program, ALU32 | isa.BPF_MOV | BPF_X)
    # ... or never, when the value is known to fit
    program = build(lambda p, ctx: store(p, u64(u32(arg(ctx, u64) >> 32))))
    assert not has(program, ALU32 | isa.BPF_MOV | BPF_X)
    program = build(lambda p, ctx: store(p, s16(arg(ctx, u64)), s32))
    assert has(program, ALU32 | isa.BPF_ARSH | BPF_K, imm=16)


def test_mixing_signedness_is_an_error():
    def mixed(p, ctx):
        with p.if_(arg(ctx, s32) < arg(ctx, u32)):  # error: mixed
            p.return_(1)
    with build_error("mixed", match="mixes signed s32 and unsigned u32"):
        build(mixed)
    # a wider signed type holds every value of the narrower unsigned one
    build(lambda p, ctx: store(p, arg(ctx, s64) + arg(ctx, u32)))


def test_constants_must_fit():
    def negative(p, ctx):
        with p.if_(arg(ctx, u32) == -1):  # error: fit
            p.return_(1)
    with build_error("fit", match="constant -1 does not fit u32"):
        build(negative)
    # as a bit pattern in arithmetic, a negative constant is fine
    build(lambda p, ctx: store(p, arg(ctx, u64) & ~7))


def test_shift_and_division_mistakes():
    def shift(p, ctx):
        store(p, arg(ctx, u32) << 32, u32)  # error: shift
    with build_error("shift", match="out of range for u32"):
        build(shift)

    def divide(p, ctx):
        store(p, arg(ctx, u64) / 0)  # error: zero
    with build_error("zero", match="division by constant zero"):
        build(divide)


def test_conditions_are_not_python_bools():
    def python_if(p, ctx):
        if arg(ctx, u64) > 3:  # error: bool
            p.return_(1)
    with build_error("bool", match="no truth value"):
        build(python_if)

    def constant(p, ctx):
        with p.if_(u32(3) > 2):  # error: constant
            p.return_(1)
    with build_error("constant", match="always true"):
        build(constant)


def test_pointer_arithmetic_only_on_user_and_kernel_addresses():
    def user(p, ctx):
        store(p, u64(UserPtr(ctx.args[0]) * 2))  # error: times
    with build_error("times", match="only pointer \\+ int"):
        build(user)

    def memory(p, ctx):
        store(p, u64(p.stack(u64[2])._pointer_value() + 8))  # error: memory
    with build_error("memory", match="program memory"):
        build(memory)
    assert has(build(lambda p, ctx: store(p, u64(UserPtr(ctx.args[0]) + 8))),
               ALU64 | isa.BPF_ADD | BPF_K, imm=8)


def test_low_half_mask_is_a_32_bit_move():
    program = build(lambda p, ctx: store(p, arg(ctx, u64) & 0xFFFFFFFF))
    assert has(program, ALU32 | isa.BPF_MOV | BPF_X)
    assert not has(program, isa.LD_IMM64_OPCODE)
