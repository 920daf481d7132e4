#!/usr/bin/env python3
"""Every speed claim of pybpf comes from here.

Each sub-benchmark measures side by side in one run and reports medians and
ranges over several repetitions, because these machines are noisy. Output is
a Markdown table (stdout) and, with ``--json FILE``, the same figures as JSON.
Nothing here asserts a timing; the test suite only checks that it runs.

    python3 tools/bench.py isa            # encode/decode/assemble/disassemble
    python3 tools/bench.py dsl            # building the shipped DSL programs
    python3 tools/bench.py reader         # perf and ring buffer readers (root)
    python3 tools/bench.py btf            # vmlinux BTF load + member paths
    python3 tools/bench.py monitor        # sniffwrites vs untraced vs bpftrace (root)
    python3 tools/bench.py paths          # descriptor -> path walk in the kernel (root)
    python3 tools/bench.py elf            # loading clang-built objects vs bpftool (root)
    python3 tools/bench.py isa --quick    # tiny run, for CI
"""

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from typing import Callable, Dict, List

_TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_TOOLS), _TOOLS]

from pybpf import asm, isa  # noqa: E402


def measure(fn: Callable[[], int], repeats: int) -> Dict[str, float]:
    """Run ``fn`` (which returns how many items it processed) ``repeats``
    times; report items/s as median, min and max."""
    rates: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn()
        rates.append(count / (time.perf_counter() - start))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def sample_program(count: int, seed: int = 1) -> List[isa.Instruction]:
    """A realistic instruction mix (what our programs emit), deterministic."""
    rng = random.Random(seed)
    makers = [
        lambda: isa.mov(isa.Reg(rng.randrange(10)), rng.randrange(-1000, 1000)),
        lambda: isa.alu(isa.BPF_ADD, isa.Reg(rng.randrange(10)), isa.Reg(rng.randrange(10))),
        lambda: isa.ldx(8, isa.Reg(rng.randrange(10)), isa.R10, -8 * rng.randrange(1, 64)),
        lambda: isa.stx(4, isa.R10, -4 * rng.randrange(1, 128), isa.Reg(rng.randrange(10))),
        lambda: isa.jump(isa.BPF_JEQ, isa.Reg(rng.randrange(10)), 0, rng.randrange(1, 20)),
        lambda: isa.call_helper(rng.choice((1, 2, 14, 35, 113, 131))),
        lambda: isa.ld_imm64(isa.Reg(rng.randrange(10)), rng.randrange(1 << 40)),
    ]
    return [rng.choice(makers)() for _ in range(count)]


def bench_isa(quick: bool) -> Dict[str, Dict[str, float]]:
    from pybpf import asm_text, disasm

    count = 2_000 if quick else 200_000
    repeats = 2 if quick else 5
    program = sample_program(count)
    blob = isa.encode(program)
    text = disasm.disassemble(program, style="llvm")

    def assemble() -> int:
        a = asm.Assembler()
        location = asm.SourceLocation("bench", 1)
        for insn in program:
            a.emit(insn, location)
        a.assemble()
        return count

    results = {
        "encode": measure(lambda: len(isa.encode(program)) and count, repeats),
        "decode": measure(lambda: len(isa.decode(blob)), repeats),
        "assemble (builder)": measure(assemble, repeats),
        "parse text": measure(lambda: len(asm_text.parse(text)), repeats),
        "disassemble": measure(lambda: disasm.disassemble(program, style="llvm").count("\n") + 1,
                               repeats),
    }
    return {name: dict(r, unit="instructions/s") for name, r in results.items()}


#: The modules whose programs the dsl benchmark builds: the examples and sniffwrites'.
DSL_BENCH_MODULES = tuple("pybpf.programs." + name for name in (
    "count_syscalls", "opensnoop", "feature_tour", "xdp_count", "tc_drop_port")) + (
    "sniffwrites.bpf.hooks",)


def bench_dsl(quick: bool) -> Dict[str, Dict[str, float]]:
    """Building the shipped programs from their DSL source (trace, register
    allocation, emission, subprograms, assembly), in instructions built per
    second. A first build outside the timing reads BTF and tracepoint
    formats, which later builds share, as they do in a real process."""
    import importlib

    from pybpf.dsl import ProgramDecl
    programs = [value for name in DSL_BENCH_MODULES
                for value in vars(importlib.import_module(name)).values()
                if isinstance(value, ProgramDecl)]

    def build_all() -> int:
        built = 0
        for program in programs:
            program._built.clear()      # a build is cached on its declaration
            built += len(program.build().instructions)
        return built

    build_all()
    result = measure(build_all, 1 if quick else 5)
    return {"build the shipped programs": dict(result, unit="instructions/s")}


def bench_reader(quick: bool) -> Dict[str, Dict[str, float]]:
    """Records/s decoded from each transport, 128-byte records, one consumer."""
    import bench_reader
    if quick:
        return bench_reader.run(records=5_000, repeats=1, ring_sizes=(256 << 10,))
    return bench_reader.run()


