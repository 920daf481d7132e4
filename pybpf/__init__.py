"""pybpf: eBPF in pure Python: an instruction set, an assembler and
disassembler, a DSL, and a loader that talks to the kernel through bpf(2)."""

__version__ = "0.1.0"
