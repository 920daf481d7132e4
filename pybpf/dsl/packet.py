"""Packets: the context of XDP and tc programs, and header access with the
bounds checks the verifier wants.

An XDP program's context is ``struct xdp_md``, a tc (``sched_cls``)
program's ``struct __sk_buff``. Both hold the packet as two 32-bit fields,
``data`` and ``data_end``, that the kernel rewrites into pointers when the
program loads them, and the verifier lets a program read a packet byte
only below a ``data_end`` comparison that covers it: in C,
``if ((void *)(eth + 1) > data_end) return XDP_PASS;`` before
``eth->h_proto``.

Here that comparison is the ``if`` around the use, and nothing is written
by hand but the header's type:

.. code-block:: python

    eth = p.packet_header(ctx, EthHdr)           # struct ethhdr *eth = data;
    with p.if_(eth):                             # if (eth + 1 <= data_end)
        with p.if_(eth.h_proto == ETH_P_IP):     # (h_proto is a be16)
            ip = p.packet_header(ctx, IPv4Hdr, after=eth)
            with p.if_(ip):
                proto = ip.protocol

Reading a header where its check was not proven is a build error naming
the line, as for a map value that may be NULL (:mod:`.memory`); ``with
p.if_(eth.is_null): p.return_(XDP_PASS)`` is the early-return form.
``after=`` places a header behind another one: behind its size, or behind
the length the header itself states when its declaration has a
``header_length(ref)`` function (IPv4's IHL and TCP's data offset, in
:mod:`pybpf.net`); that function reads the header, which must be proven.

Fields at a constant offset are read as ``data + offset`` (what clang
emits); a header behind a variable-length one gets a pointer of its own.
The byte order statements (``p.ntohs`` and friends) are here too, since
packets are where network order lives (types in :mod:`.byteorder`).
"""

from typing import Any, Dict, FrozenSet, Optional

from .byteorder import NetworkIntType, be16, be32, swap
from .memory import Ref
from .types import IntType, PointerType, Struct, StructType, as_type, u16, u32, u64, void
from .values import Compare, Cond, Const, Local, Value, as_value, build_error, convert, implicit

#: What ``data``, ``data_end`` and header bases are: program memory once checked.
PACKET_POINTER = PointerType(void)


# --- the contexts -----------------------------------------------------------------------------

class XdpMd(Struct):
    """``struct xdp_md`` (include/uapi/linux/bpf.h). UAPI offsets never
    change (fields are only appended), so they are declared, not read from
    BTF at build time; ``tests/kernel/test_net_testrun.py`` checks them
    against the running kernel's BTF."""
    data: u32
    data_end: u32
    data_meta: u32
    ingress_ifindex: u32
    rx_queue_index: u32
    egress_ifindex: u32


class SkBuff(Struct):
    """``struct __sk_buff`` (include/uapi/linux/bpf.h) up to ``napi_id``:
    the part a tc program reads (the ``family``.. ``local_port`` socket
    fields after it belong to sk_skb programs). Checked against BTF like
    :class:`XdpMd`."""
    len: u32
    pkt_type: u32
    mark: u32
    queue_mapping: u32
    protocol: u32          # __be16 in the low half
    vlan_present: u32
    vlan_tci: u32
    vlan_proto: u32        # __be16 in the low half
    priority: u32
    ingress_ifindex: u32
    ifindex: u32
    tc_index: u32
    cb: u32[5]
    hash: u32
    tc_classid: u32
    data: u32
    data_end: u32
    napi_id: u32


