# A small program in LLVM syntax with every kind of symbol pybpf writes to
# ELF: labels, a bpf-to-bpf function, a callback, two maps (one addressed by
# value). tests/e2e/test_cli_code.py assembles it, dumps it with
# llvm-objdump and compares with sample.disasm.txt.
    r6 = r1
    call bpf_get_current_pid_tgid
    *(u32 *)(r10 - 4) = w0
    r1 = map[counts] ll
    r2 = r10
    r2 += -4
    call bpf_map_lookup_elem
    if r0 == 0 goto missing
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
    goto done
missing:
    r1 = map[config][0]+8 ll
    r1 = *(u64 *)(r1 + 0)
    call clamp
done:
    r1 = 4
    r2 = subprog[callback] ll
    r3 = 0
    r4 = 0
    call bpf_loop
    r0 = 0
    exit

clamp:
    r0 = r1
    if r0 <= 100 goto small
    r0 = 100
small:
    exit

callback:
    r0 = 0
    exit
