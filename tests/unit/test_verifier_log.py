"""Parsing real verifier logs (captured from Linux 6.18) down to the slot the
verifier rejected, the instruction that last wrote the register it complains
about, and its statistics. No kernel needed."""

import pytest

from pybpf import isa
from pybpf.kernel.verifier_log import (VerifierStats, failing_slot, offending_writer_slot,
                                       parse_verifier_stats)

STATS = ("processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 "
         "peak_states 0 mark_read 0\n")

# r0 = 0; r1 = r2 (r2 never written); exit
UNINIT = """\
0: R1=ctx() R10=fp0
0: (b7) r0 = 0                        ; R0=0
1: (bf) r1 = r2
R2 !read_ok
""" + STATS

# A hash map lookup, then a load through r0 without a null check.
MAP_VALUE_NO_NULL_CHECK = """\
0: R1=ctx() R10=fp0
0: (62) *(u32 *)(r10 -4) = 0          ; R10=fp0 fp-8=0000????
1: (18) r1 = 0xffff888104451c00       ; R1=map_ptr(map=m,ks=4,vs=8)
3: (bf) r2 = r10                      ; R2=fp0 R10=fp0
4: (07) r2 += -4                      ; R2=fp-4
5: (85) call bpf_map_lookup_elem#1    ; R0=map_value_or_null(id=1,map=m,ks=4,vs=8)
6: (79) r0 = *(u64 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
processed 6 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""

# Two ld_imm64 (two slots each) before the failing load: slot 4 is instruction 2.
AFTER_LD_IMM64 = """\
0: R1=ctx() R10=fp0
0: (18) r0 = 0x10000000000            ; R0=0x10000000000
2: (18) r1 = 0x10000000000            ; R1=0x10000000000
4: (79) r0 = *(u64 *)(r2 +0)
R2 !read_ok
processed 3 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""

# A jump whose target state is printed on the same line.
BRANCH_INLINE = """\
0: R1=ctx() R10=fp0
0: (b7) r0 = 0                        ; R0=0
1: (61) r2 = *(u32 *)(r1 +0)          ; R1=ctx() R2=scalar(smin=0,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff))
2: (15) if r2 == 0x1 goto pc+2        ; R2=scalar(smin=0,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff))
3: (b7) r3 = 1                        ; R3=1
4: (05) goto pc+1
6: (15) if r2 == 0x5 goto pc+1 8: R0=0 R1=ctx() R2=5 R3=1 R10=fp0
8: (79) r0 = *(u64 *)(r3 +0)
R3 invalid mem access 'scalar'
processed 8 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0
"""

# Log level 2: the safe path (3..6, where r3 = fp-8) is walked first, then the
# branch pushed at 2 is resumed ("from 2 to 7") and fails. The writer of r3 on
# the failing path is slot 7, not slot 5 of the other path; the indented
# liveness table at the top is not instructions.
LEVEL2_TWO_PATHS = """\
func#0 @0
Live regs before insn:
      0: .1........ (b7) r0 = 0
      1: .1........ (61) r2 = *(u32 *)(r1 +0)
      2: ..2....... (15) if r2 == 0x1 goto pc+4
      3: .......... (7a) *(u64 *)(r10 -8) = 0
      4: .......... (bf) r3 = r10
      5: ...3...... (07) r3 += -8
      6: ...3...... (05) goto pc+1
      7: .......... (b7) r3 = 1
      8: ...3...... (79) r0 = *(u64 *)(r3 +0)
      9: 0......... (95) exit
0: R1=ctx() R10=fp0
0: (b7) r0 = 0                        ; R0=0
1: (61) r2 = *(u32 *)(r1 +0)          ; R1=ctx() R2=scalar(smin=0,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff))
2: (15) if r2 == 0x1 goto pc+4        ; R2=scalar(smin=0,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff))
3: (7a) *(u64 *)(r10 -8) = 0          ; R10=fp0 fp-8=0
4: (bf) r3 = r10                      ; R3=fp0 R10=fp0
5: (07) r3 += -8                      ; R3=fp-8
6: (05) goto pc+1
8: (79) r0 = *(u64 *)(r3 +0)          ; R0=0 R3=fp-8 fp-8=0
9: (95) exit
(0) frame 0 insn 8 +live -8
(0) frame 0 insn 7 +live -8
(0) frame 0 insn 3 +written -8
(0) frame 0 insn 2 +live -8
(0) frame 0 insn 0 +live -8
(0) live stack update done in 2 iterations

from 2 to 7: R0=0 R1=ctx() R2=1 R10=fp0
7: R0=0 R1=ctx() R2=1 R10=fp0
7: (b7) r3 = 1                        ; R3=1
8: (79) r0 = *(u64 *)(r3 +0)
R3 invalid mem access 'scalar'
processed 11 insns (limit 1000000) max_states_per_insn 1 total_states 1 peak_states 1 mark_read 0
"""

