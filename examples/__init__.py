"""Small tools written with pybpf, each a module you can run and read.

``python3 -m pybpf.examples.NAME [--duration SECONDS]`` loads and attaches
the programs, waits for Ctrl-C (or the duration) and prints what they
gathered. Each is the bcc/bpftrace classic of the same name, top-down:

* ``write_bytes``: bytes written per process name (a hash keyed by comm);
* ``read_sizes``: a log2 histogram of read sizes (bpftrace's ``hist()``);
* ``execsnoop``: every exec, through a ring buffer;
* ``syscall_latency``: time spent per syscall (raw tracepoints);
* ``xdp_protocols``: packets per IP protocol on an interface (XDP);
* ``count_by_comm``: ``bpftrace -e 'tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }'``.
"""
