"""Loading programs into the running kernel: test runs, info, run statistics,
verifier errors mapped to the lines of this file, log growth, fd ownership.

Source-line assertions compute the expected line with ``inspect`` right
before the ``a.emit(...)`` they expect, so editing this file cannot break them.
"""

import inspect
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from kernel_objects import assert_no_new_fds, assert_no_new_objects, open_fds, snapshot, wait_gone

from pybpf import asm, isa
from pybpf.errors import BPFError, UnsupportedFeature, VerifierError
from pybpf.kernel import objects, prog
from pybpf.kernel.maps import Map, MapSpec
from pybpf.kernel.prog import Program
from pybpf import consts

R0, R1, R2, R3, R10 = isa.R0, isa.R1, isa.R2, isa.R3, isa.R10
XDP_PASS = 2
HERE = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def next_line() -> int:
    """The line after the caller's: where the statement under test is."""
    return inspect.currentframe().f_back.f_lineno + 1


def returning(value: int, name: str = "ret") -> asm.AssembledProgram:
    a = asm.Assembler(name)
    a.emit(isa.mov(R0, value))
    a.emit(isa.exit_())
    return a.assemble()


# --- loading and running ------------------------------------------------------------------

def test_socket_filter_test_run_and_info():
    code = returning(7, "seven")
    with Program.load(code, prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER) as p:
        packet = bytes(range(1, 41))
        result = p.test_run(packet)
        assert result.retval == 7
        # Socket filters run after the link layer: the kernel hands back the
        # payload behind a zeroed Ethernet header.
        assert result.data_out == bytes(14) + packet[14:]
        info = p.info()
        assert (info.name, info.type, info.id, info.tag) == ("seven", p.prog_type, p.id, p.tag)
        assert len(p.tag) == 16 and int(p.tag, 16) >= 0
        assert p.code is code and p.name == "seven"
        # Unchanged by the verifier: the xlated dump is our bytecode.
        assert isa.decode(p.xlated()) == list(code.instructions)
        assert p.jited()   # the JIT is on here


def test_xdp_test_run_passes_packet_through():
    packet = bytes(range(64))
    with Program.load(returning(XDP_PASS), prog_type=consts.BPF_PROG_TYPE_XDP,
                      expected_attach_type=consts.BPF_XDP) as p:
        result = p.test_run(packet, repeat=10)
        assert (result.retval, result.data_out) == (XDP_PASS, packet)
        assert result.duration_ns >= 0


def test_same_code_same_tag_other_code_other_tag():
    with Program.load(returning(1), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER) as a, \
            Program.load(returning(1), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER) as b, \
            Program.load(returning(2), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER) as c:
        assert a.tag == b.tag != c.tag
        assert len({a.id, b.id, c.id}) == 3


def test_code_as_instructions_and_as_bytes():
    insns = [isa.mov(R0, 3), isa.exit_()]
    for code in (insns, isa.encode(insns)):
        with Program.load(code, prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER, name="raw") as p:
            assert p.test_run(bytes(14)).retval == 3
            assert p.code is None


def test_from_id_and_from_fd():
    with Program.load(returning(5, "orig"), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER) as p:
        with Program.from_id(p.id) as by_id, Program.from_fd(p.fd) as by_fd:
            for other in (by_id, by_fd):
                assert (other.id, other.tag, other.name) == (p.id, p.tag, "orig")
                assert other.prog_type == consts.BPF_PROG_TYPE_SOCKET_FILTER
                assert other.fd != p.fd
        assert p.test_run(bytes(14)).retval == 5   # still ours after theirs closed


def test_map_relocation_resolved_from_maps_argument():
    a = asm.Assembler("lookup")
    a.emit(isa.st(4, R10, -4, 0))
    a.ld_map(R1, "counts")
    a.emit(isa.mov(R2, R10))
    a.emit(isa.alu(isa.BPF_ADD, R2, -4))
    a.call("map_lookup_elem")
    a.jump(isa.BPF_JEQ, R0, 0, "out")
    a.emit(isa.ldx(8, R0, R0, 0))
    a.label("out")
    a.emit(isa.exit_())
    with Map.create(MapSpec("hash", key_size=4, value_size=8, max_entries=4,
                            name="counts")) as counts:
        counts[0] = 42
        with Program.load(a.assemble(), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER,
                          maps={"counts": counts}) as p:
            assert p.info().map_ids == (counts.info().id,)
            assert p.test_run(bytes(14)).retval == 42


def test_test_run_unsupported_type():
    with Program.load(returning(0), prog_type=consts.BPF_PROG_TYPE_TRACEPOINT) as p:
        with pytest.raises(UnsupportedFeature) as caught:
            p.test_run(ctx=bytes(8))
    assert "BPF_PROG_TEST_RUN for BPF_PROG_TYPE_TRACEPOINT" in str(caught.value)
    assert "not available for this program type" in str(caught.value)


