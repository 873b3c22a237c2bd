"""The ``dnset`` dataset type: exact names and wildcard bases, looked up by suffix."""

from __future__ import annotations

from typing import Any

from .base import DN, Builder, negation
from .syntax import SPACE, Rr

__all__ = ["DnSetBuilder", "DnSet", "parse_dn"]


# --- dnset ---------------------------------------------------------------------------


def parse_dn(word: str) -> str | None:
    """A listed name as rbldnsd's ``dns_ptodn`` takes it (lower-cased ASCII), or None."""
    if not word or "\\" in word:
        return None  # escapes are not supported: the line is refused (counted as invalid)
    if word.endswith("."):
        word = word[:-1]
    if not word:
        return None
    labels = word.split(".")
    if any(not label or len(label) > 63 for label in labels):
        return None
    if len(word) + 2 > 255:
        return None
    return word.translate(_LOWER)


_LOWER = {c: c + 32 for c in range(65, 91)}


class DnSetBuilder(Builder):
    family = DN

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.plain: dict[str, Any] = {}
        self.wild: dict[str, Any] = {}

    def line(self, s: str) -> str:
        if s[0] == ":":
            return self.default_line(s)
        negated, i = negation(s)
        if s[i : i + 1] == ".":
            wild, plain = True, True
            i += 1
        elif s[i : i + 2] == "*.":
            wild, plain = True, False
            i += 2
        else:
            wild, plain = False, True
        j = i
        n = len(s)
        while j < n and s[j] not in SPACE:
            j += 1
        name = parse_dn(s[i:j])
        if name is None:
            return "invalid domain name"
        v, warning = self.entry_value(s, j, negated)
        if v < 0:
            return warning
        self.count()
        if plain:
            _add_value(self.plain, name, v)
        if wild:
            _add_value(self.wild, name, v)
        return ""

    def finish(self) -> "DnSet":
        return DnSet(self.plain, self.wild, tuple(self.values), tuple(self.subst), self.entries)


def _add_value(table: dict[str, Any], name: str, v: int) -> None:
    """One int for a name with one value (the common case), a sorted tuple for several."""
    old = table.get(name)
    if old is None:
        table[name] = v
    elif type(old) is int:
        if old != v:
            table[name] = tuple(sorted((old, v)))
    elif v not in old:
        table[name] = tuple(sorted(old + (v,)))


class DnSet:
    family = DN
    __slots__ = ("plain", "wild", "values", "subst", "entries", "nbytes", "_maxdots")

    def __init__(self, plain: dict, wild: dict, values: tuple, subst: tuple, entries: int) -> None:
        self.plain = plain
        self.wild = wild
        self.values = values
        self.subst = subst
        self.entries = entries
        self.nbytes = sum(len(k) + 110 for k in plain) + sum(len(k) + 110 for k in wild)

    def find(self, name: str) -> tuple[list[Rr], str] | None:
        found = self.plain.get(name)
        listed = name
        if found is None:
            wild = self.wild
            if not wild:
                return None
            j = name.find(".")
            while j >= 0:
                listed = name[j + 1 :]
                found = wild.get(listed)
                if found is not None:
                    break
                j = name.find(".", j + 1)
            else:
                return None
        values = self.values
        if type(found) is int:
            return ([values[found]], listed) if found else None
        if found[0] == 0:
            return None
        return [values[v] for v in found], listed
