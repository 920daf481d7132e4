"""CO-RE relocations (placeholder until the resolver lands)."""


def relocate(elf, btf, btf_ext, code, target_btf):
    raise elf.error("CO-RE relocations are not supported yet", None)
