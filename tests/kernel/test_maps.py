"""Maps in the running kernel: every type we support, created, filled, read
back, iterated, batch-read (and through the per-key fallback), pinned and
re-opened from the pin."""

import dataclasses
import errno
import ipaddress
import os
import shutil
import uuid

import construct
import pytest

from kernel_objects import load_trivial_program
from pybpf.errors import (BPFError, BPFPermissionError, MapFullError, NotFoundError,
                          UnsupportedFeature)
from pybpf.kernel import map_spec, maps, objects, pin, sys
from pybpf.kernel.maps import Map, MapSpec
from pybpf.consts import BPF_EXIST, BPF_NOEXIST
from pybpf import consts

NCPUS = len(maps.possible_cpus())


def per_cpu(base):
    return [base + cpu for cpu in range(NCPUS)]


def lpm_key(text):
    net = ipaddress.ip_network(text)
    return (net.prefixlen, net.network_address.packed)


# name -> (spec, entries to write, what items() must give back)
KEYED = {
    "hash": (MapSpec("hash", key_size=4, value_size=8, max_entries=64),
             {1: 10, 2: 20, 0xFFFFFFFF: 2**64 - 1}, None),
    "array": (MapSpec("array", value_size=8, max_entries=4), {0: 5, 3: 7},
              {0: 5, 1: 0, 2: 0, 3: 7}),
    "percpu_hash": (MapSpec("percpu_hash", key_size=4, value_size=4, max_entries=16),
                    {1: per_cpu(100), 7: per_cpu(700)}, None),
    "percpu_array": (MapSpec("percpu_array", value_size=8, max_entries=3), {1: per_cpu(1)},
                     {0: [0] * NCPUS, 1: per_cpu(1), 2: [0] * NCPUS}),
    "lru_hash": (MapSpec("lru_hash", key_size=8, value_size=16, max_entries=32),
                 {1: b"a" * 16, 2**63: b"b" * 16}, None),
    "lru_percpu_hash": (MapSpec("lru_percpu_hash", key_size=4, value_size=2, max_entries=32),
                        {3: per_cpu(30)}, None),
    "lpm_trie": (MapSpec("lpm_trie", key_size=8, value_size=4, max_entries=16),
                 {lpm_key("10.0.0.0/8"): 1, lpm_key("10.1.0.0/16"): 2,
                  lpm_key("0.0.0.0/0"): 3}, None),
}


