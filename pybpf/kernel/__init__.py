"""Everything that touches the kernel: bpf(2) and its objects, BTF, tracefs,
attaching, and the perf and ring buffer readers. Never imports the DSL or
the loader."""
