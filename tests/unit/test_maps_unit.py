"""Map codecs, spec checks and error choice: no kernel needed."""

import ipaddress

import construct
import pytest

from pybpf.kernel import map_codecs as codecs
from pybpf.kernel import map_spec
from pybpf.kernel.map_spec import MapSpec
from pybpf import consts


def common(codec, data, obj, size):
    """Decode, encode and size in one assertion (construct's test idiom)."""
    assert codec.decode(data) == obj
    assert codec.encode(obj) == data
    assert codec.size == size


def test_int_codec():
    common(codecs.int_codec(4), b"\x01\x02\x00\x00", 0x201, 4)
    common(codecs.int_codec(16), b"\xff" * 16, 2**128 - 1, 16)
    with pytest.raises(OverflowError):
        codecs.int_codec(2).encode(-1)


def test_bytes_codec_refuses_ints():
    common(codecs.bytes_codec(3), b"abc", b"abc", 3)
    with pytest.raises(TypeError):
        codecs.bytes_codec(3).encode(3)   # bytes(3) would be three zero bytes


def test_fd_codec_takes_fileno():
    class Holder:
        def fileno(self):
            return 7
    assert codecs.fd_codec().encode(Holder()) == codecs.fd_codec().encode(7) == b"\x07\0\0\0"


def test_lpm_codec():
    codec = codecs.lpm_codec(8)
    common(codec, b"\x18\0\0\0" + bytes([10, 1, 2, 0]), (24, bytes([10, 1, 2, 0])), 8)
    assert codec.encode(ipaddress.ip_network("10.1.2.0/24")) == codec.encode((24, b"\n\x01\x02\0"))


def test_percpu_codec_pads_each_cpu_to_8_bytes():
    codec = codecs.percpu_codec(codecs.int_codec(2), 3)
    data = b"\x01\0" + bytes(6) + b"\x02\0" + bytes(6) + b"\x03\0" + bytes(6)
    common(codec, data, [1, 2, 3], 24)
    assert codec.encode(5) == codec.encode([5, 5, 5])
    with pytest.raises(ValueError, match="one value per possible CPU: 3, got 2"):
        codec.encode([1, 2])


def test_construct_codec():
    point = construct.Struct("x" / construct.Int16sl, "y" / construct.Int16sl)
    codec = codecs.construct_codec(point)
    assert codec.size == 4
    assert codec.decode(codec.encode(dict(x=-1, y=2))) == dict(x=-1, y=2)


def test_parse_cpu_list():
    assert codecs.parse_cpu_list("0-3,6\n") == (0, 1, 2, 3, 6)
    assert codecs.parse_cpu_list("0") == (0,)


def attr_for(**spec):
    spec = MapSpec(**spec)
    map_type = spec.map_type if isinstance(spec.map_type, int) else consts.MAP_TYPES.value(
        spec.map_type)
    return map_spec.create_attr(spec, map_type)


def test_spec_defaults_and_checks():
    attr = attr_for(map_type="lpm_trie", key_size=8, value_size=4, max_entries=1)
    assert attr.map_flags & consts.BPF_F_NO_PREALLOC
    attr = attr_for(map_type="array", value_size=4, max_entries=1, name="x" * 40)
    assert attr.key_size == 4 and attr.map_name == b"x" * 15
    attr = attr_for(map_type="perf_event_array")
    assert (attr.key_size, attr.value_size, attr.max_entries) == (4, 4, len(codecs.possible_cpus()))
    attr = attr_for(map_type="hash", key=construct.Int64ul, value=construct.Bytes(24),
                    max_entries=2)
    assert (attr.key_size, attr.value_size) == (8, 24)
    with pytest.raises(ValueError, match="needs max_entries"):
        attr_for(map_type="hash", key_size=4, value_size=4)
    with pytest.raises(ValueError, match="needs value_size"):
        attr_for(map_type="hash", key_size=4, max_entries=1)
    with pytest.raises(ValueError, match="requires key_size 0"):
        attr_for(map_type="queue", key_size=4, value_size=4, max_entries=1)
    with pytest.raises(ValueError, match="power of two"):
        attr_for(map_type="ringbuf", max_entries=3 * 4096)


def test_every_known_map_type_has_a_since_version():
    assert set(map_spec.MAP_TYPE_SINCE) == {value for value, _ in consts.MAP_TYPES.items()} - {
        consts.BPF_MAP_TYPE_UNSPEC}