@pytest.fixture
def pin_dir():
    """A fresh directory on bpffs, removed afterwards (bpffs stays mounted)."""
    pin.ensure_bpffs()
    path = os.path.join(pin.BPFFS_PATH, "pybpf-test-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8]))
    os.mkdir(path)
    yield path
    shutil.rmtree(path)



def create(spec, name):
    return Map.create(dataclasses.replace(spec, name=name))


@pytest.mark.parametrize("kind", sorted(KEYED))
def test_keyed_map_round_trip(kind, pin_dir, no_leaks):
    spec, entries, expected = KEYED[kind]
    expected = dict(entries) if expected is None else expected
    with create(spec, "test_" + kind) as m:
        assert m.map_type == consts.MAP_TYPES.value(kind)
        for key, value in entries.items():
            m[key] = value
        for key, value in entries.items():
            assert m[key] == value
            assert key in m
        assert dict(m.items()) == expected
        assert sorted(m.keys()) == sorted(expected)
        assert sorted(map(repr, m.values())) == sorted(map(repr, expected.values()))
        assert m.count() == len(expected)
        assert dict(m.lookup_batch(batch_size=2)) == expected

        fallback = create(spec, "test_" + kind)   # same contents, batch refused
        with fallback:
            fallback.update_batch(entries)
            fallback._batch_unsupported.update({sys.BPF_MAP_LOOKUP_BATCH,
                                                sys.BPF_MAP_UPDATE_BATCH})
            assert dict(fallback.lookup_batch()) == expected

        path = os.path.join(pin_dir, kind)
        m.pin(path)
        with Map.from_pin(path) as again:
            assert again.id == m.id and again.map_type == m.map_type
            assert dict(again.items()) == expected
            assert again.name == m.info().name   # the kernel's (truncated) name
        pin.unpin(path)
        assert not os.path.exists(path)


def test_lpm_trie_longest_prefix_match():
    with Map.create(MapSpec("lpm_trie", key_size=8, value_size=4, max_entries=16,
                            name="routes")) as routes:
        assert routes.flags & consts.BPF_F_NO_PREALLOC
        routes[ipaddress.ip_network("10.0.0.0/8")] = 8
        routes[ipaddress.ip_network("10.1.0.0/16")] = 16
        routes[ipaddress.ip_network("10.1.2.0/24")] = 24
        assert routes[lpm_key("10.1.2.3/32")] == 24
        assert routes[lpm_key("10.1.9.9/32")] == 16
        assert routes[lpm_key("10.200.0.1/32")] == 8
        assert routes.get(lpm_key("11.0.0.1/32")) is None
        with pytest.raises(KeyError):
            routes[lpm_key("192.168.0.1/32")]


def test_hash_missing_keys():
    with Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=4, name="h")) as m:
        m[1] = 1
        with pytest.raises(KeyError) as caught:
            m[2]
        assert caught.value.args == (2,)
        assert m.get(2) is None and m.get(2, "none") == "none"
        assert 2 not in m
        with pytest.raises(KeyError):
            del m[2]
        assert m.pop(2, "gone") == "gone"
        with pytest.raises(KeyError):
            m.pop(2)
        assert m.pop(1) == 1 and 1 not in m
        with pytest.raises(KeyError):
            m.update(5, 5, BPF_EXIST)
        m.update(5, 5, BPF_NOEXIST)
        with pytest.raises(BPFError) as caught:
            m.update(5, 6, BPF_NOEXIST)
        assert caught.value.errno == errno.EEXIST
        assert m.lookup_and_delete(5) == 5
        with pytest.raises(KeyError):
            m.lookup_and_delete(5)


def test_full_hash_map_raises_map_full():
    with Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=2, name="tiny")) as m:
        m[1], m[2] = 1, 2
        with pytest.raises(MapFullError) as caught:
            m[3] = 3
        assert caught.value.errno == errno.E2BIG
        assert "tiny" in str(caught.value) and "max_entries=2" in str(caught.value)
        m[2] = 20   # replacing an existing key still works
        with pytest.raises(MapFullError):
            m.update_batch({4: 4, 5: 5})


def test_lru_hash_evicts_instead_of_failing():
    with Map.create(MapSpec("lru_hash", key_size=4, value_size=4, max_entries=8,
                            name="lru")) as m:
        for key in range(100):
            m[key] = key
        assert 0 < m.count() <= 8 * NCPUS * 2


def test_array_index_errors():
    with Map.create(MapSpec("array", value_size=4, max_entries=2, name="arr")) as m:
        with pytest.raises(KeyError):
            m[2] = 1
        with pytest.raises(KeyError):
            m[2]
        with pytest.raises(BPFError, match="cannot be deleted"):
            del m[0]
        m[1] = 9
        m.clear()
        assert dict(m.items()) == {0: 0, 1: 0}


def test_percpu_values_have_one_entry_per_possible_cpu():
    with open("/sys/devices/system/cpu/possible") as f:
        possible = maps.parse_cpu_list(f.read())
    with Map.create(MapSpec("percpu_array", value_size=4, max_entries=1, name="pcpu")) as m:
        assert len(m[0]) == len(possible) == NCPUS
        m[0] = 7   # one value for every CPU
        assert m[0] == [7] * NCPUS
        with pytest.raises(ValueError, match="one value per possible CPU"):
            m[0] = [1] * (NCPUS + 1)


