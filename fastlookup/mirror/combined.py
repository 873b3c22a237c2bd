"""rbldnsd's ``combined`` dataset: one file holding several datasets, each on its own subzones.

Ported from ``rbldnsd_combined.c``: a ``$DATASET type[:name] subzone...``
line starts a new dataset of ``type`` answering under each listed subzone
(``@`` is the zone itself); the lines after it, ``$n`` variables included,
belong to it; it starts from the combined dataset's variables at that
point. A data line before the first ``$DATASET`` fails the whole load, as
in rbldnsd. A query is answered by the first subzone, in rbldnsd's order
(a subzone before any of its parents), whose name ends the query name, and
by every dataset on that subzone.
"""

from __future__ import annotations

from typing import Any

from .datasets import BUILDERS, COMBINED, Builder
from .syntax import SPACE

__all__ = ["CombinedBuilder", "Combined", "Refused"]


class Refused(Exception):
    """The data cannot be loaded at all (rbldnsd would fail the load too)."""


class CombinedBuilder(Builder):
    family = COMBINED

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.subs: list[Builder] = []
        self.subzones: list[tuple[str, list[Builder]]] = []  # rbldnsd's zone list order
        self.current: Builder | None = None
        self._own_subst = self.subst
        self.count = self._count  # type: ignore[method-assign]

    def _count(self, n: int = 1) -> None:
        Builder.count(self, n)

    @property
    def target(self) -> Builder:
        """Where ``$n`` lines go: the current dataset, or the combined one before the first."""
        return self.current if self.current is not None else self

    def line(self, s: str) -> str:
        if self.current is None:
            raise Refused("invalid/unrecognized entry - specify $DATASET line")
        current = self.current
        before = current.entries
        warning = current.line(s)
        self.count(current.entries - before)
        return warning

    def newset(self, rest: str) -> str:
        """A ``$DATASET type[:name] subzone...`` line."""
        for i, c in enumerate(rest):  # a comment starts only after a blank
            if c in "#;" and (i == 0 or rest[i - 1] in SPACE):
                rest = rest[:i]
                break
        words = rest.replace("\t", " ").split()
        if not words:
            return "invalid or unrecognized special entry"
        kind = words[0].split(":", 1)[0]
        cls = BUILDERS.get(kind)
        if cls is None:
            raise Refused(f"unknown dataset type `{kind[:60]}'")
        sub = cls(self.max_entries)
        sub.subst = list(self._own_subst)
        sub.maxrange4 = self.maxrange4
        sub.start()
        self.subs.append(sub)
        self.current = sub
        warning = "" if len(words) > 1 else "no subzone(s) specified for dataset, data will be ignored"
        for word in words[1:]:
            if word == "@":
                name = ""
            else:
                name = word.rstrip(".").lower() if word not in (".",) else ""
                if not name or any(not label or len(label) > 63 for label in name.split(".")):
                    warning = f"invalid domain name `{word[:60]}'"
                    continue
            self._connect(name, sub)
        return warning

    def _connect(self, name: str, sub: Builder) -> None:
        """rbldnsd's ``newzone`` order: a new subzone goes before the first listed parent of it."""
        insert_at = None
        for i, (zname, builders) in enumerate(self.subzones):
            if zname == name:
                builders.append(sub)
                return
            if insert_at is None and (zname == "" or name.endswith("." + zname)):
                insert_at = i
        entry = (name, [sub])
        if insert_at is None:
            self.subzones.append(entry)
        else:
            self.subzones.insert(insert_at, entry)

    def finish(self) -> "Combined":
        from .zonedata import ZoneData

        frozen = {id(b): b.finish() for b in self.subs}
        zones = tuple(
            (name, ZoneData.of([frozen[id(b)] for b in builders], loaded_at=0.0)) for name, builders in self.subzones
        )
        return Combined(zones, sum(d.entries for d in frozen.values()), sum(d.nbytes for d in frozen.values()))


class Combined:
    """A frozen combined dataset: (subzone, its datasets) in search order."""

    family = COMBINED
    __slots__ = ("zones", "entries", "nbytes", "subst")

    def __init__(self, zones: tuple, entries: int, nbytes: int) -> None:
        self.zones = zones
        self.entries = entries
        self.nbytes = nbytes
        self.subst = (None,) * 11

    def find(self, sub: str) -> Any:
        """The ZoneData of the subzone that answers ``sub``, and the name relative to it."""
        for name, data in self.zones:
            if not name:
                return data, sub
            if sub == name:
                return data, ""
            if sub.endswith(name) and sub[-len(name) - 1] == ".":
                return data, sub[: -len(name) - 1]
        return None