def test_test_run_bad_arguments_say_what_was_given():
    # An skb program: every kernel refuses its data below 14 bytes (XDP took
    # any size before Linux 5.18 or so).
    with Program.load(returning(0), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER) as p:
        with pytest.raises(BPFError) as caught:
            p.test_run(bytes(4))   # shorter than an Ethernet header
    assert caught.value.errno == 22 and "data 4 bytes" in str(caught.value)


# --- run statistics -----------------------------------------------------------------------

def test_enable_stats_counts_test_runs_and_socket_traffic():
    with Program.load(returning(0xFFFF), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER) as p:
        with prog.enable_stats() as stats:
            assert not stats.closed
            before = p.info()
            p.test_run(bytes(14), repeat=1000)
            after_runs = p.info()
            # Measured on Linux 6.18: BPF_PROG_TEST_RUN counts into run_cnt.
            assert after_runs.run_cnt - before.run_cnt == 1000
            assert after_runs.run_time_ns > before.run_time_ns
            # A real attach counts too: a socket filter sees every datagram.
            reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            with reader, writer:
                reader.setsockopt(socket.SOL_SOCKET, 50, p.fd)   # SO_ATTACH_BPF
                for _ in range(10):
                    writer.send(b"x")
                assert p.info().run_cnt - after_runs.run_cnt == 10
        assert stats.closed


# --- verifier errors point at this file ---------------------------------------------------

def load_rejected(a: asm.Assembler, **kwargs) -> VerifierError:
    kwargs.setdefault("prog_type", consts.BPF_PROG_TYPE_SOCKET_FILTER)
    with pytest.raises(VerifierError) as caught:
        Program.load(a.assemble(), **kwargs).close()
    return caught.value


def test_uninitialised_register():
    a = asm.Assembler("uninit")
    a.emit(isa.mov(R0, 0))
    line = next_line()
    a.emit(isa.mov(R1, R2))
    a.emit(isa.exit_())
    exc = load_rejected(a)
    assert exc.insn_index == 1
    assert exc.source_lines == [(HERE, line)]
    assert exc.source_text == ["a.emit(isa.mov(R1, R2))"]
    assert "R2 !read_ok" in exc.log
    assert str(exc) == ("BPF_PROG_LOAD failed (EACCES): verifier rejected program 'uninit' at "
                        "instruction 1 (%s:%d): R2 !read_ok" % (HERE, line))


def test_map_value_without_null_check_names_the_load_and_the_call():
    a = asm.Assembler("nullchk")
    a.emit(isa.st(4, R10, -4, 0))
    a.ld_map(R1, "m")                      # two slots: the failing slot is not the index
    a.emit(isa.mov(R2, R10))
    a.emit(isa.alu(isa.BPF_ADD, R2, -4))
    call_line = next_line()
    a.call("map_lookup_elem")
    line = next_line()
    a.emit(isa.ldx(8, R0, R0, 0))
    a.emit(isa.exit_())
    with Map.create(MapSpec("hash", key_size=4, value_size=8, max_entries=1)) as m:
        exc = load_rejected(a, maps={"m": m})
    assert exc.insn_index == 5             # slot 6
    assert exc.source_lines == [(HERE, line), (HERE, call_line)]
    assert "map_value_or_null" in str(exc)


def test_unreachable_instruction():
    a = asm.Assembler("dead")
    a.emit(isa.mov(R0, 0))
    a.emit(isa.exit_())
    line = next_line()
    a.emit(isa.mov(R0, 1))
    a.emit(isa.exit_())
    exc = load_rejected(a)
    assert (exc.insn_index, exc.source_lines) == (2, [(HERE, line)])
    assert exc.errno == 22 and "unreachable insn 2" in str(exc)


def test_infinite_loop():
    a = asm.Assembler("forever")
    a.emit(isa.mov(R0, 0))
    a.label("top")
    line = next_line()
    a.jump(isa.BPF_JEQ, R0, 1, "out")
    a.goto("top")
    a.label("out")
    a.emit(isa.exit_())
    exc = load_rejected(a)
    assert (exc.insn_index, exc.source_lines) == (1, [(HERE, line)])
    assert "infinite loop detected at insn 1" in exc.log


def test_raw_bytes_get_an_index_but_no_source():
    code = isa.encode([isa.ld_imm64(R1, 1 << 40), isa.ldx(8, R0, R2, 0), isa.exit_()])
    with pytest.raises(VerifierError) as caught:
        Program.load(code, prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER, name="raw")
    assert caught.value.insn_index == 1 and caught.value.source_lines == []