@pytest.mark.parametrize("kind, order", [("queue", [1, 2, 3]), ("stack", [3, 2, 1])])
def test_queue_and_stack_pop_order(kind, order, pin_dir):
    with Map.create(MapSpec(kind, value_size=4, max_entries=3, name=kind)) as m:
        for value in (1, 2, 3):
            m.push(value)
        with pytest.raises(MapFullError):
            m.push(4)
        assert m.peek() == order[0]
        path = os.path.join(pin_dir, kind)
        m.pin(path)
        with Map.from_pin(path) as again:
            assert [again.pop() for _ in range(3)] == order
        pin.unpin(path)
        with pytest.raises(IndexError):
            m.pop()
        assert m.pop(None) is None
        with pytest.raises(IndexError):
            m.peek()
        with pytest.raises(TypeError, match="push"):
            m[0]
        with pytest.raises(TypeError):
            list(m.keys())


def test_queue_push_with_exist_overwrites_oldest():
    with Map.create(MapSpec("queue", value_size=8, max_entries=2, name="q")) as m:
        for value in (1, 2, 3):
            m.push(value, BPF_EXIST)
        assert [m.pop(), m.pop()] == [2, 3]


def test_ringbuf(pin_dir):
    with Map.create(MapSpec("ringbuf", max_entries=64 * 4096, name="events")) as rb:
        assert (rb.key_size, rb.value_size, rb.max_entries) == (0, 0, 64 * 4096)
        with pytest.raises(TypeError, match="ringbuf"):
            rb[0]
        path = os.path.join(pin_dir, "rb")
        rb.pin(path)
        with Map.from_pin(path) as again:
            assert again.id == rb.id and again.map_type == consts.BPF_MAP_TYPE_RINGBUF
        pin.unpin(path)
    for bad in (0, 4096 * 3, 5000):
        with pytest.raises(ValueError, match="power of two"):
            Map.create(MapSpec("ringbuf", max_entries=bad))


def test_perf_event_array_takes_perf_fds(pin_dir):
    attr = sys.PerfEventAttr(type=sys.PERF_TYPE_SOFTWARE, config=sys.PERF_COUNT_SW_BPF_OUTPUT,
                             sample_type=sys.PERF_SAMPLE_RAW, sample_period=1, wakeup_events=1)
    with Map.create(MapSpec("perf_event_array", name="events")) as m:
        assert (m.key_size, m.value_size, m.max_entries) == (4, 4, NCPUS)
        with sys.perf_event_open(attr, pid=-1, cpu=0) as perf:
            m[0] = perf                 # anything with fileno()
            m[0] = perf.fileno()        # or the number
            del m[0]
            with pytest.raises(KeyError):
                del m[0]
        path = os.path.join(pin_dir, "perf")
        m.pin(path)
        with Map.from_pin(path) as again:
            assert again.map_type == consts.BPF_MAP_TYPE_PERF_EVENT_ARRAY
        pin.unpin(path)


def test_prog_array_stores_fds_and_reads_ids():
    with Map.create(MapSpec("prog_array", max_entries=4, name="jumps")) as m, \
            load_trivial_program() as prog:
        prog_id = objects.prog_info(prog).id
        m[2] = prog
        assert m[2] == prog_id
        assert dict(m.items()) == {2: prog_id}
        assert m.lookup_batch() == [(2, prog_id)]     # through the per-key fallback
        assert sys.BPF_MAP_LOOKUP_BATCH in m._batch_unsupported


def test_construct_keys_and_values():
    key = construct.Struct("pid" / construct.Int32ul, "fd" / construct.Int32sl)
    value = construct.Struct("count" / construct.Int64ul,
                             "comm" / construct.PaddedString(8, "ascii"))
    with Map.create(MapSpec("hash", key=key, value=value, max_entries=8, name="per_fd")) as m:
        assert (m.key_size, m.value_size) == (8, 16)
        m[dict(pid=1, fd=-1)] = dict(count=3, comm="bash")
        ((k, v),) = m.items()
        assert (k.pid, k.fd, v.count, v.comm) == (1, -1, 3, "bash")
    with pytest.raises(ValueError, match="value_size is 4"):
        Map.create(MapSpec("hash", key_size=8, value_size=4, key=key, value=value,
                           max_entries=1, name="mismatch"))


