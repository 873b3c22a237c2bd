"""What an IPv4 dataset's answer for one value is built from, prepared once per value.

rbldnsd answers a listed address with the value's A record and its TXT after
``txtsubst``. For the common value (one per address, no ``$=`` base template,
only plain ``$`` in the TXT) that work does not depend on the query but for
the address itself, so it is done once, on the first query that needs the
value: the A record tuple, a TXT without ``$`` as the final answer tuple, a
TXT with ``$`` split around it so the answer is one string join. A value
with ``$$``, ``$n`` or ``$=``, or a TXT that could meet the 254-byte cut or
is not ASCII, is marked ``GENERAL``; it, and an address listed with several
values, is built rule for rule by ``Answers.slow`` (``add``, which
``ZoneData.general`` uses for every other dataset too).
"""

from __future__ import annotations

import socket
from functools import lru_cache
from typing import Any, Iterable

from .syntax import ip4atos, ip6atos, to_text, txtsubst

__all__ = ["Answers", "EMPTY", "STATIC", "ONE", "MANY", "GENERAL", "MEMO_MAX", "only_dollar", "add", "code"]

EMPTY: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
_ntoa = socket.inet_ntoa

#: Kinds of prepared value: the whole answer; a TXT with one ``$`` (before, after);
#: a TXT with several (the pieces between them); built by the general path.
STATIC, ONE, MANY, GENERAL = 0, 1, 2, 3
#: Prepared values kept per dataset (at most ~1 MB); past this (a feed with a TXT per entry) the rest are prepared per query.
MEMO_MAX = 4096
_DIGITS = "0123456789"
#: Longest dotted quad (15) less the ``$`` it replaces.
_GROWTH = 14


@lru_cache(maxsize=4096)
def only_dollar(template: str) -> bool:
    """True when every ``$`` of a template is the plain queried-item one (no ``$$``, ``$n``, ``$=``)."""
    at = template.find("$")
    while at >= 0:
        nxt = template[at + 1 : at + 2]
        if nxt == "$" or nxt == "=" or (nxt and nxt in _DIGITS):
            return False
        at = template.find("$", at + 1)
    return True


@lru_cache(maxsize=4096)
def code(a: int) -> str:
    return ip4atos(a)


def add(codes: list[str], txts: list[str], rrs: Iterable, s0: str | int, subst: tuple, six: bool = False) -> None:
    """Add the records of ``rrs``; ``s0`` is ``$`` (an IP as an int is printed only when a TXT needs it)."""
    base = subst[10]
    for a, template in rrs:
        c = code(a)
        if c not in codes:
            codes.append(c)
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


class Answers:
    """Prepared values of one IPv4 dataset: ``memo[v]`` is ``(kind, x, y, z)``.

    ``STATIC``: x is the answer ``((code,), (txt,))`` or ``((code,), ())``;
    ``ONE``: x is ``(code,)``, the TXT is ``y + address + z``;
    ``MANY``: x is ``(code,)``, the TXT is ``address.join(y)``;
    ``GENERAL``: the general path builds it.
    """

    __slots__ = ("values", "subst", "memo")

    def __init__(self, values: tuple, subst: tuple) -> None:
        self.values = values
        self.subst = subst
        self.memo: dict[int, tuple[int, Any, Any, Any]] = {}

    def reply(self, v: int, sub: str, q: int, find: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The answer for address ``q`` (query labels ``sub``) listed with value ``v`` (-1: several, ``find`` them).

        ``Ip4Set.answer`` has the same steps inline (its hot path); this is the one for other sets.
        """
        if v > 0:
            kind, x, y, z = self.memo.get(v) or self.prepare(v)
            if kind == ONE:
                d, c, b, a = sub.split(".")  # the labels are the address's octets, reversed
                return x, (f"{y}{a}.{b}.{c}.{d}{z}",)
            if kind == STATIC:
                return x
            if kind == MANY:
                d, c, b, a = sub.split(".")
                return x, (f"{a}.{b}.{c}.{d}".join(y),)
        return self.slow(find(q), q)

    def slow(self, rrs: Any, q: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The answer built rule for rule from the values ``rrs`` listing address ``q``."""
        if not rrs:
            return EMPTY
        codes: list[str] = []
        txts: list[str] = []
        add(codes, txts, rrs, q, self.subst)
        return (tuple(codes), tuple(txts)) if codes else EMPTY

    def prepare(self, v: int) -> tuple[int, Any, Any, Any]:
        """The prepared form of value ``v`` (kept in ``memo`` while it holds fewer than ``MEMO_MAX``)."""
        entry = self._build(v)
        if len(self.memo) < MEMO_MAX:
            self.memo[v] = entry
        return entry

    def _build(self, v: int) -> tuple[int, Any, Any, Any]:
        rr = self.values[v]
        if rr is None or self.subst[10] is not None:
            return GENERAL, None, None, None
        a, template = rr
        codes = (code(a),)
        if "$" not in template:
            txt = template[:254]
            return STATIC, ((codes, (to_text(txt),)) if txt else (codes, ())), None, None
        n = template.count("$")
        if not only_dollar(template) or not template.isascii() or len(template) + _GROWTH * n > 254:
            return GENERAL, None, None, None  # the cut or the UTF-8 reading could fall inside a join
        pieces = tuple(template.split("$"))
        if n == 1:
            return ONE, codes, pieces[0], pieces[1]
        return MANY, codes, pieces, None
