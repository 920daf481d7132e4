"""clang-built objects loaded through the Python API, attached by their
tracepoint sections, fed by this test, and read back: the ``.bss`` counter
of ``minimal`` and the ring buffer of the opensnoop-style object (with its
``const volatile`` pid filter and CO-RE reads of ``task_struct``)."""

import os

import pytest

from construct import Bytes, Int32sl, Int32ul, Struct
from objfile_corpus import clang_objects  # noqa: F401 (fixture)

from pybpf.consts import BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP
from pybpf.errors import VerifierError
from pybpf.kernel.records import decoder_for
from pybpf.kernel.ringbuf import RingBufReader
from pybpf.loader import Collection
from pybpf.objfile.bpf_object import BPFObject
from pybpf.objfile.to_spec import collection_spec, set_attach_target, spec_of
from pybpf.objfile.values import decode_variable
from pybpf.kernel.btf import vmlinux
from pybpf.spec import ProgramSpec

Event = Struct("tgid" / Int32ul, "ppid" / Int32ul, "ret" / Int32sl, "flags" / Int32sl,
               "comm" / Bytes(16), "fname" / Bytes(128))


def test_bss_counter_counts_this_process_writes(clang_objects, no_leaks):  # noqa: F811
    obj = BPFObject(clang_objects["minimal"], target_btf=vmlinux)
    spec = spec_of(obj)
    spec.set_config({"my_pid": os.getpid()})
    bss = next(d for d in obj.data if d.section == ".bss")
    with Collection(spec) as coll:
        coll.attach("handle_tp")
        fd = os.open("/dev/null", os.O_WRONLY)
        try:
            for _ in range(7):
                os.write(fd, b"x")
        finally:
            os.close(fd)
        raw = coll.maps[".bss"][0]
    assert decode_variable(obj.btf, bss.variables["hits"], raw) == 7


def test_opensnoop_reports_the_opens_this_process_made(clang_objects, tmp_path,
                                                       no_leaks):  # noqa: F811
    obj = BPFObject(clang_objects["opensnoop"], target_btf=vmlinux)
    spec = spec_of(obj)
    spec.set_config({"target_tgid": os.getpid()})
    names = [str(tmp_path / ("file%d" % n)) for n in range(5)]
    with Collection(spec) as coll:
        with RingBufReader(coll.maps.events, decoder=decoder_for(Event, "Event")) as reader:
            coll.attach("enter_openat", "exit_openat")
            for name in names:
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o600))
            events = reader.read(timeout=1.0)
    ours = [e for e in events if e.fname.split(b"\0")[0].decode() in names]
    assert [e.fname.split(b"\0")[0].decode() for e in ours] == names
    assert {(e.tgid, e.ppid) for e in ours} == {(os.getpid(), os.getppid())}
    assert all(e.ret >= 0 for e in ours)
    assert all(e.tgid == os.getpid() for e in events)   # the const volatile filter


def test_verifier_log_shows_the_c_lines(clang_objects, no_leaks):  # noqa: F811
    """line_info reaches the kernel: the log quotes the C source, and the
    error names the file and line of the rejected instruction."""
    spec = collection_spec(clang_objects["rejected"])
    try:
        Collection(spec)
    except VerifierError as exc:   # its traceback (holding the spec's BTF) ends here
        log, message = exc.log, str(exc)
    else:
        pytest.fail("the verifier accepted a NULL dereference")
    del spec
    assert "; return *count > 1;" in log
    assert "rejected.bpf.c:21" in message


def test_attach_target_changed_before_loading(clang_objects, no_leaks):  # noqa: F811
    """``minimal`` counts writes; pointed at getppid's tracepoint it counts
    those calls instead."""
    obj = BPFObject(clang_objects["minimal"], target_btf=vmlinux)
    spec = spec_of(obj)
    spec.set_config({"my_pid": os.getpid()})
    set_attach_target(spec.programs["handle_tp"], "syscalls/sys_enter_getppid")
    bss = next(d for d in obj.data if d.section == ".bss")
    with Collection(spec) as coll:
        coll.attach("handle_tp")
        for _ in range(5):
            os.getppid()
        raw = coll.maps[".bss"][0]
    assert decode_variable(obj.btf, bss.variables["hits"], raw) == 5


def test_btf_attach_target_is_looked_up_again():
    tracing = ProgramSpec("on_enter", BPF_PROG_TYPE_TRACING, "sys_enter", code=None,
                          expected_attach_type=BPF_TRACE_RAW_TP, attach_btf_id=1)
    set_attach_target(tracing, "sys_exit")
    assert tracing.attach_btf_id == vmlinux().find_all("btf_trace_sys_exit")[0].id
    assert tracing.target == "sys_exit"
    with pytest.raises(ValueError, match="no btf_trace_no_such_tracepoint"):
        set_attach_target(tracing, "no_such_tracepoint")
