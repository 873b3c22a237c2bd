"""What an IPv4 dataset's answer for one value is built from, prepared once per value.

rbldnsd answers a listed address with the value's A record and its TXT after
``txtsubst``. For the common value (one per address, no ``$=`` base template,
only plain ``$`` in the TXT) that work does not depend on the query but for
the address itself, so it is done once, on the first query that needs the
value: the A record tuple, a TXT without ``$`` as the final answer tuple, a
TXT with ``$`` split around it so the answer is one string join. Anything
else (``$$``, ``$n``, ``$=``, several values, a TXT that could need the
254-byte cut or is not ASCII) is marked ``GENERAL`` and built by
``zonedata``'s general path, rule for rule.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .syntax import ip4atos, to_text

__all__ = ["Answers", "STATIC", "ONE", "MANY", "GENERAL", "MEMO_MAX", "only_dollar"]

#: Kinds of prepared value: the whole answer; a TXT with one ``$`` (before, after);
#: a TXT with several (the pieces between them); built by the general path.
STATIC, ONE, MANY, GENERAL = 0, 1, 2, 3
#: Prepared values kept per dataset; past this (a feed with a TXT per entry) the rest are built per query.
MEMO_MAX = 65536
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
        codes = (ip4atos(a),)
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
