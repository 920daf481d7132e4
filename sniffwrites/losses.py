"""One account of what the kernel side could not deliver or track.

Two sources, both kernel counters: the ring's own lost-record counter
(every record goes through the ``events`` declaration, which counts a full
ring in ``events_lost``: the reader's :meth:`~pybpf.kernel.reader.RingReader.lost`),
and the per-CPU :class:`~sniffwrites.bpf.records.Counters` (map full, walks
that found no file, sweeps cut short, aggregate counts not kept).
:class:`LossAccount` reads both, keeps the last values once the kernel
objects are closed, and says what is new since the last loss notice. Its
:meth:`LossAccount.totals` are the loss keys of the summary, and
:meth:`LossAccount.balance` the exact account of records by kind: what the
programs emitted (``Counters.emitted_*``), what userspace received, what
the ring dropped (``Counters.dropped_*``), and whether
``received + dropped == emitted`` holds, kind by kind.
"""

from typing import Any, Dict, Optional

from .bpf.records import KIND_NAMES, Counters
from .events import Lost

#: Summary key -> the Counters fields it adds up.
COUNTED = {
    "map_full": ("fd_map_full", "proc_map_full"),
    "walk_failed": ("walk_failed",),
    "sweep_incomplete": ("sweep_incomplete",),
    "aggregate_untracked": ("aggregate_untracked",),
}
_FIELDS = tuple(Counters.layout.fields)
#: The kinds of record, by name, in the order the summary lists them.
KINDS = tuple(KIND_NAMES.values())


class LossAccount:
    """Losses of one run. ``reader`` is the ring reader, ``counters`` the
    live ``counters`` map (per-CPU values of one entry)."""

    def __init__(self, reader: Any = None, counters: Any = None):
        self._reader = reader
        self._counters = counters
        self._ring = 0
        self._fields: Dict[str, int] = dict.fromkeys(_FIELDS, 0)
        self._noticed = (0, 0)

    def refresh(self) -> None:
        """Read the kernel's counters now (while the objects are open)."""
        reader = self._reader
        if reader is not None and not reader.closed:
            self._ring = reader.lost() or 0
        if self._counters is not None:
            try:
                per_cpu = self._counters[0]
            except (KeyError, OSError, ValueError):
                return      # closed: keep the last values
            totals = dict.fromkeys(_FIELDS, 0)
            for values in per_cpu:
                for name in _FIELDS:
                    totals[name] += values[name]
            self._fields = totals

    def detach(self) -> None:
        """Read one last time; from now on the account keeps its values."""
        try:
            self.refresh()
        except OSError:
            pass
        self._reader = self._counters = None

    def state(self) -> Dict[str, Any]:
        """The values as last read (``record`` writes them at its end)."""
        return {"ring": self._ring, "counters": dict(self._fields)}

    @classmethod
    def restored(cls, state: Dict[str, Any]) -> "LossAccount":
        """A detached account holding a :meth:`state` (``report`` reads it back)."""
        account = cls()
        account._ring = state["ring"]
        account._fields.update(state["counters"])
        return account

    def counter(self, name: str) -> int:
        """A Counters field, as last read."""
        return self._fields[name]

    def totals(self) -> Dict[str, int]:
        """``lost_records`` (the ring was full) and the other counts, as
        last read, under their summary keys."""
        out = {"lost_records": self._ring}
        for key, fields in COUNTED.items():
            out[key] = sum(self._fields[name] for name in fields)
        return out

    def balance(self, received: Dict[str, int]) -> Dict[str, int]:
        """Summary keys of the exact account, given the records userspace
        received by kind name: ``emitted``, ``received``, ``dropped`` in
        total and ``emitted_<kind>``, ``received_<kind>``, ``dropped_<kind>``
        for each kind, and ``unaccounted``: the sum over kinds of
        ``|emitted - received - dropped|``, 0 when every record is
        accounted for (received kinds the kernel does not know count too)."""
        out: Dict[str, int] = {}
        unaccounted = sum(n for kind, n in received.items() if kind not in KINDS)
        for what in ("emitted", "received", "dropped"):
            out[what] = 0
        for kind in KINDS:
            emitted = self._fields["emitted_" + kind]
            dropped = self._fields["dropped_" + kind]
            got = received.get(kind, 0)
            out["emitted_" + kind], out["received_" + kind] = emitted, got
            out["dropped_" + kind] = dropped
            out["emitted"] += emitted
            out["received"] += got
            out["dropped"] += dropped
            unaccounted += abs(emitted - got - dropped)
        out["unaccounted"] = unaccounted
        return out

    def notice(self, now_ns: int) -> Optional[Lost]:
        """A loss notice of what was lost or untracked since the last one
        (refreshing first), or None when nothing was."""
        self.refresh()
        totals = self.totals()
        ring, full = totals["lost_records"], totals["map_full"]
        last_ring, last_full = self._noticed
        if ring <= last_ring and full <= last_full:
            return None
        self._noticed = (ring, full)
        return Lost(now_ns, ring - last_ring, full - last_full)


def balance_text(counts: Dict[str, int]) -> str:
    """The exact account of :meth:`LossAccount.balance` in one phrase of
    the text summary: ``records emitted 10 = received 8 + dropped 2 (io
    6+2, file 1+0, ...)``, and how many are unaccounted if any are."""
    kinds = ", ".join("%s %d+%d" % (kind, counts["received_" + kind], counts["dropped_" + kind])
                      for kind in KINDS if counts["emitted_" + kind])
    text = "records emitted %d = received %d + dropped %d%s" % (
        counts["emitted"], counts["received"], counts["dropped"], " (%s)" % kinds if kinds else "")
    if counts["unaccounted"]:
        text += ", UNACCOUNTED %d" % counts["unaccounted"]
    return text
