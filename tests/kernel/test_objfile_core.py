"""CO-RE on differing layouts: cilium/ebpf's relocs_read object, compiled
against one set of types, relocated against relocs_read_tgt's (other member
orders, sizes, bitfields, flavors); the program checks every value it reads
and returns 0 only if all are right."""

from objfile_corpus import CILIUM

from pybpf.kernel.btf import BTF
from pybpf.loader import Collection
from pybpf.objfile.reader import read
from pybpf.objfile.to_spec import collection_spec

TESTDATA = CILIUM + "/btf/testdata/"


def test_relocations_against_another_layout_read_the_right_values(no_leaks):
    target = BTF(read(TESTDATA + "relocs_read_tgt-el.elf").by_name[".BTF"].data)
    spec = collection_spec(TESTDATA + "relocs_read-el.elf", target_btf=target)
    with Collection(spec) as coll:
        assert coll.programs.reads.test_run(bytes(64)).retval == 0
