"""One loaded copy of a mirrored zone: what rbldnsd would answer for a name under it.

``ZoneData.answer(sub)`` gives what rbldnsd would put in the answer section
for the query name ``sub.<zone>``: the A records and TXT strings of every
dataset that lists it, each list without repeats (rbldnsd's
``checkrr_present``). A copy is immutable: a reload builds a new one
(``loader.load_files``) and the mirror swaps it in.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Sequence

from .answers import EMPTY, add as _add
from .datasets import COMBINED, DN, IP4, IP6

__all__ = ["ZoneData", "MirrorLoadError", "EMPTY"]

_inet_aton = socket.inet_aton
_from_bytes = int.from_bytes
_HEXNIB = frozenset("0123456789abcdef")


class MirrorLoadError(Exception):
    """A copy that must not replace the data being served (unreadable, truncated, too big)."""


@dataclass(frozen=True)
class ZoneData:
    """An immutable loaded copy: the datasets by the query form they answer."""

    datasets: tuple[Any, ...]
    entries: int
    nbytes: int
    loaded_at: float  # wall clock, for stats
    mtime: float = 0.0  # newest file mtime (file mirrors)
    serial: int | None = None  # SOA serial (zone transfers)
    warnings: int = 0
    ip4: tuple[Any, ...] = field(default=(), repr=False)
    ip6: tuple[Any, ...] = field(default=(), repr=False)
    dn: tuple[Any, ...] = field(default=(), repr=False)
    combined: tuple[Any, ...] = field(default=(), repr=False)
    #: When one IPv4 dataset is all there is, its ``answer``: the whole answer for a query
    #: name of four canonical decimal labels (the hot case), None for any other name.
    quick: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, datasets: Sequence[Any], **kw: Any) -> "ZoneData":
        return cls(
            tuple(datasets),
            sum(d.entries for d in datasets),
            sum(d.nbytes for d in datasets),
            ip4=tuple(d for d in datasets if d.family == IP4),
            ip6=tuple(d for d in datasets if d.family == IP6),
            dn=tuple(d for d in datasets if d.family == DN),
            combined=tuple(d for d in datasets if d.family == COMBINED),
            quick=datasets[0].answer if len(datasets) == 1 and datasets[0].family == IP4 else None,
            **kw,
        )

    def answer(self, sub: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(A records, TXT strings) rbldnsd answers for ``sub.<zone>``; ``EMPTY`` when not listed."""
        quick = self.quick
        if quick is not None:
            found = quick(sub)
            if found is not None:
                return found
        return self.general(sub)

    def general(self, sub: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``answer`` for every dataset and query form, without the one-IPv4-dataset shortcut."""
        codes: list[str] = []
        txts: list[str] = []
        if self.ip4 or self.ip6:
            ip4, ip6 = self._ips(sub)
            if ip4 is not None:
                for ds in self.ip4:
                    rrs = ds.find(ip4)
                    if rrs:
                        _add(codes, txts, rrs, ip4, ds.subst)
            if ip6 is not None:
                for ds in self.ip6:
                    rrs = ds.find(ip6)
                    if rrs:
                        _add(codes, txts, rrs, ip6, ds.subst, True)
        for ds in self.dn:
            found = ds.find(sub)
            if found is not None:
                _add(codes, txts, found[0], found[1], ds.subst)
        for ds in self.combined:
            found = ds.find(sub)
            if found is not None and found[1]:
                sub_codes, sub_txts = found[0].answer(found[1])
                codes.extend(c for c in sub_codes if c not in codes)
                txts.extend(t for t in sub_txts if t not in txts)
        if not codes:
            return EMPTY
        return tuple(codes), tuple(txts)

    def _ips(self, sub: str) -> tuple[int | None, int | None]:
        """rbldnsd's ``dntoip``: 4 decimal labels, or 32 nibbles (6to4 and mapped reach the IPv4 sets)."""
        labels = sub.split(".")
        n = len(labels)
        if n == 4:
            if not sub.isascii() or not sub.replace(".", "").isdigit():
                return None, None
            if sub[0] != "0" and ".0" not in sub:
                # No label with a leading zero: inet_aton reads exactly what rbldnsd reads, in C.
                try:
                    return _from_bytes(_inet_aton(sub), "little"), None
                except OSError:
                    return None, None
            a = 0
            shift = 0
            for label in labels:
                if not 0 < len(label) <= 3:
                    return None, None
                o = int(label)
                if o > 255:
                    return None, None
                a |= o << shift
                shift += 8
            return a, None
        if n == 32 and all(len(x) == 1 and x in _HEXNIB for x in labels):
            q = int("".join(reversed(labels)), 16)
            if self.ip4:
                if q >> 112 == 0x2002:  # 6to4 (RFC 3056): the IPv4 sets answer too
                    return (q >> 80) & 0xFFFFFFFF, q
                if q >> 32 == 0xFFFF:  # ::ffff:a.b.c.d: only the IPv4 sets
                    return q & 0xFFFFFFFF, None
            return None, q
        return None, None
