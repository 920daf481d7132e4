"""Load-time configuration: values set when the program is loaded.

``filters = Config(target_pid=u32, comm=char[16])`` declares settings; a
program reads them as ``filters.target_pid``, and the loader fills them
from Python (``Collection(spec, config={"target_pid": 42})``, or
``spec.set_config(...)`` on the :class:`~pybpf.spec.CollectionSpec`).

They live in a one-entry array map created read-only for programs
(``BPF_F_RDONLY_PROG``) and frozen after it is filled, which is what clang
does for ``const volatile`` globals in ``.rodata``. Programs address the
value directly (``ld_imm64 BPF_PSEUDO_MAP_VALUE``: no lookup, no NULL
check), and because the map is frozen the verifier knows the values and
prunes the branches a setting turns off.
"""

from typing import Any, Dict, Mapping, Optional

from ..consts import BPF_F_RDONLY_PROG
from .memory import map_value_ref
from .maps import ArrayMap, Named
from .types import ArrayType, IntType, StructType, as_type, struct_layout


class Config(Named):
    """Settings with types (keyword arguments, or a :class:`Struct`
    subclass) and optional ``defaults`` (zero otherwise)."""

    def __init__(self, layout: Any = None, *, defaults: Optional[Mapping[str, Any]] = None,
                 name: Optional[str] = None, **fields: Any):
        super().__init__(name)
        if layout is None:
            layout = struct_layout("config", fields)
        elif fields:
            raise TypeError("Config takes a Struct or field keywords, not both")
        layout = as_type(layout)
        taken = set(layout.fields) & _RESERVED
        if taken:
            raise TypeError("config setting names %s are taken by Config itself; rename them"
                            % ", ".join(sorted(taken)))
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_defaults", dict(defaults or {}))
        self._check(self._defaults)
        object.__setattr__(self, "map", _ConfigMap(self))

    @property
    def layout(self) -> StructType:
        """The struct the settings make: the layout of the config's map value."""
        return self._layout

    def __getattr__(self, field: str) -> Any:
        """In a program: the setting's value (a load from the frozen map)."""
        if field.startswith("_"):
            raise AttributeError(field)
        return getattr(map_value_ref(self.map, self._layout), field)

    def __setattr__(self, field: str, value: Any) -> None:
        if field.startswith("_"):
            object.__setattr__(self, field, value)
        else:
            raise AttributeError("config values are set when loading: "
                                 "Collection(spec, config={%r: ...})" % field)

    def _check(self, values: Mapping[str, Any]) -> None:
        unknown = set(values) - set(self._layout.fields)
        if unknown:
            raise KeyError("config %s has no setting %s (settings: %s)"
                           % (self._name or "", ", ".join(sorted(unknown)),
                              ", ".join(self._layout.fields)))

    def values(self, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Every setting: the defaults, then ``overrides``; strings (``str``
        or ``bytes``) are NUL-padded to their array."""
        chosen: Dict[str, Any] = {name: _zero(f.type) for name, f in self._layout.fields.items()}
        for name, value in list(self._defaults.items()) + list((overrides or {}).items()):
            self._check({name: value})
            chosen[name] = _padded(self._layout.fields[name].type, value, name)
        return chosen

    def encode(self, overrides: Optional[Mapping[str, Any]] = None) -> bytes:
        """The map value's bytes for ``overrides`` over the defaults."""
        return self._layout.construct().build(self.values(overrides))

    def __repr__(self) -> str:
        return "<Config %s: %s>" % (self._name or "(unnamed)", ", ".join(self._layout.fields))


class _ConfigMap(ArrayMap):
    """The array map behind a Config; named after it."""

    def __init__(self, config: Config):
        super().__init__(value=config.layout, max_entries=1, flags=BPF_F_RDONLY_PROG)
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name


_RESERVED = frozenset(("name", "map", "layout", "values", "encode"))


def _padded(t: Any, value: Any, name: str) -> Any:
    if isinstance(t, ArrayType) and t.is_string and isinstance(value, (str, bytes)):
        data = value.encode() if isinstance(value, str) else value
        if len(data) > t.count:
            raise ValueError("setting %r holds %d bytes, not %d" % (name, t.count, len(data)))
        return data + bytes(t.count - len(data))
    return value


def _zero(t: Any) -> Any:
    if isinstance(t, IntType):
        return 0
    if isinstance(t, ArrayType):
        return bytes(t.count) if t.is_string else [_zero(t.elem)] * t.count
    return {name: _zero(f.type) for name, f in t.fields.items()}

