"""Load a :class:`~pybpf.spec.CollectionSpec` into the kernel, as one owned whole.

.. code-block:: python

    spec = collection_spec(count_syscalls)        # pybpf.dsl: build the programs
    spec.maps["counts"].max_entries = 4096        # change the spec before loading
    with Collection(spec) as coll:                # maps, configs, programs
        coll.attach()                             # their tracepoints
        print(dict(coll.maps.counts.items()))

A :class:`Collection` is cilium/ebpf's ``Collection``: it creates every map,
fills and freezes the configs, loads every program (patching in the maps'
fds), and owns all of it, with the links and readers made through it: one
``close()`` (or the end of the ``with`` block) detaches, closes the readers,
unloads and frees, in that order, also when loading fails half way. A
collection dropped without ``close()`` closes itself when garbage-collected
and warns (``ResourceWarning``), as an unclosed file does. Nothing global
changes when a collection loads: two collections of one spec are
independent. ``coll.maps.counts`` and ``coll.programs.count_syscalls`` (or
``coll.maps["counts"]``) are the kernel objects, with the spec's codecs.
"""

import errno
import os
import warnings
from contextlib import ExitStack
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .consts import (BPF_MAP_TYPE_PERF_EVENT_ARRAY, BPF_MAP_TYPE_PROG_ARRAY,
                     BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_XDP)
from .errors import BPFError, ProgramTypeError
from .kernel import features, link, netattach
from .kernel.btf_load import load_btf
from .kernel.map_spec import MapSpec, create_attr
from .kernel.maps import Map
from .kernel.pin import unpin
from .kernel.prog import Program
from .kernel.records import decoder_for
from .kernel.perf import PerfReader
from .kernel.reader import RingReader
from .kernel.ringbuf import RingBufReader
from .spec import CollectionSpec, ProgramSpec

#: Program types attached to a network interface rather than a tracepoint.
NETWORK_PROGRAMS = {BPF_PROG_TYPE_XDP: "attach_xdp", BPF_PROG_TYPE_SCHED_CLS: "attach_tc"}


class ByName(Dict[str, Any]):
    """A dict whose entries are also attributes: ``coll.maps.counts`` is
    ``coll.maps["counts"]``; a missing one names those there are."""

    def __init__(self, kind: str):
        super().__init__()
        self._kind = kind

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError("no %s named %r is loaded (there are: %s)"
                                 % (self._kind, name, ", ".join(self) or "none")) from None