# --- the log ------------------------------------------------------------------------------

def long_program(length: int) -> asm.Assembler:
    """``r0 = 0`` and ``length`` times ``r0 += 1``, without the exit."""
    a = asm.Assembler("long")
    a.emit(isa.mov(R0, 0))
    for _ in range(length):
        a.emit(isa.alu(isa.BPF_ADD, R0, 1))
    return a


def test_log_larger_than_first_buffer_is_whole():
    length = 2000   # log level 2 writes ~70 bytes per instruction: > 64 KiB
    a = long_program(length)
    a.emit(isa.exit_())
    with Program.load(a.assemble(), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER,
                      log_level=consts.BPF_LOG_LEVEL2) as p:
        log = p.verifier_log
    assert len(log) > prog.LOG_SIZE_START
    assert log.startswith("func#0 @0\n")
    for slot in (0, 1, length // 2, length):
        assert "\n%d: (" % slot in log
    assert p.verifier_stats.insns_processed == length + 2


def test_rejection_with_large_log_still_maps_to_source():
    a = long_program(2000)
    line = next_line()
    a.emit(isa.ldx(8, R0, R0, 0))
    a.emit(isa.exit_())
    exc = load_rejected(a, log_level=consts.BPF_LOG_LEVEL2)
    assert len(exc.log) > prog.LOG_SIZE_START and exc.log.startswith("func#0 @0\n")
    assert (exc.insn_index, exc.source_lines[0]) == (2001, (HERE, line))


def test_stats_on_success():
    with Program.load(returning(0), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER,
                      log_level=consts.BPF_LOG_STATS) as p:
        stats = p.verifier_stats
    assert stats.insns_processed == 2 and stats.insn_limit >= 4096
    assert stats.verification_time_usec is not None and stats.stack_depth == (0,)


def test_no_log_without_asking():
    with Program.load(returning(0), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER) as p:
        assert p.verifier_log == "" and p.verifier_stats is None


# --- other refusals -----------------------------------------------------------------------

def test_unknown_program_type():
    with pytest.raises(UnsupportedFeature) as caught:
        Program.load(returning(0), prog_type=200)
    assert "BPF_PROG_TYPE_UNKNOWN_200" in str(caught.value)


def test_bad_attributes_are_named():
    # CGROUP_SOCK_ADDR needs an expected_attach_type such as BPF_CGROUP_INET4_CONNECT.
    with pytest.raises(BPFError) as caught:
        Program.load(returning(1), prog_type=consts.BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
    assert not isinstance(caught.value, (VerifierError, UnsupportedFeature))
    assert "expected_attach_type=BPF_CGROUP_INET_INGRESS" in str(caught.value)


# --- ownership: no fd and no program outlives its owner -----------------------------------

def test_close_releases_program_and_fd():
    before, fds = snapshot(), open_fds()
    p = Program.load(returning(0), prog_type=consts.BPF_PROG_TYPE_SOCKET_FILTER)
    prog_id = p.id
    assert prog_id in objects.PROGS.ids()
    p.close()
    p.close()   # harmless
    assert p.closed
    with pytest.raises(ValueError):
        p.fileno()
    assert wait_gone(objects.PROGS, [prog_id]) == set()
    assert_no_new_fds(fds)
    assert_no_new_objects(before)


def test_failed_loads_leave_nothing():
    before, fds = snapshot(), open_fds()
    a = long_program(10)
    a.emit(isa.ldx(8, R0, R0, 0))
    a.emit(isa.exit_())
    for code, prog_type in ((a.assemble(), consts.BPF_PROG_TYPE_SOCKET_FILTER), (returning(0), 200)):
        with pytest.raises(BPFError):
            Program.load(code, prog_type=prog_type)
    assert_no_new_fds(fds)
    assert_no_new_objects(before)


CHILD = textwrap.dedent("""
    import signal, sys, time
    from pybpf import isa
    from pybpf.consts import BPF_PROG_TYPE_SOCKET_FILTER
    from pybpf.kernel.prog import Program
    programs = [Program.load([isa.mov(isa.R0, i), isa.exit_()],
                             prog_type=BPF_PROG_TYPE_SOCKET_FILTER, name="child%d" % i)
                for i in range(3)]
    print(" ".join(str(p.id) for p in programs), flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killed_child_leaves_no_programs(how):
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, env=env)
    try:
        ids = [int(word) for word in child.stdout.readline().split()]
        assert len(ids) == 3 and set(ids) <= set(objects.PROGS.ids())
    finally:
        child.send_signal(how)
        child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -how
    assert wait_gone(objects.PROGS, ids) == set()
