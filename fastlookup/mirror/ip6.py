"""The IPv6 dataset types: ``ip6trie`` (longest prefix) and ``ip6tset`` (/64 halves, /128 exclusions)."""

from __future__ import annotations

from array import array
from bisect import bisect_left

from .base import IP6, Builder, TrieBuilder, negation, tail_ok
from .syntax import DEFAULT_RR, Rr, ip6cidr, ip6prefix, parse_a_txt

__all__ = ["Ip6TrieBuilder", "Ip6Trie", "Ip6TSetBuilder", "Ip6TSet"]


# --- ip6trie / ip6tset ---------------------------------------------------------------


def _mask6(bits: int) -> int:
    return ((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1) if bits else 0


class Ip6TrieBuilder(TrieBuilder):
    family = IP6

    def line(self, s: str) -> str:
        if s[0] == ":" and s[1:2] != ":":
            return self.default_line(s)
        negated, i = negation(s)
        bits, addr, i = ip6cidr(s, i)
        if bits < 0 or not tail_ok(s, i):
            return "invalid address"
        a = int.from_bytes(addr, "big")
        if a & ~_mask6(bits):
            return "invalid range (non-zero host part)"
        return self.store(bits, a, s, i, negated)

    def finish(self) -> "Ip6Trie":
        lens = [(self.by_len[b], _mask6(b)) for b in sorted(self.by_len, reverse=True)]
        self.by_len = {}
        return Ip6Trie(lens, tuple(self.values), tuple(self.subst))


class Ip6Trie:
    family = IP6
    __slots__ = ("lens", "values", "subst", "entries", "nbytes")

    def __init__(self, lens: list, values: tuple, subst: tuple) -> None:
        self.lens = lens
        self.values = values
        self.subst = subst
        self.entries = sum(len(t) for t, _ in lens)
        self.nbytes = self.entries * 120  # dict slot + key object, approximately

    def find(self, q: int) -> list[Rr] | None:
        for table, mask in self.lens:
            v = table.get(q & mask)
            if v is not None:
                return [self.values[v]] if v else None
        return None


class Ip6TSetBuilder(Builder):
    family = IP6
    per_file_default = False

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.halves: list[int] = []
        self.excluded: set[int] = set()
        self._default_set = False

    def line(self, s: str) -> str:
        if s[0] == ":":
            if not self._default_set:  # the first default of the dataset is the only one
                rr, warning = parse_a_txt(s, DEFAULT_RR)
                if rr is None:
                    return warning
                self.def_rr = rr
                self._default_set = True
            return ""
        negated, i = negation(s)
        bits, addr, i = ip6prefix(s, i)
        if bits < 0 or not tail_ok(s, i):
            return "invalid address"
        if bits != (128 if negated else 64):
            return "invalid address for ip6tset (regular entries are /64, exclusions /128)"
        self.count()
        if negated:
            self.excluded.add(int.from_bytes(addr, "big"))
        else:
            self.halves.append(int.from_bytes(addr[:8], "big"))
        return ""

    def finish(self) -> "Ip6TSet":
        halves = array("Q", sorted(set(self.halves)))
        self.halves = []
        return Ip6TSet(halves, frozenset(self.excluded), self.def_rr, tuple(self.subst))


class Ip6TSet:
    family = IP6
    __slots__ = ("halves", "excluded", "rrs", "subst", "entries", "nbytes")

    def __init__(self, halves: array, excluded: frozenset, rr: Rr, subst: tuple) -> None:
        self.halves = halves
        self.excluded = excluded
        self.rrs = [rr]
        self.subst = subst
        self.entries = len(halves) + len(excluded)
        self.nbytes = 8 * len(halves) + 80 * len(excluded)

    def find(self, q: int) -> list[Rr] | None:
        half = q >> 64
        halves = self.halves
        i = bisect_left(halves, half)
        if i >= len(halves) or halves[i] != half or q in self.excluded:
            return None
        return self.rrs
