"""The ELF loader: clang-built eBPF objects, read and made ready to load, as libbpf does it.

The layers, from the bottom: :mod:`.reader` (ELF sections, symbols and
relocations, checked), :mod:`.btf_ext` (``.BTF.ext``), :mod:`.btf_fixup`
(the object's BTF as the kernel will take it), :mod:`.maps` and
:mod:`.sections` (map definitions and what section names mean),
:mod:`.externs` (``__kconfig`` and ``__ksym``), :mod:`.core` (CO-RE
relocations against the running kernel's BTF), :mod:`.link` (relocations
and bpf-to-bpf calls), :mod:`.bpf_object` (all of it, in libbpf's order),
:mod:`.values` (global variables as Python values) and :mod:`.to_spec` (the
result as a :class:`~pybpf.spec.CollectionSpec`, which :mod:`pybpf.loader`
loads). This ``__init__`` imports nothing, so using one layer does not load
the others.
"""