def test_wrong_key_size_names_map_and_size():
    with Map.create(MapSpec("hash", key_size=8, value_size=4, max_entries=2,
                            key=bytes, value=bytes, name="raw_keys")) as m:
        with pytest.raises(ValueError, match=r"raw_keys.*key_size is 8"):
            m[b"short"]
        with pytest.raises(ValueError, match=r"raw_keys.*needs 4 \(value_size 4\)"):
            m[b"12345678"] = b"toolong"
    with Map.create(MapSpec("hash", key_size=2, value_size=4, max_entries=2, name="u16")) as m:
        with pytest.raises(ValueError, match=r"u16.*key_size 2"):
            m[70000] = 1
        with pytest.raises(ValueError):
            m[-1]


def test_unknown_map_type_is_unsupported_feature():
    with pytest.raises(UnsupportedFeature, match="unknown to pybpf"):
        Map.create(MapSpec(200, key_size=4, value_size=4, max_entries=1, name="future"))


def test_iteration_survives_deletion():
    with Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=256,
                            name="churn")) as m:
        m.update_batch({k: k for k in range(200)})
        seen = []
        for key in m:                     # delete what we just got: restarts each time
            seen.append(key)
            del m[key]
        assert sorted(seen) == list(range(200)) and m.count() == 0

        m.update_batch({k: k for k in range(200)})
        seen = []
        for key in m:                     # delete the cursor but keep others: walks over seen keys
            seen.append(key)
            if key % 2:
                del m[key]
        assert sorted(seen) == list(range(200))
        assert sorted(m.keys()) == list(range(0, 200, 2))


def test_batch_drain_and_delete():
    with Map.create(MapSpec("hash", key_size=4, value_size=8, max_entries=1024,
                            name="drain")) as m:
        assert m.update_batch((k, k * 2) for k in range(1000)) == 1000
        assert dict(m.lookup_batch(batch_size=64)) == {k: k * 2 for k in range(1000)}
        assert m.delete_batch(range(500)) == 500
        with pytest.raises(KeyError):
            m.delete_batch([600, 1, 601])   # 1 is gone
        assert 600 not in m and 601 in m
        drained = dict(m.lookup_and_delete_batch(batch_size=16))
        assert drained == {k: k * 2 for k in range(500, 1000) if k != 600}
        assert m.count() == 0
    with Map.create(MapSpec("lpm_trie", key_size=8, value_size=4, max_entries=8,
                            name="lpm")) as m:   # no LOOKUP_AND_DELETE_BATCH: fallback
        m[lpm_key("10.0.0.0/8")] = 1
        assert m.lookup_and_delete_batch() == [(lpm_key("10.0.0.0/8"), 1)]
        assert sys.BPF_MAP_LOOKUP_AND_DELETE_BATCH in m._batch_unsupported
        assert m.count() == 0


def test_freeze():
    with Map.create(MapSpec("array", value_size=4, max_entries=1, name="cfg")) as m:
        m[0] = 1
        m.freeze()
        assert m[0] == 1
        with pytest.raises(BPFError) as caught:
            m[0] = 2
        assert caught.value.errno == errno.EPERM


def test_names_open_by_id_and_fd():
    long_name = "a_name_longer_than_fifteen_bytes"
    with Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=1,
                            name=long_name)) as m:
        assert m.name == long_name
        assert m.info().name == long_name[:15]
        m[1] = 2
        with Map.from_id(m.id) as by_id:
            assert by_id.name == long_name[:15] and by_id[1] == 2
        fd = os.dup(m.fileno())
        try:
            with Map.from_fd(fd, name="mine") as by_fd:
                assert by_fd.name == "mine" and by_fd[1] == 2
            os.fstat(fd)   # an int fd is the caller's: still open
        finally:
            os.close(fd)


def test_closed_map_refuses_calls():
    m = Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=1, name="c"))
    m.close()
    m.close()
    assert m.closed
    with pytest.raises(ValueError, match="closed"):
        m[1]