#: The members the fd -> path walk of sniffwrites reads.
BTF_BENCH_PATHS = (
    "task_struct.files", "task_struct.pid", "task_struct.tgid", "task_struct.real_parent",
    "task_struct.comm", "files_struct.fdt", "fdtable.fd", "fdtable.max_fds", "file.f_path",
    "file.f_path.dentry", "file.f_path.mnt", "file.f_inode", "dentry.d_name.name", "qstr.len",
    "dentry.d_parent", "mount.mnt", "mount.mnt.mnt_root", "mount.mnt_mountpoint",
    "mount.mnt_parent", "super_block.s_dev",
)


def bench_btf(quick: bool) -> Dict[str, Dict[str, float]]:
    """Start-up cost of kernel struct offsets: load vmlinux BTF afresh (not
    the process-wide copy) and resolve the 20 member paths sniffwrites needs,
    without the on-disk index (cold) and with it (warm, what every start after
    the first pays)."""
    from pybpf.kernel.btf import BTF, VMLINUX_PATH

    def load_and_resolve(cache: bool) -> float:
        start = time.perf_counter()
        loaded = BTF.load(VMLINUX_PATH, cache=cache)
        for member_path in BTF_BENCH_PATHS:
            loaded.resolve(member_path)
        return (time.perf_counter() - start) * 1e3

    repeats = 1 if quick else 5
    results = {}
    for label, cache in (("cold: parse + resolve 20 paths", False),
                         ("warm: cached index + resolve 20 paths", True)):
        totals = [load_and_resolve(cache) for _ in range(repeats)]
        results[label] = {"median": statistics.median(totals), "min": min(totals),
                          "max": max(totals), "unit": "ms"}
    return results


def bench_paths(quick: bool) -> Dict[str, Dict[str, float]]:
    """ns per run of the descriptor -> path walk, 3 and 16 components deep."""
    import bench_paths
    if quick:
        return bench_paths.run(runs=20, repeats=1)
    return bench_paths.run()


def bench_monitor(quick: bool) -> Dict[str, Dict[str, float]]:
    """sniffwrites against an untraced run and bpftrace on tools/workload.py:
    start-up, extra ns per operation, events and losses, zero-loss rate, RSS."""
    import bench_monitor
    return bench_monitor.run(quick)


def bench_elf(quick: bool) -> Dict[str, Dict[str, float]]:
    """ms per whole-process load of each corpus object, pybpf vs bpftool prog loadall."""
    import bench_elf
    if quick:
        return bench_elf.run(repeats=1, limit=2)
    return bench_elf.run()


BENCHMARKS = {"isa": bench_isa, "dsl": bench_dsl, "reader": bench_reader, "btf": bench_btf,
              "paths": bench_paths, "monitor": bench_monitor, "elf": bench_elf}


def markdown(name: str, results: Dict[str, Dict[str, float]]) -> str:
    lines = ["### %s (%s, Linux %s, %d CPUs, %s)" % (
        name, time.strftime("%Y-%m-%d"), platform.release(), os.cpu_count() or 0,
        platform.python_version()),
        "", "| measure | median | range | unit |", "|---|---:|---:|---|"]
    for what, r in results.items():
        lines.append("| %s | %s | %s – %s | %s |" % (
            what, _fmt(r["median"]), _fmt(r["min"]), _fmt(r["max"]), r["unit"]))
    return "\n".join(lines)


README_BEGIN = "<!-- bench:begin (generated by tools/bench.py --update-readme) -->"
README_END = "<!-- bench:end -->"


def update_readme(path: str, tables: Dict[str, str]) -> None:
    """Put each sub-benchmark's table (``{name: markdown}``) between the
    README's bench markers, replacing that sub-benchmark's previous table
    and keeping the others, so the figures the README shows are always ones
    this harness printed."""
    with open(path) as f:
        text = f.read()
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit("%s has no %r ... %r section" % (path, README_BEGIN, README_END))
    sections: Dict[str, str] = {}
    for chunk in text[start + len(README_BEGIN):end].split("\n### ")[1:]:
        sections[chunk.split(" ", 1)[0]] = "### " + chunk.strip()
    sections.update(tables)
    body = "\n\n".join(sections[name] for name in BENCHMARKS if name in sections)
    text = text[:start + len(README_BEGIN)] + "\n" + body + "\n" + text[end:]
    with open(path, "w") as f:
        f.write(text)


def _fmt(value: float) -> str:
    if value >= 1e6:
        return "%.2f M" % (value / 1e6)
    if value >= 1e3:
        return "%.1f k" % (value / 1e3)
    return "%.3g" % value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="*", choices=sorted(BENCHMARKS) + [[]],
                        help="sub-benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="a tiny run (for CI)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--update-readme", metavar="README",
                        help="replace the tables between the README's bench markers")
    args = parser.parse_args(argv)
    chosen = args.which or sorted(BENCHMARKS)
    report = {}
    tables = {}
    for name in chosen:
        report[name] = BENCHMARKS[name](args.quick)
        tables[name] = markdown(name, report[name])
        print(tables[name])
        print()
    if args.update_readme:
        update_readme(args.update_readme, tables)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"date": time.strftime("%Y-%m-%d"), "kernel": platform.release(),
                       "machine": platform.machine(), "cpus": os.cpu_count(),
                       "results": report}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
