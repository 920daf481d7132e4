"""sniffwrites' kernel half: its eBPF programs, in the DSL.

From the bottom up: :mod:`.records` (what goes to userspace, declared once
for both sides), :mod:`.syscalls` (per-architecture tables, register
access), :mod:`.settings` (the frozen options and the filters on them),
:mod:`.walk` (the fd -> path walk bound to the watched map), :mod:`.emit`
(records into the ring, counters), :mod:`.fdcache` (the (tgid, fd) cache,
walks and sweeps), :mod:`.handlers` (one subprogram per syscall class) and
:mod:`.hooks` (the attached programs). Userspace imports :mod:`.records`
and :mod:`.syscalls` for constants and layouts, and :mod:`.hooks` only to
load.
"""