def test_ensure_bpffs_makes_directories_inside_bpffs(pin_dir):
    nested = os.path.join(pin_dir, "a", "b")
    assert pin.ensure_bpffs(nested) == nested and os.path.isdir(nested)
    assert pin.bpffs_mount_of(nested) == pin.BPFFS_PATH
    assert pin.bpffs_mount_of("/tmp") is None


def test_pin_errors(pin_dir):
    with pytest.raises(NotFoundError):
        pin.open_pinned(os.path.join(pin_dir, "nothing"))
    with pytest.raises(NotFoundError):
        pin.unpin(os.path.join(pin_dir, "nothing"))
    with Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=1, name="p")) as m:
        path = os.path.join(pin_dir, "p")
        m.pin(path)
        with pytest.raises(BPFError, match="already exists"):
            m.pin(path)
        with pytest.raises(NotFoundError, match="does not exist"):
            m.pin(os.path.join(pin_dir, "no", "dir"))
        with pytest.raises(BPFError, match="not on a bpf file system"):
            m.pin("/tmp/pybpf-not-bpffs-%d" % os.getpid())
        pin.unpin(path)


def test_map_fd_is_not_leaked_on_failed_create(no_leaks):
    with pytest.raises(ValueError):
        # kernel accepts; our codec check refuses after the fd exists
        Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=1,
                           value=construct.Int64ul))
    for _ in range(20):
        with Map.create(MapSpec("hash", key_size=4, value_size=4, max_entries=1)) as m:
            with Map.from_id(m.id):
                pass
            iterator = m.items()
            next(iterator, None)   # abandoned half-way


def test_map_types_this_kernel_does_not_create_raise_what_the_kernel_said():
    """Whether a type exists is asked of the kernel (the feature probe), never
    read from its version number, and the error says which of the two
    refusals it was: absent (UnsupportedFeature with the version that added
    it) or refused to us (EPERM/EACCES: a permission error naming the type).
    This host may answer either for any type (ARENA: absent on one VM build,
    EPERM on another); the kernel matrix runs this on older kernels."""
    from pybpf.kernel import features
    found = features.probe()
    for value, since in map_spec.MAP_TYPE_SINCE.items():
        name = consts.MAP_TYPES.name(value)
        answer = found.answer(name)
        if answer.available:
            continue
        kind = map_spec.KINDS[value]     # sizes the type fixes (ARENA: 0 and 0)
        spec = MapSpec(value, key_size=4 if kind.key_size is None else kind.key_size,
                       value_size=8 if kind.value_size is None else kind.value_size,
                       max_entries=4096, name="absent")
        with pytest.raises(BPFError) as info:
            Map.create(spec)
        if answer.state == features.ABSENT:
            assert isinstance(info.value, UnsupportedFeature), (name, info.value)
            assert info.value.since == since and ("added in Linux %s" % since) in str(info.value)
        else:
            assert isinstance(info.value, BPFPermissionError), (name, info.value)
            assert not isinstance(info.value, UnsupportedFeature)
            assert name in str(info.value) and "CAP_" in str(info.value)


def test_an_einval_is_unsupported_only_when_the_probe_says_absent(probe_says):
    """The kernel answers EINVAL both for a type it does not know and for
    parameters it does not accept; only the probe can tell them apart, so
    each of its answers is forced here on a type this kernel has."""
    probe_says("BPF_MAP_TYPE_HASH")
    with pytest.raises(BPFError) as info:
        Map.create(MapSpec("hash", key_size=4, value_size=8, max_entries=0, name="zero"))
    assert info.value.errno == errno.EINVAL
    if probe_says.state == "absent":
        assert isinstance(info.value, UnsupportedFeature)
        assert "BPF_MAP_TYPE_HASH (added in Linux 3.19)" in str(info.value)
    else:
        assert not isinstance(info.value, UnsupportedFeature)
        assert "BPF_MAP_TYPE_HASH" in str(info.value) and "max_entries=0" in str(info.value)

