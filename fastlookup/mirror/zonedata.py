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
from functools import lru_cache
from typing import Any, Iterable, Sequence

from .answers import MANY, ONE, STATIC, only_dollar
from .datasets import COMBINED, DN, IP4, IP6
from .syntax import ip4atos, ip6atos, to_text, txtsubst

__all__ = ["ZoneData", "MirrorLoadError", "EMPTY"]

_inet_aton = socket.inet_aton
_ntoa = socket.inet_ntoa
_from_bytes = int.from_bytes
_HEXNIB = frozenset("0123456789abcdef")
_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET

EMPTY: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


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
    only4: Any = field(default=None, repr=False)  # the dataset, when one IPv4 dataset is all there is

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
            only4=datasets[0] if len(datasets) == 1 and datasets[0].family == IP4 else None,
            **kw,
        )

    def answer(self, sub: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(A records, TXT strings) rbldnsd answers for ``sub.<zone>``; ``EMPTY`` when not listed."""
        only = self.only4
        if only is not None:
            # The hot case, one IPv4 dataset and a query name of four decimal labels without
            # leading zeros: inet_pton takes exactly these (in C) and reads them as rbldnsd's
            # dntoip4addr does; any other name takes the general way below.
            try:
                q = _from_bytes(_inet_pton(_AF_INET, sub), "little")
            except (OSError, ValueError):  # not that form (ValueError: a NUL or a surrogate)
                pass
            else:
                v = only.value_of(q)
                if not v:
                    return EMPTY
                if v > 0:  # one value: its prepared answer (see ``answers``)
                    answers = only.answers
                    kind, x, y, z = answers.memo.get(v) or answers.prepare(v)
                    if kind == ONE:
                        d, c, b, a = sub.split(".")  # the labels are the address's octets, reversed
                        return x, (f"{y}{a}.{b}.{c}.{d}{z}",)
                    if kind == STATIC:
                        return x
                    if kind == MANY:
                        d, c, b, a = sub.split(".")
                        return x, (f"{a}.{b}.{c}.{d}".join(y),)
                codes: list[str] = []
                txts: list[str] = []
                rrs = only.find(q)
                if rrs:
                    _add(codes, txts, rrs, q, only.subst)
                return (tuple(codes), tuple(txts)) if codes else EMPTY
        codes = []
        txts = []
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


@lru_cache(maxsize=4096)
def _code(a: int) -> str:
    return ip4atos(a)


def _add(codes: list[str], txts: list[str], rrs: Iterable, s0: str | int, subst: tuple, six: bool = False) -> None:
    """Add the records of ``rrs``; ``s0`` is ``$`` (an IP as an int is printed only when a TXT needs it)."""
    base = subst[10]
    for a, template in rrs:
        code = _code(a)
        if code not in codes:
            codes.append(code)
        if base or "$" in template:
            if type(s0) is int:
                s0 = ip6atos(s0.to_bytes(16, "big")) if six else _ntoa(s0.to_bytes(4, "big"))
            txt = template.replace("$", s0)[:254] if not base and only_dollar(template) else txtsubst(template, s0, subst)
        else:
            txt = template[:254]
        if txt:
            text = txt if txt.isascii() else to_text(txt)
            if text not in txts:
                txts.append(text)