class PacketContext:
    """``ctx`` of a packet program: the context struct's fields by name
    (``ctx.ingress_ifindex``), read-only. ``ctx.data`` and ``ctx.data_end``
    bound the packet; they are loaded once, where the program starts, so
    that every block may use them (unused, they cost nothing)."""

    layout: StructType
    #: Fields holding a network-order value in a 32-bit slot: loaded whole
    #: (the context allows no narrower access to all of them), typed narrower.
    network_fields: Dict[str, NetworkIntType] = {}
    pointer_fields: FrozenSet[str] = frozenset(("data", "data_end"))

    def __init__(self, code: Any):
        object.__setattr__(self, "_code", code)
        (pointer,) = code.params([(PointerType(void), "the context")])
        object.__setattr__(self, "_pointer", pointer)
        object.__setattr__(self, "_data", self._load_pointer("data"))
        object.__setattr__(self, "_data_end", self._load_pointer("data_end"))

    @property
    def data(self) -> Local:
        """``ctx->data``: the first byte of the packet."""
        return self._data

    @property
    def data_end(self) -> Local:
        """``ctx->data_end``: one past the last byte; every read checks against it."""
        return self._data_end

    def _load_pointer(self, name: str) -> Local:
        """A 32-bit context load that the kernel turns into a packet pointer."""
        loaded = self._code.load(self._pointer, self.layout.field(name).offset, u32)
        return Local(PACKET_POINTER, loaded.storage)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        fields = self.layout.fields
        if name not in fields:
            raise build_error("struct %s has no field %r (fields: %s)"
                              % (self.layout.name, name, ", ".join(fields)))
        if name in self.pointer_fields:
            return self._load_pointer(name)
        field = fields[name]
        if not field.type.is_scalar:
            return Ref(self._pointer, field.offset, field.type, writable=False)
        loaded = self._code.load(self._pointer, field.offset, field.type)
        network = self.network_fields.get(name)
        return loaded if network is None else Local(network, loaded.storage)

    def __setattr__(self, name: str, value: Any) -> None:
        raise build_error("the fields of %s are read-only in the DSL" % self.layout.name)

    def _pointer_value(self) -> Local:
        """The context itself, for helpers that take it (``bpf_xdp_adjust_head``)."""
        return self._pointer


class XdpContext(PacketContext):
    """``ctx`` of an ``@xdp`` program (``struct xdp_md``)."""

    layout = XdpMd.layout
    pointer_fields = frozenset(("data", "data_end", "data_meta"))

    @property
    def len(self) -> Value:
        """The frame's length in bytes, ``data_end - data`` (a ``u64``):
        XDP's counterpart of ``skb->len``. Subtracting pointers needs the
        privileges that loading XDP needs anyway (CAP_PERFMON)."""
        return convert(self._data_end, u64) - convert(self._data, u64)


class SkbContext(PacketContext):
    """``ctx`` of a ``@tc`` program (``struct __sk_buff``): ``ctx.len`` is
    the whole packet's length, paged data included."""

    layout = SkBuff.layout
    network_fields = {"protocol": be16, "vlan_proto": be16}


# --- headers ----------------------------------------------------------------------------------

class BoundsCheck(Compare):
    """``header_end <= data_end`` (``op`` "<="), or its negation (">"):
    where it holds, the header whose check ``token`` is may be read."""

    __slots__ = ("token",)

    def __init__(self, op: str, end: Local, data_end: Local, token: Any):
        super().__init__(op, end, data_end, False, True)
        self.token = token

    def nonnull_facts(self) -> FrozenSet[Any]:
        """The packet bound proven where the check holds."""
        return frozenset((self.token,)) if self.op == "<=" else frozenset()

    def null_facts(self) -> FrozenSet[Any]:
        """The packet bound proven where the check fails."""
        return frozenset((self.token,)) if self.op == ">" else frozenset()


