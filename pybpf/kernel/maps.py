"""Typed, dict-like BPF maps.

A :class:`Map` owns one map fd and turns Python keys and values into the
bytes the kernel stores and back: plain ints (unsigned little-endian, sized by
the map), raw bytes, or ``construct`` constructs (what the DSL's struct
declarations are). Per-CPU maps read and write one value per possible CPU.
Keyed maps behave like a dict; queue and stack maps push, pop and peek; ring
buffers and perf event arrays are created here and read by ``ringbuf`` and
``perf``. Batch operations use the kernel's ``BPF_MAP_*_BATCH`` commands when
the map supports them and fall back to one call per key when it does not.

>>> with Map.create(MapSpec("hash", key_size=4, value_size=8,
...                         max_entries=16, name="counts")) as m:   # doctest: +SKIP
...     m[1] = 10
...     m.get(1), m.get(2, 0), dict(m.items())
(10, 0, {1: 10})

A Map is not thread-safe: it reuses its key and value buffers between calls.
"""

import ctypes
import errno as _errno
import struct
from typing import (Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple,
                    Union)

from construct import ConstructError

from ..errors import BPFError, BPFPermissionError, MapFullError
from . import pin as _pin
from . import sys
from .map_codecs import (Codec, KeyType, add_values, bytes_codec, codec_for, construct_codec, fd_codec,
                         int_codec, lpm_codec, parse_cpu_list, percpu_codec, plain_codec,
                         possible_cpus, refusing_codec)
from .map_spec import (KINDS, MAP_TYPE_SINCE, UNKNOWN_KIND, UNSUPPORTED_ERRNOS, MapSpec,
                       create_attr, create_error, strerror)
from .objects import MAPS, MapInfo, map_info
from ..consts import BPF_ANY, BPF_MAP_TYPE_LPM_TRIE, MAP_TYPES

__all__ = [
    "Map", "MapSpec", "MAP_TYPE_SINCE", "Codec", "int_codec", "bytes_codec", "fd_codec",
    "construct_codec", "lpm_codec", "percpu_codec", "possible_cpus", "parse_cpu_list",
]


# --- the map ------------------------------------------------------------------------------


_MISSING = object()