class Collection:
    """The maps and programs of ``spec``, loaded; with ``config``, settings
    applied over the spec's (on a copy: ``spec`` is not changed).

    A program declared for cpu v4 needs a kernel with the cpu v4
    instructions (Linux 6.6), whether or not its code uses one: that is
    what the declaration is for (LLVM's ``-mcpu=v4`` is asked the same way).
    """

    def __init__(self, spec: CollectionSpec, *, config: Optional[Mapping[str, Any]] = None):
        self._resources = ExitStack()
        self.maps = ByName("map")
        self.programs = ByName("program")
        self.links: List[Any] = []
        if config:
            spec = spec.copy()
            spec.set_config(config)
        self.spec = spec
        if not spec.programs:
            raise ValueError("a collection needs at least one program")
        self._new_pins: List[str] = []
        try:
            self._load()
        except BaseException:
            self.close()
            for path in self._new_pins:
                unpin(path)
            raise

    def _load(self) -> None:
        spec = self.spec
        if any(program.cpu >= 4 for program in spec.programs.values()):
            features.probe().require("cpu_v4")   # else: "BPF_ALU uses reserved fields"
        configs = {config.map: config for config in spec.configs.values()}
        for name, map_spec in spec.maps.items():
            live, reused = self._map(map_spec)
            config = configs.get(name)
            if config is not None and not reused:
                live[0] = config.encode(config.values)
                if config.freeze:
                    live.freeze()
            self.maps[name] = live
        self._fill_slots(self.maps, BPF_MAP_TYPE_PROG_ARRAY, exclude=True)
        for name, program in spec.programs.items():
            if program.autoload:
                self.programs[name] = self._resources.enter_context(_load_program(program,
                                                                                  self.maps))
        self._fill_slots(self.programs, BPF_MAP_TYPE_PROG_ARRAY)

    def _map(self, spec: MapSpec) -> Tuple[Map, bool]:
        """The map of ``spec`` and whether it was reused: one pinned at its
        ``pin_path`` if it matches (libbpf's reuse test), else a new one,
        pinned there (and unpinned again if the collection fails to load)."""
        if spec.pin_path and os.path.exists(spec.pin_path):
            live = self._resources.enter_context(
                Map.from_pin(spec.pin_path, name=spec.name, key=spec.key, value=spec.value))
            _check_reusable(live, spec)
            return live, True
        live = self._resources.enter_context(Map.create(spec))
        if spec.pin_path:
            live.pin(spec.pin_path)
            self._new_pins.append(spec.pin_path)
        return live, False

    def _fill_slots(self, values: Mapping[str, Any], map_type: int,
                    exclude: bool = False) -> None:
        """Write each map's ``contents`` (of ``map_type``, or of every other
        type with ``exclude``): slot index -> the fd of the named value."""
        for name, map_spec in self.spec.maps.items():
            if not map_spec.contents or (map_spec.type_value == map_type) == exclude:
                continue
            for index, value_name in sorted(map_spec.contents.items()):
                if value_name not in values:
                    raise KeyError("map %r: slot %d holds %r, which this collection does not "
                                   "have" % (name, index, value_name))
                self.maps[name][index] = values[value_name]

    # --- attaching ------------------------------------------------------------------------------

    def attach(self, *names: str) -> "Collection":
        """Attach the programs named (by default every one with a
        tracepoint) to their tracepoints. XDP and tc programs attach to an
        interface: :meth:`attach_xdp`, :meth:`attach_tc`."""
        programs = self.spec.programs
        unknown = set(names) - set(self.programs)
        if unknown:
            raise KeyError("no program named %s is loaded in this collection"
                           % ", ".join(sorted(unknown)))
        for name in names:
            if programs[name].prog_type in NETWORK_PROGRAMS:
                raise ProgramTypeError("%s attaches to a network interface, not a tracepoint: "
                                       "use %s(interface)"
                                       % (name, NETWORK_PROGRAMS[programs[name].prog_type]))
        try:
            for name, program in programs.items():
                if ((names and name not in names) or program.prog_type in NETWORK_PROGRAMS
                        or name not in self.programs):
                    continue
                if program.prog_type == BPF_PROG_TYPE_RAW_TRACEPOINT:
                    attached = link.attach_raw_tracepoint(self.programs[name], program.target)
                else:
                    attached = link.attach_tracepoint(self.programs[name], program.target)
                self._keep(attached)
        except BaseException:
            self.close()
            raise
        return self

    def attach_xdp(self, interface: Any, program: Optional[str] = None, *,
                   mode: Optional[str] = None, use_link: Optional[bool] = None) -> "Collection":
        """Attach the XDP program named ``program`` (by default the
        collection's only one) to ``interface``, a name or an index, until
        :meth:`close`. ``mode`` and ``use_link`` are those of
        :func:`pybpf.kernel.netattach.attach_xdp`."""
        loaded = self._network_program(program, BPF_PROG_TYPE_XDP)
        return self._keep(netattach.attach_xdp(loaded, interface, mode=mode, use_link=use_link))

    def attach_tc(self, interface: Any, direction: str = "ingress", program: Optional[str] = None,
                  *, use_link: Optional[bool] = None) -> "Collection":
        """Attach the tc program named ``program`` (by default the
        collection's only one) to ``interface``'s ``"ingress"`` or
        ``"egress"``, until :meth:`close`; see
        :func:`pybpf.kernel.netattach.attach_tc`."""
        loaded = self._network_program(program, BPF_PROG_TYPE_SCHED_CLS)
        return self._keep(netattach.attach_tc(loaded, interface, direction, use_link=use_link))

    def _network_program(self, name: Optional[str], prog_type: int) -> Program:
        """The loaded program ``name``, or the only one of ``prog_type``."""
        if name is None:
            matching = [n for n, s in self.spec.programs.items() if s.prog_type == prog_type]
            if len(matching) != 1:
                raise ValueError("this collection has %d %s programs (%s): name the one to "
                                 "attach" % (len(matching), "XDP" if prog_type ==
                                             BPF_PROG_TYPE_XDP else "tc",
                                             ", ".join(matching) or "none"))
            name = matching[0]
        if name not in self.programs:
            raise KeyError("no program named %r is loaded in this collection" % name)
        return self.programs[name]

    def _keep(self, attachment: Any) -> "Collection":
        """Hold ``attachment`` until :meth:`close`, which detaches first."""
        self.links.append(self._resources.enter_context(attachment))
        return self

    # --- reading --------------------------------------------------------------------------------

    def reader(self, ring: Any, record_type: Any, **options: Any) -> RingReader:
        """A reader of the ring buffer or perf event array map ``ring`` (its
        name, or its DSL declaration) that decodes ``record_type`` (a DSL struct, whose
        ``char[N]`` fields read as ``str``: its ``text_construct()``; or
        anything with ``construct()``) and reports the records the programs
        counted as lost (the DSL's ``<ring>_lost`` map, when there is one).
        The collection closes it with everything else; ``options`` are
        :class:`~pybpf.kernel.ringbuf.RingBufReader`'s (or
        :class:`~pybpf.kernel.perf.PerfReader`'s)."""
        name = getattr(ring, "name", ring)
        layout = getattr(record_type, "text_construct", record_type.construct)()
        decoder = decoder_for(layout, _type_name(record_type))
        live = self.maps[name]
        reader: RingReader
        if live.map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY:
            reader = PerfReader(live, decoder=decoder, **options)
        else:
            reader = RingBufReader(live, lost_counter_map=self.maps.get(name + "_lost"),
                                   decoder=decoder, **options)
        return self._resources.enter_context(reader)

    # --- closing --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran: no map or program is left open."""
        return not self.maps and not self.programs

    def close(self) -> None:
        """Close the readers, detach, unload, and close the maps (in that
        order). Closing twice is harmless."""
        resources, self._resources = self._resources, ExitStack()
        self.links.clear()
        self.programs.clear()
        self.maps.clear()
        resources.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_resources", None) is not None and not self.closed:
            warnings.warn("unclosed %r: use close() or a with block" % self, ResourceWarning,
                          source=self)
            self.close()

    def __repr__(self) -> str:
        names = ", ".join(self.spec.programs) if hasattr(self, "spec") else ""
        return "<Collection %s%s>" % (names, " (closed)" if self.closed else "")