class PacketRef(Ref):
    """A header in the packet: ``type`` at ``base + offset`` (``base`` a
    packet pointer), readable where its bounds check was proven. ``token``
    stands for that check in the facts of the blocks (see
    :meth:`~.codegen.FunctionCode.proven_nonnull`); ``decl`` is what the
    header was declared as (for ``header_length``)."""

    __slots__ = ("_token", "_decl", "_ctx")
    __hash__ = Ref.__hash__

    def __init__(self, base: Local, offset: int, decl: Any, token: Any, ctx: PacketContext):
        super().__init__(base, offset, as_type(decl))
        object.__setattr__(self, "_token", token)
        object.__setattr__(self, "_decl", decl)
        object.__setattr__(self, "_ctx", ctx)

    def _sub(self, offset: int, rtype: Any) -> "PacketRef":
        return PacketRef(self._base, self._offset + offset, rtype, self._token, self._ctx)

    def _checked(self) -> Any:
        code = self._code()
        if not code.proven_nonnull(self._token):
            raise build_error(
                "%s may extend past the end of the packet here: check it first, with `with "
                "p.if_(header):` around the use, or `with p.if_(header.is_null): "
                "p.return_(...)` before it" % self._token.origin)
        return code

    def _bounds(self, op: str) -> BoundsCheck:
        end = convert(self._base, u64) + (self._offset + self._type.size)
        return BoundsCheck(op, Local(PACKET_POINTER, end.storage), self._ctx.data_end,
                           self._token)

    def _truth(self) -> Cond:
        """``with p.if_(header):``: the header lies inside the packet."""
        return self._bounds("<=")

    @property
    def is_null(self) -> Cond:
        """The header does not fit in the packet (read: is not there)."""
        return self._bounds(">")

    def __eq__(self, other: Any) -> Cond:  # type: ignore[override]
        raise build_error("a packet header is checked against the end of the packet, not "
                          "compared with NULL: write `with p.if_(header):` or use "
                          "header.is_null")

    __ne__ = __eq__

    def _length(self) -> Any:
        """Where the next header starts, from this one's start: the length
        the header states (``header_length``), else its size."""
        length = getattr(self._decl, "header_length", None)
        return self._type.size if length is None else length(self)


class PacketStatements:
    """The packet statements of :class:`~.builder.Builder` (a mixin: it
    relies on the builder's ``code``)."""

    code: Any

    def packet_header(self, ctx: Any, header: Any, *, after: Optional[PacketRef] = None
                      ) -> PacketRef:
        """The ``header`` (a Struct, or any type) at the start of ``ctx``'s
        packet, or right behind the header ``after``. Check it with
        ``with p.if_(hdr):`` before reading it (see the module docstring)."""
        if not isinstance(ctx, PacketContext):
            raise build_error("p.packet_header() takes the ctx of an @xdp or @tc program, not "
                              "%r" % (ctx,))
        try:
            name = as_type(header).name
        except TypeError as exc:
            raise build_error(str(exc)) from None
        if after is None:
            base, offset = ctx.data, 0
        elif not isinstance(after, PacketRef):
            raise build_error("after= takes a header that p.packet_header() returned, not %r"
                              % (after,))
        else:
            base, offset = after._base, after._offset
            length = after._length()
            if isinstance(length, int):
                offset += length
            else:
                start = convert(base, u64) + (length + offset)
                base, offset = Local(PACKET_POINTER, start.storage), 0
        token = self.code.new_storage("the %s header" % name)
        return PacketRef(base, offset, header, token, ctx)

    def ntohs(self, value: Any) -> Value:
        """``bpf_ntohs(value)``: a ``be16`` as the ``u16`` it stands for."""
        return _byte_swap(value, be16, u16)

    def ntohl(self, value: Any) -> Value:
        """``bpf_ntohl(value)``: a ``be32`` as the ``u32`` it stands for."""
        return _byte_swap(value, be32, u32)

    def htons(self, value: Any) -> Value:
        """``bpf_htons(value)``: a ``u16`` in network order (a constant is
        converted at build time, like ``be16(value)``)."""
        return _byte_swap(value, u16, be16)

    def htonl(self, value: Any) -> Value:
        """``bpf_htonl(value)``: a ``u32`` in network order."""
        return _byte_swap(value, u32, be32)


def _byte_swap(value: Any, source: IntType, target: IntType) -> Value:
    """``value`` (taken as a ``source``) with its bytes swapped, as a ``target``."""
    value = as_value(value)
    if isinstance(value, Const):
        bits = source.wrap(value.value) if value.type is None else \
            implicit(value, source).value   # type: ignore[attr-defined]
        return Const(swap(bits, source.size), target)
    if isinstance(source, NetworkIntType) and value.type is not source:
        raise build_error("p.%s() takes a %s, not %s"
                          % (source.to_host, source.name, getattr(value.type, "name", value)))
    value = implicit(value, source)
    return value.fn.to_big_endian(value, target)   # type: ignore[union-attr]