# r0 = 0; l: if r0 == 1 goto +1; goto l; exit -- named by the complaint.
INFINITE_LOOP = """\
0: R1=ctx() R10=fp0
0: (b7) r0 = 0                        ; R0=0
1: (15) if r0 == 0x1 goto pc+1        ; R0=0
2: (05) goto pc-2
1: (15) if r0 == 0x1 goto pc+1        ; R0=0
2: (05) goto pc-2
infinite loop detected at insn 1
cur state: R0=0 R1=ctx() R10=fp0
old state: R0=P0 R1=ctx() R10=fp0
processed 10 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0
"""

UNREACHABLE = "unreachable insn 2\n" + STATS
JUMP_OUT_OF_RANGE = "jump out of range from insn 1 to 22\n" + STATS
# From kernels before 5.3 (no bounded loops): the check_cfg() complaint.
BACK_EDGE = "back-edge from insn 7 to 3\n"
UNKNOWN_FUNC = """\
0: R1=ctx() R10=fp0
0: (85) call unknown#1234
invalid func unknown#1234
""" + STATS
NO_EXIT = "last insn is not an exit or jmp\n" + STATS
UNKNOWN_OPCODE = "unknown opcode ff\n" + STATS
TOO_LARGE = """\
1: (07) r0 += 1                       ; R0=0x7a11f
2: (55) if r0 != 0x0 goto pc-2        ; R0=0x7a11f
1: (07) r0 += 1
BPF program is too large. Processed 1000001 insn
processed 1000001 insns (limit 1000000) max_states_per_insn 4 total_states 25001 peak_states 25001 mark_read 0
"""
# Log level BPF_LOG_STATS of a successful load of two subprograms.
STATS_ONLY = """\
verification time 31 usec
stack depth 0+16
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""


@pytest.mark.parametrize("log, slot", [
    (UNINIT, 1),
    (MAP_VALUE_NO_NULL_CHECK, 6),
    (AFTER_LD_IMM64, 4),
    (BRANCH_INLINE, 8),
    (LEVEL2_TWO_PATHS, 8),
    (INFINITE_LOOP, 1),
    (UNREACHABLE, 2),
    (JUMP_OUT_OF_RANGE, 1),
    (BACK_EDGE, 7),
    (UNKNOWN_FUNC, 0),
    (TOO_LARGE, 1),
])
def test_failing_slot(log, slot):
    assert failing_slot(log) == slot


def test_complaints_placed_from_the_code():
    code = isa.encode([isa.mov(isa.R0, 0), isa.Instruction(0xFF), isa.exit_()])
    assert failing_slot(UNKNOWN_OPCODE, code) == 1
    assert failing_slot(NO_EXIT, isa.encode([isa.mov(isa.R0, 0), isa.mov(isa.R1, 1)])) == 1
    # Without the code they cannot be placed: no guess.
    assert failing_slot(UNKNOWN_OPCODE) is None
    assert failing_slot(NO_EXIT) is None


def test_no_instruction_at_all():
    assert failing_slot("") is None
    assert failing_slot(STATS_ONLY) is None


@pytest.mark.parametrize("log, slot", [
    (MAP_VALUE_NO_NULL_CHECK, 5),   # r0 comes from the call
    (BRANCH_INLINE, 3),             # r3 = 1
    (LEVEL2_TWO_PATHS, 7),          # not slot 5, which is on the path that passed
    (UNINIT, None),                 # r2 was never written
    (UNREACHABLE, None),            # not about a register
    (INFINITE_LOOP, None),
])
def test_offending_writer_slot(log, slot):
    assert offending_writer_slot(log) == slot


def test_stats():
    assert parse_verifier_stats(STATS_ONLY) == VerifierStats(
        insns_processed=2, insn_limit=1000000, max_states_per_insn=0, total_states=0,
        peak_states=0, mark_read=0, verification_time_usec=31, stack_depth=(0, 16))
    level1 = parse_verifier_stats(TOO_LARGE)
    assert (level1.insns_processed, level1.total_states, level1.peak_states,
            level1.max_states_per_insn) == (1000001, 25001, 25001, 4)
    assert level1.verification_time_usec is None and level1.stack_depth == ()
    assert parse_verifier_stats(BACK_EDGE) is None
