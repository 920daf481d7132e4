# Every valid opcode of the eBPF instruction set, in LLVM syntax: each
# class/op/source/size/mode combination, the variants selected by offset or
# immediate (sdiv/smod, movsx widths, byte swaps, atomics) and every ld_imm64
# pseudo source llvm can write (ld_pseudo keeps only 32 bits of imm).
#
# tests/unit/test_disasm_oracle.py assembles this file with llvm-mc-19 and
# with pybpf.asm_text (same bytes) and disassembles it with llvm-objdump-19 and
# pybpf.disasm (same text). test_disasm_kernel.py compares our kernel style
# with the verifier log Linux printed for it (corpus/every_opcode.kernel.txt).
#
# Keep every instruction reachable and every jump inside the main function, so
# the kernel can print the whole program; keep ld_pseudo lines where no jump
# crosses them (the kernel test drops them: it rejects unknown map fds first).
# Comments use "#": llvm-mc reads ";" as a statement separator.

# --- BPF_ALU64, immediate source ---
r0 = 1
r1 = -1
r2 += 5
r2 -= -7
r3 *= 3
r3 /= 9
r3 s/= -9
r4 |= 255
r4 &= 65535
r5 <<= 3
r5 >>= 60
r5 s>>= 2
r6 %= 10
r6 s%= -10
r7 ^= 2147483647
r7 = -2147483648
# --- BPF_ALU64, register source ---
r8 = r10
r1 += r2
r1 -= r3
r1 *= r4
r1 /= r5
r1 s/= r6
r1 |= r7
r1 &= r8
r1 <<= r9
r1 >>= r0
r1 s>>= r2
r1 %= r3
r1 s%= r4
r1 ^= r5
r1 = (s8)r2
r1 = (s16)r3
r1 = (s32)r4
r1 = -r1
r1 = addr_space_cast(r2, 0, 1)
r1 = addr_space_cast(r2, 1, 0)
# --- BPF_ALU (32-bit), immediate source ---
w0 = 1
w1 = -1
w2 += 5
w2 -= -7
w3 *= 3
w3 /= 9
w3 s/= -9
w4 |= 255
w4 &= 65535
w5 <<= 3
w5 >>= 30
w5 s>>= 2
w6 %= 10
w6 s%= -10
w7 ^= 2147483647
# --- BPF_ALU (32-bit), register source ---
w8 = w9
w1 += w2
w1 -= w3
w1 *= w4
w1 /= w5
w1 s/= w6
w1 |= w7
w1 &= w8
w1 <<= w9
w1 >>= w0
w1 s>>= w2
w1 %= w3
w1 s%= w4
w1 ^= w5
w1 = (s8)w2
w1 = (s16)w3
w1 = -w1
# --- byte swaps: BPF_ALU|BPF_END to little/big endian, BPF_ALU64|BPF_END ---
r1 = le16 r1
r2 = le32 r2
r3 = le64 r3
r4 = be16 r4
r5 = be32 r5
r6 = be64 r6
r7 = bswap16 r7
r8 = bswap32 r8
r9 = bswap64 r9
# --- BPF_JMP, immediate and register source ---
if r1 == 0 goto +0
if r1 > 1 goto +1
if r1 >= -1 goto +0
if r1 & 8 goto +0
if r1 != 2147483647 goto +0
if r1 s> -2147483648 goto +0
if r1 s>= 3 goto +0
if r1 < 4 goto +0
if r1 <= 5 goto +0
if r1 s< 6 goto +0
if r1 s<= 7 goto -2
if r1 == r2 goto +0
if r1 > r2 goto +0
if r1 >= r2 goto +0
if r1 & r2 goto +0
if r1 != r2 goto +0
if r1 s> r2 goto +0
if r1 s>= r2 goto +0
if r1 < r2 goto +0
if r1 <= r2 goto +0
if r1 s< r2 goto +0
if r1 s<= r10 goto +0
# --- BPF_JMP32 ---
if w1 == 0 goto +0
if w1 > 1 goto +0
if w1 >= -1 goto +0
if w1 & 8 goto +0
if w1 != 2147483647 goto +0
if w1 s> -2147483648 goto +0
if w1 s>= 3 goto +0
if w1 < 4 goto +0
if w1 <= 5 goto +0
if w1 s< 6 goto +0
if w1 s<= 7 goto +1
if w1 == w2 goto +0
if w1 > w2 goto +0
if w1 >= w2 goto +0
if w1 & w2 goto +0
if w1 != w2 goto +0
if w1 s> w2 goto +0
if w1 s>= w2 goto +0
if w1 < w2 goto +0
if w1 <= w2 goto +0
if w1 s< w2 goto +0
if w1 s<= w10 goto +0
# --- unconditional jumps ---
goto +0
gotol +0
may_goto +0
# --- BPF_LDX: loads, zero- and sign-extending ---
w1 = *(u8 *)(r2 + 0)
w1 = *(u16 *)(r10 - 2)
w1 = *(u32 *)(r3 + 32767)
r1 = *(u64 *)(r10 - 32768)
r1 = *(s8 *)(r2 + 1)
r1 = *(s16 *)(r2 - 4)
r1 = *(s32 *)(r2 + 8)
# --- BPF_ST: store an immediate ---
*(u8 *)(r10 - 1) = 255
*(u16 *)(r10 - 2) = -1
*(u32 *)(r10 - 8) = 2147483647
*(u64 *)(r10 - 16) = -2147483648
# --- BPF_STX: store a register ---
*(u8 *)(r10 - 1) = w1
*(u16 *)(r10 - 2) = w2
*(u32 *)(r10 - 4) = w3
*(u64 *)(r10 - 8) = r4
# --- BPF_STX|BPF_ATOMIC, 64-bit ---
lock *(u64 *)(r10 - 8) += r1
lock *(u64 *)(r10 - 8) |= r2
lock *(u64 *)(r10 - 8) &= r3
lock *(u64 *)(r10 - 8) ^= r4
r1 = atomic_fetch_add((u64 *)(r10 - 8), r1)
r2 = atomic_fetch_or((u64 *)(r10 - 8), r2)
r3 = atomic_fetch_and((u64 *)(r10 - 8), r3)
r4 = atomic_fetch_xor((u64 *)(r10 - 8), r4)
r5 = xchg_64(r10 - 8, r5)
r0 = cmpxchg_64(r10 - 8, r0, r6)
# --- BPF_STX|BPF_ATOMIC, 32-bit ---
lock *(u32 *)(r10 - 4) += w1
lock *(u32 *)(r10 - 4) |= w2
lock *(u32 *)(r10 - 4) &= w3
lock *(u32 *)(r10 - 4) ^= w4
w1 = atomic_fetch_add((u32 *)(r10 - 4), w1)
w2 = atomic_fetch_or((u32 *)(r10 - 4), w2)
w3 = atomic_fetch_and((u32 *)(r10 - 4), w3)
w4 = atomic_fetch_xor((u32 *)(r10 - 4), w4)
w5 = xchg32_32(r10 - 4, w5)
w0 = cmpxchg32_32(r10 - 4, w0, w6)
# --- BPF_LD: legacy packet loads, ld_imm64 ---
r0 = *(u8 *)skb[12]
r0 = *(u16 *)skb[-1]
r0 = *(u32 *)skb[2147483647]
r0 = *(u8 *)skb[r1]
r0 = *(u16 *)skb[r2]
r0 = *(u32 *)skb[r3]
r1 = 4886718345 ll
r2 = -1 ll
r3 = -9223372036854775808 ll
ld_pseudo r1, 1, 3
ld_pseudo r2, 2, 4294967295
ld_pseudo r3, 3, 7
ld_pseudo r4, 4, 1
ld_pseudo r5, 5, 0
ld_pseudo r6, 6, 2
# --- calls and exit: a helper, a bpf-to-bpf call ---
call 1
call .Lsubprogram
r0 = 0
exit
.Lsubprogram:
r0 = 1
exit