def _type_name(record_type: Any) -> str:
    """``Event`` for a struct class, its ``name`` for a type object."""
    if isinstance(record_type, type):
        return record_type.__name__
    return getattr(record_type, "name", "Record")


def _check_reusable(live: Map, spec: MapSpec) -> None:
    """Refuse a pinned map unlike ``spec`` (libbpf's ``map_is_reuse_compat``)."""
    want = create_attr(spec, spec.type_value)
    have = live.info()
    pairs = (("type", want.map_type), ("key_size", want.key_size),
             ("value_size", want.value_size), ("max_entries", want.max_entries),
             ("flags", want.map_flags))
    differ = ["%s %s, not %s" % (name, getattr(have, name), value) for name, value in pairs
              if getattr(have, name) != value]
    if differ:
        raise BPFError(errno.EEXIST, "reuse pinned map %r" % spec.name,
                       "%s holds a different map (%s): unpin it or change the spec"
                       % (spec.pin_path, "; ".join(differ)))


def _load_program(spec: ProgramSpec, maps: Mapping[str, Map]) -> Program:
    """Load one program; one with its functions described also gets its
    BTF (which the kernel keeps once the program holds it)."""
    load_fields = dict(prog_type=spec.prog_type, name=spec.name, license=spec.license,
                       maps=maps, expected_attach_type=spec.expected_attach_type,
                       prog_flags=spec.prog_flags, attach_btf_id=spec.attach_btf_id)
    if spec.btf is None:
        return Program.load(spec.code, **load_fields)
    with load_btf(spec.btf) as btf:
        return Program.load(spec.code, btf_fd=btf.fileno(), func_info=spec.func_info,
                            line_info=spec.line_info, **load_fields)