class Map(sys.FDOwner):
    """One BPF map, owning its fd. Build one with :meth:`create`,
    :meth:`from_fd`, :meth:`from_id` or :meth:`from_pin`.

    Keyed maps are dict-like: ``m[k]``, ``m[k] = v``, ``del m[k]``,
    ``k in m``, ``get``, ``pop``, ``keys``/``values``/``items`` (iterators,
    not views), ``clear``. There is no ``len()``: counting walks the whole
    map, so it is spelled :meth:`count`. Missing keys raise ``KeyError``;
    an update of a full map raises :class:`~pybpf.errors.MapFullError`.
    """

    def __init__(self, fd: sys.FD, info: MapInfo, *, name: Optional[str] = None,
                 key: KeyType = None, value: KeyType = None):
        self._fd = fd
        self.id = info.id
        self.map_type = info.type
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.flags = info.flags
        self.name = name if name is not None else info.name
        self._kind = kind = KINDS.get(info.type, UNKNOWN_KIND)
        self.type_name = MAP_TYPES.short(info.type)   # bpftool's spelling, as in MapInfo
        self._kernel_name = MAP_TYPES.name(info.type)  # BPF_MAP_TYPE_*, for messages
        self.ncpus = len(possible_cpus()) if kind.percpu else 1
        self._key = self._make_key_codec(key)
        self._value = self._make_value_codec(value)
        # Reused buffers and attr: one lookup is one syscall and no allocations.
        self._key_buf = ctypes.create_string_buffer(max(self.key_size, 1))
        self._value_buf = ctypes.create_string_buffer(max(self._value.size, 1))
        self._attr = sys.MapElemAttr(map_fd=fd.fileno(), key=sys.address(self._key_buf),
                                     value=sys.address(self._value_buf))
        # BPF_MAP_DELETE_ELEM wants every byte after ``key`` zero (CHECK_ATTR);
        # queue/stack calls pass no key.
        self._delete_attr = sys.MapElemAttr(map_fd=fd.fileno(), key=sys.address(self._key_buf))
        self._keyless_attr = sys.MapElemAttr(map_fd=fd.fileno(),
                                             value=sys.address(self._value_buf))
        self._batch_unsupported: Set[int] = set()

    def _make_key_codec(self, key: KeyType) -> Codec:
        kind = self._kind
        if kind.no_elements or kind.keyless:
            how = ("read it with kernel.ringbuf" if kind.no_elements
                   else "use push(), pop() and peek()")
            return refusing_codec("map %r is a %s: it has no keys; %s"
                                  % (self.name, self._kernel_name, how))
        default = lpm_codec if self.map_type == BPF_MAP_TYPE_LPM_TRIE else plain_codec
        return codec_for(key, self.key_size, default, "key", self.name)

    def _make_value_codec(self, value: KeyType) -> Codec:
        kind = self._kind
        if kind.no_elements:
            return refusing_codec("map %r is a %s: it has no elements to read from Python"
                                  % (self.name, self._kernel_name))
        default = (lambda size: fd_codec()) if kind.fd_values else plain_codec
        codec = codec_for(value, self.value_size, default, "value", self.name)
        return percpu_codec(codec, self.ncpus) if kind.percpu else codec

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def create(cls, spec: MapSpec) -> "Map":
        """Create a new map. Raises ``UnsupportedFeature`` when this kernel
        lacks the map type, ``ValueError`` for a spec the type cannot have."""
        attr = create_attr(spec, spec.type_value)
        op = "BPF_MAP_CREATE (map %r)" % spec.name
        if spec.inner is not None:   # the kernel copies the template's shape, not the map
            with cls.create(spec.inner) as template:
                attr.inner_map_fd = template.fileno()
                ret = sys.bpf_errno(sys.BPF_MAP_CREATE, attr)
        else:
            ret = sys.bpf_errno(sys.BPF_MAP_CREATE, attr)
        if ret < 0:
            raise create_error(-ret, op, attr)
        with sys.closed_on_error(sys.FD(ret)) as fd:
            return cls(fd, map_info(fd), name=spec.name, key=spec.key, value=spec.value)

    @classmethod
    def from_fd(cls, fd: Union[int, sys.FD], *, name: Optional[str] = None,
                key: KeyType = None, value: KeyType = None) -> "Map":
        """Wrap an existing map fd. An ``FD`` is taken over (the Map closes
        it); a plain int is duplicated, so the caller keeps its own."""
        owned = fd if isinstance(fd, sys.FD) else sys.dup_fd(fd)
        with sys.closed_on_error(owned):
            return cls(owned, map_info(owned), name=name, key=key, value=value)

    @classmethod
    def from_id(cls, map_id: int, *, name: Optional[str] = None, key: KeyType = None,
                value: KeyType = None) -> "Map":
        """Open the map with kernel id ``map_id`` (decoded as given)."""
        return cls.from_fd(MAPS.open(map_id), name=name, key=key, value=value)

    @classmethod
    def from_pin(cls, path: str, *, flags: int = 0, name: Optional[str] = None,
                 key: KeyType = None, value: KeyType = None) -> "Map":
        """Open the map pinned at ``path`` (``flags``: BPF_F_RDONLY/BPF_F_WRONLY)."""
        return cls.from_fd(_pin.open_pinned(path, flags), name=name, key=key, value=value)

    def pin(self, path: str) -> None:
        """Pin the map at ``path`` in bpffs."""
        _pin.pin(self._fd, path)

    def info(self) -> MapInfo:
        """What the kernel reports about the map now."""
        return map_info(self._fd)

    # --- ownership (fileno, closed and ``with`` come from FDOwner) ----------------------------

    @property
    def fd(self) -> sys.FD:
        """The map's fd, for helpers and other bpf(2) commands that name it."""
        return self._fd

    def close(self) -> None:
        # A reused fd number must never be hit by a stale call: -1 gives EBADF.
        """Drop our fd and the buffers our calls use."""
        for attr in (self._attr, self._delete_attr, self._keyless_attr):
            attr.map_fd = 0xFFFFFFFF
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "id=%d" % self.id
        return "<Map %r %s %s key_size=%d value_size=%d max_entries=%d>" % (
            self.name, self.type_name, state, self.key_size, self.value_size,
            self.max_entries)

    # --- errors -------------------------------------------------------------------------------

    def _op(self, cmd: int) -> str:
        return "%s (map %r)" % (sys.BPF_CMD_NAMES[cmd], self.name)

    def _error(self, err: int, cmd: int, key: Any = _MISSING) -> Exception:
        """The exception for a failed element call, with the map named."""
        if self.closed:
            return ValueError("map %r is closed" % self.name)
        if err == _errno.ENOENT and key is not _MISSING:
            return KeyError(key)
        if err == _errno.ENOENT and self._kind.keyless:
            return IndexError("map %r (%s) is empty" % (self.name, self._kernel_name))
        if err == _errno.E2BIG and cmd in (sys.BPF_MAP_UPDATE_ELEM, sys.BPF_MAP_UPDATE_BATCH):
            if self._kind.indexed and key is not _MISSING:
                return KeyError(key)   # index >= max_entries
            return MapFullError(self.name, self.max_entries, op=self._op(cmd))
        if err == _errno.EPERM and self._frozen():
            return BPFPermissionError(err, self._op(cmd), "the map is frozen: userspace can "
                                      "read it but no longer write it")
        if err in (_errno.EPERM, _errno.EACCES):
            return sys.error_for(err, self._op(cmd))
        if err == _errno.EEXIST and key is not _MISSING:
            return BPFError(err, self._op(cmd), "key %r already exists (BPF_NOEXIST)" % (key,))
        if err == _errno.EINVAL and cmd == sys.BPF_MAP_DELETE_ELEM and not self._kind.deletable:
            return BPFError(err, self._op(cmd), "%s elements cannot be deleted; store a zero "
                            "value instead" % self._kernel_name)
        return sys.error_for(err, self._op(cmd), "%s: %s" % (self._kernel_name, strerror(err)))

    def _frozen(self) -> bool:
        """Whether BPF_MAP_FREEZE was applied (by anyone): only fdinfo tells."""
        try:
            with open("/proc/self/fdinfo/%d" % self.fileno()) as fdinfo:
                return any(line.split() == ["frozen:", "1"] for line in fdinfo)
        except OSError:
            return False

    def _encode_key(self, key: Any) -> bytes:
        return self._encode(self._key, key, "key", self.key_size)

    def _encode_value(self, value: Any) -> bytes:
        return self._encode(self._value, value, "value", self.value_size)

    def _encode(self, codec: Codec, item: Any, role: str, declared: int) -> bytes:
        """``item`` (a key or value) as the bytes the map stores; a ValueError
        naming the map, the item and the sizes if it does not encode to
        exactly ``codec.size`` bytes (``declared``: the map's key_size or
        value_size, which per-CPU values repeat)."""
        try:
            raw = codec.encode(item)
        except (ValueError, OverflowError, AttributeError, struct.error, ConstructError) as exc:
            raise ValueError("map %r: cannot encode %s %r (%s) as %s (%s_size %d): %s"
                             % (self.name, role, item, type(item).__name__, codec.what, role,
                                declared, exc)) from None
        if len(raw) != codec.size:
            # a value may be per-CPU: then the map needs more than value_size
            needed = ("the map's key_size is %d" % declared if role == "key"
                      else "the map needs %d (value_size %d)" % (codec.size, declared))
            raise ValueError("map %r: %s %r is %d bytes, %s"
                             % (self.name, role, item, len(raw), needed))
        return raw

    # --- raw element calls --------------------------------------------------------------------

    def _call(self, cmd: int, raw_key: Optional[bytes], flags: int = 0) -> int:
        """One element call on the shared buffers; returns 0 or -errno."""
        if raw_key is None:
            attr = self._keyless_attr
        else:
            self._key_buf.raw = raw_key
            attr = self._delete_attr if cmd == sys.BPF_MAP_DELETE_ELEM else self._attr
        attr.flags = flags   # always 0 for delete
        return sys.bpf_errno(cmd, attr)

    def _lookup_raw(self, raw_key: bytes) -> Optional[bytes]:
        ret = self._call(sys.BPF_MAP_LOOKUP_ELEM, raw_key)
        if ret == 0:
            return self._value_buf.raw
        if ret == -_errno.ENOENT:
            return None
        raise self._error(-ret, sys.BPF_MAP_LOOKUP_ELEM)

    # --- dict-like API ----------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        raw = self._lookup_raw(self._encode_key(key))
        if raw is None:
            raise KeyError(key)
        return self._value.decode(raw)

    def get(self, key: Any, default: Any = None) -> Any:
        """The value at ``key``, or ``default`` when absent."""
        raw = self._lookup_raw(self._encode_key(key))
        return default if raw is None else self._value.decode(raw)

    def __contains__(self, key: Any) -> bool:
        return self._lookup_raw(self._encode_key(key)) is not None

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """Store ``value`` at ``key``. ``flags``: BPF_ANY, BPF_NOEXIST (fails
        with EEXIST if present), BPF_EXIST (``KeyError`` if absent)."""
        raw_key = self._encode_key(key)
        self._value_buf.raw = self._encode_value(value)
        ret = self._call(sys.BPF_MAP_UPDATE_ELEM, raw_key, flags)
        if ret < 0:
            raise self._error(-ret, sys.BPF_MAP_UPDATE_ELEM, key)

    def __delitem__(self, key: Any) -> None:
        ret = self._call(sys.BPF_MAP_DELETE_ELEM, self._encode_key(key))
        if ret < 0:
            raise self._error(-ret, sys.BPF_MAP_DELETE_ELEM, key)

    def lookup_and_delete(self, key: Any = _MISSING) -> Any:
        """Remove and return the value at ``key`` (``KeyError`` if absent).
        On a queue or stack, without a key: pop (``IndexError`` if empty)."""
        if key is not _MISSING:
            raw = self._take_raw(self._encode_key(key))
            if raw is None:
                raise KeyError(key)
            return self._value.decode(raw)
        if not self._kind.keyless:
            raise TypeError("map %r (%s) needs a key" % (self.name, self._kernel_name))
        ret = self._call(sys.BPF_MAP_LOOKUP_AND_DELETE_ELEM, None)
        if ret < 0:
            raise self._error(-ret, sys.BPF_MAP_LOOKUP_AND_DELETE_ELEM)
        return self._value.decode(self._value_buf.raw)

    def _take_raw(self, raw_key: bytes) -> Optional[bytes]:
        """Remove the entry at ``raw_key`` and return its value as it was
        when removed, or None when there is none.

        BPF_MAP_LOOKUP_AND_DELETE_ELEM copies and deletes in one step under
        the bucket's lock (hash types, Linux 5.14), so an update cannot fall
        between the two. Map types without it (LPM tries; hashes before
        5.14) are read, then deleted: an update made between the two calls
        is deleted with the entry.
        """
        if sys.BPF_MAP_LOOKUP_AND_DELETE_ELEM not in self._batch_unsupported:
            ret = self._call(sys.BPF_MAP_LOOKUP_AND_DELETE_ELEM, raw_key)
            if ret == 0:
                return self._value_buf.raw
            if ret == -_errno.ENOENT:
                return None
            if ret != -sys.ENOTSUPP:
                raise self._error(-ret, sys.BPF_MAP_LOOKUP_AND_DELETE_ELEM)
            self._batch_unsupported.add(sys.BPF_MAP_LOOKUP_AND_DELETE_ELEM)
        raw = self._lookup_raw(raw_key)
        if raw is None:
            return None
        ret = self._call(sys.BPF_MAP_DELETE_ELEM, raw_key)
        if ret == -_errno.ENOENT:
            return None        # someone else took it: it is theirs
        if ret < 0:
            raise self._error(-ret, sys.BPF_MAP_DELETE_ELEM)
        return raw

    def pop(self, *args: Any) -> Any:
        """Keyed maps: ``pop(key[, default])`` like dict. Queue/stack maps:
        ``pop([default])`` takes the next element."""
        keyless = self._kind.keyless
        if len(args) > (1 if keyless else 2) or (not keyless and not args):
            raise TypeError("pop() takes %s" % ("([default])" if keyless else "(key[, default])"))
        try:
            return self.lookup_and_delete() if keyless else self.lookup_and_delete(args[0])
        except (KeyError, IndexError):
            if len(args) == (1 if keyless else 2):
                return args[-1]
            raise

    def push(self, value: Any, flags: int = BPF_ANY) -> None:
        """Queue/stack: add ``value`` (``MapFullError`` when full, unless
        ``flags=BPF_EXIST``, which drops the oldest element). Bloom filter: add."""
        self._value_buf.raw = self._encode_value(value)
        ret = self._call(sys.BPF_MAP_UPDATE_ELEM, None, flags)
        if ret < 0:
            raise self._error(-ret, sys.BPF_MAP_UPDATE_ELEM)

    def peek(self) -> Any:
        """Queue/stack: the next element without removing it (``IndexError`` if empty)."""
        ret = self._call(sys.BPF_MAP_LOOKUP_ELEM, None)
        if ret < 0:
            raise self._error(-ret, sys.BPF_MAP_LOOKUP_ELEM)
        return self._value.decode(self._value_buf.raw)

    def freeze(self) -> None:
        """Make the map read-only for userspace from now on (BPF_MAP_FREEZE)."""
        ret = sys.bpf_errno(sys.BPF_MAP_FREEZE, sys.MapElemAttr(map_fd=self._attr.map_fd))
        if ret < 0:
            raise self._error(-ret, sys.BPF_MAP_FREEZE)

    # --- iteration ----------------------------------------------------------------------------

    def _raw_keys(self) -> Iterator[bytes]:
        """Every key once, even while entries are deleted underneath.

        GET_NEXT_KEY of a key that was deleted restarts at the first key, so
        keys already seen are walked over but not yielded again. Between two
        new keys a restart walks at most the keys seen so far; more steps than
        that would mean a cycle, and the walk ends.
        """
        if self._kind.keyless or self._kind.no_elements:
            self._key.encode(None)   # raises the TypeError that says why
        if self._kind.indexed:
            for index in range(self.max_entries):
                yield index.to_bytes(self.key_size, "little")
            return
        size = self.key_size
        cursor = ctypes.create_string_buffer(size)
        following = ctypes.create_string_buffer(size)
        attr = sys.MapElemAttr(map_fd=self._attr.map_fd, key=0, value=sys.address(following))
        seen = set()
        stale = 0
        while True:
            ret = sys.bpf_errno(sys.BPF_MAP_GET_NEXT_KEY, attr)
            if ret == -_errno.ENOENT:
                return
            if ret < 0:
                raise self._error(-ret, sys.BPF_MAP_GET_NEXT_KEY)
            raw = following.raw
            if raw in seen:
                stale += 1
                if stale > len(seen):
                    return
            else:
                stale = 0
                seen.add(raw)
                yield raw
            cursor.raw = raw
            attr.key = sys.address(cursor)

    def _raw_items(self) -> Iterator[Tuple[bytes, bytes]]:
        for raw_key in self._raw_keys():
            raw_value = self._lookup_raw(raw_key)
            if raw_value is not None:   # deleted since we saw its key
                yield raw_key, raw_value

    def keys(self) -> Iterator[Any]:
        """Every key, decoded (walked with BPF_MAP_GET_NEXT_KEY)."""
        decode = self._key.decode
        return (decode(raw) for raw in self._raw_keys())

    __iter__ = keys

    def values(self) -> Iterator[Any]:
        """Every value, decoded."""
        decode = self._value.decode
        return (decode(raw) for _, raw in self._raw_items())

    def items(self) -> Iterator[Tuple[Any, Any]]:
        """Every (key, value), decoded."""
        key, value = self._key.decode, self._value.decode
        return ((key(k), value(v)) for k, v in self._raw_items())

    def count(self) -> int:
        """Number of entries (walks the map: O(n) syscalls)."""
        return sum(1 for _ in self._raw_keys())

    def clear(self) -> None:
        """Remove every entry; arrays, which cannot delete, get zero values."""
        if not self._kind.deletable:
            zero = bytes(self._value.size)
            for raw_key in self._raw_keys():
                self._value_buf.raw = zero
                ret = self._call(sys.BPF_MAP_UPDATE_ELEM, raw_key)
                if ret < 0:
                    raise self._error(-ret, sys.BPF_MAP_UPDATE_ELEM)
            return
        for raw_key in list(self._raw_keys()):
            ret = self._call(sys.BPF_MAP_DELETE_ELEM, raw_key)
            if ret < 0 and ret != -_errno.ENOENT:
                raise self._error(-ret, sys.BPF_MAP_DELETE_ELEM)

    # --- batch operations ---------------------------------------------------------------------

    def _batch_supported(self, cmd: int) -> bool:
        return cmd not in self._batch_unsupported

    def _note_unsupported(self, cmd: int, err: int) -> bool:
        """Remember that this map refuses a batch command; True if that is
        what ``err`` means."""
        if err in UNSUPPORTED_ERRNOS:
            self._batch_unsupported.add(cmd)
            return True
        return False

    def _read_batch(self, cmd: int, batch_size: int) -> Optional[List[Tuple[bytes, bytes]]]:
        """All entries by LOOKUP_BATCH or LOOKUP_AND_DELETE_BATCH, or None if
        the map does not support ``cmd``."""
        key_size, value_size = self.key_size, self._value.size
        count = max(1, min(batch_size, self.max_entries))
        token_size = max(key_size, 8)   # hash maps use a u32 bucket, arrays a key
        tokens = (ctypes.create_string_buffer(token_size), ctypes.create_string_buffer(token_size))
        found: List[Tuple[bytes, bytes]] = []
        attr = sys.MapBatchAttr(map_fd=self._attr.map_fd, in_batch=0,
                                out_batch=sys.address(tokens[1]))
        while True:
            keys = ctypes.create_string_buffer(count * key_size)
            values = ctypes.create_string_buffer(count * value_size)
            attr.keys, attr.values, attr.count = sys.address(keys), sys.address(values), count
            ret = sys.bpf_errno(cmd, attr)
            got = attr.count
            if ret < 0 and ret != -_errno.ENOENT:
                if ret == -_errno.ENOSPC and got == 0:
                    count *= 2   # one hash bucket holds more than ``count`` entries
                    continue
                if not found and attr.in_batch == 0 and self._note_unsupported(cmd, -ret):
                    return None
                raise self._error(-ret, cmd)
            key_bytes, value_bytes = keys.raw, values.raw
            found.extend((key_bytes[i * key_size:(i + 1) * key_size],
                          value_bytes[i * value_size:(i + 1) * value_size]) for i in range(got))
            if ret == -_errno.ENOENT:
                return found
            ctypes.memmove(tokens[0], tokens[1], token_size)
            attr.in_batch = sys.address(tokens[0])

    def _decoded(self, pairs: Iterable[Tuple[bytes, bytes]]) -> List[Tuple[Any, Any]]:
        key, value = self._key.decode, self._value.decode
        return [(key(k), value(v)) for k, v in pairs]

    def lookup_batch(self, batch_size: int = 256) -> List[Tuple[Any, Any]]:
        """Every (key, value), read ``batch_size`` entries per syscall where
        the map supports BPF_MAP_LOOKUP_BATCH, else one key at a time."""
        if self._batch_supported(sys.BPF_MAP_LOOKUP_BATCH):
            found = self._read_batch(sys.BPF_MAP_LOOKUP_BATCH, batch_size)
            if found is not None:
                return self._decoded(found)
        return self._decoded(self._raw_items())

    def lookup_and_delete_batch(self, batch_size: int = 256) -> List[Tuple[Any, Any]]:
        """Remove and return every (key, value): a drain that loses nothing
        between read and clear. BPF_MAP_LOOKUP_AND_DELETE_BATCH copies and
        deletes each bucket under its lock; without it, each key is taken
        with :meth:`_take_raw`. An entry added or updated while the drain
        runs is in this drain or stays for the next one, never dropped
        (except on map types that have neither command, see :meth:`_take_raw`).
        """
        if self._batch_supported(sys.BPF_MAP_LOOKUP_AND_DELETE_BATCH):
            found = self._read_batch(sys.BPF_MAP_LOOKUP_AND_DELETE_BATCH, batch_size)
            if found is not None:
                return self._decoded(found)
        drained = []
        for raw_key in list(self._raw_keys()):
            raw_value = self._take_raw(raw_key)
            if raw_value is not None:
                drained.append((raw_key, raw_value))
        return self._decoded(drained)

    def sum(self, key: Any) -> Any:
        """A per-CPU map's value at ``key`` added up over the CPUs (bcc's
        ``sum()``): ints add, struct values add field by field, arrays
        element by element. ``KeyError`` when the key is absent."""
        if not self._kind.percpu:
            raise TypeError("map %r is a %s, not a per-CPU map: read it with m[key]"
                            % (self.name, self._kernel_name))
        values = self[key]
        total = values[0]
        for value in values[1:]:
            total = add_values(total, value, self.name)
        return total

    def _write_batch(self, cmd: int, raw_keys: Sequence[bytes], raw_values: Optional[bytes],
                     flags: int) -> Tuple[int, int]:
        """(entries done, -errno or 0) for UPDATE_BATCH/DELETE_BATCH, or
        (0, 0) after noting that the map does not support ``cmd``."""
        keys = ctypes.create_string_buffer(b"".join(raw_keys), len(raw_keys) * self.key_size)
        values = ctypes.create_string_buffer(raw_values, len(raw_values)) if raw_values else None
        attr = sys.MapBatchAttr(map_fd=self._attr.map_fd, keys=sys.address(keys),
                                values=sys.address(values) if values is not None else 0,
                                count=len(raw_keys), elem_flags=flags)
        ret = sys.bpf_errno(cmd, attr)
        if ret >= 0:
            return len(raw_keys), 0
        # The kernel writes back how many it did, except when it refused the
        # command outright (then ``count`` still holds what we asked for).
        if attr.count in (0, len(raw_keys)) and self._note_unsupported(cmd, -ret):
            return 0, 0
        return attr.count, ret

    def update_batch(self, items: Union[Mapping[Any, Any], Iterable[Tuple[Any, Any]]],
                     flags: int = BPF_ANY) -> int:
        """Store many entries in one syscall (BPF_MAP_UPDATE_BATCH) where
        supported. Returns the number stored; on failure raises like
        :meth:`update`, after the entries before the failing one were stored."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        if not pairs:
            return 0
        raw_keys = [self._encode_key(k) for k, _ in pairs]
        raw_values = b"".join(self._encode_value(v) for _, v in pairs)
        cmd = sys.BPF_MAP_UPDATE_BATCH
        if self._batch_supported(cmd):
            done, ret = self._write_batch(cmd, raw_keys, raw_values, flags)
            if ret < 0:
                raise self._error(-ret, cmd, pairs[done][0] if done < len(pairs) else _MISSING)
            if done:
                return done
        for key, value in pairs:
            self.update(key, value, flags)
        return len(pairs)

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """Delete many keys in one syscall (BPF_MAP_DELETE_BATCH) where
        supported. A missing key raises ``KeyError`` after the keys before it
        were deleted."""
        keys = list(keys)
        if not keys:
            return 0
        raw_keys = [self._encode_key(k) for k in keys]
        cmd = sys.BPF_MAP_DELETE_BATCH
        if self._batch_supported(cmd):
            done, ret = self._write_batch(cmd, raw_keys, None, 0)
            if ret < 0:
                raise self._error(-ret, cmd, keys[done] if done < len(keys) else _MISSING)
            if done:
                return done
        for key in keys:
            del self[key]
        return len(keys)
