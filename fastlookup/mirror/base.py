"""What every dataset builder shares: values, the per-file default, ``$n`` variables, bounds.

See ``datasets`` for the types and how each is stored.
"""

from __future__ import annotations

from typing import Any

from .syntax import DEFAULT_RR, SPACE, Rr, parse_a_txt

__all__ = ["Builder", "TrieBuilder", "TooMany", "MAX_VALUES", "VMASK", "IP4", "IP6", "DN", "COMBINED", "negation", "tail_ok"]

IP4, IP6, DN, COMBINED = "ip4", "ip6", "dn", "combined"
#: Distinct values a dataset may hold (they are 24-bit indexes).
MAX_VALUES = (1 << 24) - 1
VMASK = (1 << 24) - 1
_COMMENT = "#;"


class TooMany(Exception):
    """A dataset grew past a bound (values or entries): the load is refused."""


def tail_ok(s: str, i: int) -> bool:
    """rbldnsd's check after an address: end, blank, comment or ``:``."""
    return i >= len(s) or s[i] in " \t#;:"


class Builder:
    """Common part: the value table, the per-file default, ``$n`` variables."""

    family = IP4
    per_file_default = True

    def __init__(self, max_entries: int) -> None:
        self.values: list[Rr | None] = [None]
        self._index: dict[Rr, int] = {}
        self.def_rr: Rr = DEFAULT_RR
        self.subst: list[str | None] = [None] * 11
        self.max_entries = max_entries
        self.entries = 0
        self.maxrange4 = 0

    def start(self) -> None:
        if self.per_file_default:
            self.def_rr = DEFAULT_RR

    def value(self, rr: Rr | None) -> int:
        if rr is None:
            return 0
        v = self._index.get(rr)
        if v is None:
            if len(self.values) > MAX_VALUES:
                raise TooMany(f"more than {MAX_VALUES} distinct values")
            v = self._index[rr] = len(self.values)
            self.values.append(rr)
        return v

    def count(self, n: int = 1) -> None:
        self.entries += n
        if self.entries > self.max_entries:
            raise TooMany(f"more than {self.max_entries} entries")

    def default_line(self, s: str) -> str:
        rr, warning = parse_a_txt(s, DEFAULT_RR)
        if rr is not None:
            self.def_rr = rr
        return warning

    def entry_value(self, s: str, i: int, negated: bool) -> tuple[int, str]:
        """The value index of what follows an entry (default, own ``:A:TXT``, exclusion)."""
        if negated:
            return 0, ""
        n = len(s)
        while i < n and s[i] in SPACE:
            i += 1
        if i >= n or s[i] in _COMMENT:
            return self.value(self.def_rr), ""
        rr, warning = parse_a_txt(s[i:], self.def_rr)
        if rr is None:
            return -1, warning
        return self.value(rr), ""

    def line(self, s: str) -> str:  # pragma: no cover - every type overrides it
        raise NotImplementedError

    def finish(self) -> Any:  # pragma: no cover
        raise NotImplementedError


def negation(s: str) -> tuple[bool, int]:
    if s[:1] == "!":
        i = 1
        while i < len(s) and s[i] in SPACE:
            i += 1
        return True, i
    return False, 0


class TrieBuilder(Builder):
    """A longest-prefix dataset (ip4trie, ip6trie): one ``{prefix: value}`` table per prefix length."""

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.by_len: dict[int, dict[int, int]] = {}

    def store(self, bits: int, a: int, s: str, i: int, negated: bool) -> str:
        """Store prefix ``a``/``bits`` with the value after column ``i``: rbldnsd's warning, or "" when stored.

        A prefix already present keeps its first value (rbldnsd: "duplicated entry").
        """
        v, warning = self.entry_value(s, i, negated)
        if v < 0:
            return warning
        table = self.by_len.setdefault(bits, {})
        if a in table:
            return "duplicated entry"
        self.count()
        table[a] = v
        return ""
