"""The opcode fields of eBPF instructions, with the names the kernel gives them.

Classes, sizes, modes, ALU and jump operations, atomic operations and the
pseudo sources of ``ld_imm64`` and ``call``, as ``<linux/bpf_common.h>`` and
``<linux/bpf.h>`` spell them, so each can be looked up in the kernel source;
plus the tables built from them. This module imports nothing: :mod:`pybpf.isa`
re-exports every name, so ``isa.BPF_MOV`` is the usual way to reach them.
"""

# --- instruction classes (<linux/bpf_common.h>, <linux/bpf.h>) ---------------
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# --- load/store sizes ---------------------------------------------------------
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18

# --- load/store modes ---------------------------------------------------------
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xC0

# --- operand source -----------------------------------------------------------
BPF_K = 0x00
BPF_X = 0x08

# --- ALU operations -----------------------------------------------------------
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0
BPF_MOV = 0xB0
BPF_ARSH = 0xC0
BPF_END = 0xD0

# byte-swap direction, in the source bit of BPF_END
BPF_TO_LE = 0x00
BPF_TO_BE = 0x08

# --- jump operations ----------------------------------------------------------
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xA0
BPF_JLE = 0xB0
BPF_JSLT = 0xC0
BPF_JSLE = 0xD0
BPF_JCOND = 0xE0  # may_goto (kernel 6.9)

# --- atomic operations (in imm of BPF_STX | BPF_ATOMIC) ------------------------
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH

# --- src_reg of ld_imm64 ------------------------------------------------------
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6

# --- src_reg of BPF_CALL ------------------------------------------------------
BPF_HELPER_CALL = 0
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

# off of ALU64 MOV X that marks addr_space_cast (kernel 6.9)
BPF_ADDR_SPACE_CAST = 1
# off of ALU64 MOV X that makes a per-CPU address this CPU's (include/linux/filter.h):
# the verifier writes it when it inlines per-CPU lookups; no loader may submit it.
BPF_ADDR_PERCPU = -1

BPF_REG_FP = 10
MAX_BPF_REG = 11

SIZE_BYTES = {BPF_B: 1, BPF_H: 2, BPF_W: 4, BPF_DW: 8}
SIZE_OF_BYTES = {v: k for k, v in SIZE_BYTES.items()}

ALU_OPS = (BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH,
           BPF_RSH, BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV, BPF_ARSH, BPF_END)
COND_JUMP_OPS = (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT,
                 BPF_JSGE, BPF_JLT, BPF_JLE, BPF_JSLT, BPF_JSLE)
ATOMIC_OPS = (BPF_ADD, BPF_OR, BPF_AND, BPF_XOR,
              BPF_ADD | BPF_FETCH, BPF_OR | BPF_FETCH, BPF_AND | BPF_FETCH,
              BPF_XOR | BPF_FETCH, BPF_XCHG, BPF_CMPXCHG)
LD_IMM64_OPCODE = BPF_LD | BPF_IMM | BPF_DW
