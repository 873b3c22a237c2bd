"""The IPv4 dataset types: ``ip4set`` (rbldnsd's four granularity levels) and ``ip4trie``."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Sequence

from .base import IP4, VMASK, Builder, negation, tail_ok
from .syntax import Rr, ip4cidr, ip4mask, ip4range

__all__ = ["Ip4SetBuilder", "Ip4Set", "Ip4TrieBuilder", "Ip4Trie", "INDEX_MIN"]

_LEVEL_MASKS = (0xFFFFFFFF, 0xFFFFFF00, 0xFFFF0000, 0xFF000000)
#: An ip4set part (one first octet of one level) this big gets a second-octet index.
INDEX_MIN = 512


# --- ip4set ---------------------------------------------------------------------


class Ip4SetBuilder(Builder):
    """ip4set lines into four levels, each kept as 256 lists by the address's first octet.

    Keeping the levels split by first octet makes every sort a small one:
    the loader runs in a worker thread, and one sort of a million keys would
    hold the GIL (and so the event loop) for half a second.
    """

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.parts: list[list[list[int]]] = [[[] for _ in range(256)] for _ in range(4)]

    def line(self, s: str) -> str:
        if s[0] == ":":
            return self.default_line(s)
        negated, i = negation(s)
        bits, a, b, i = ip4range(s, i)
        if bits < 0 or not tail_ok(s, i):
            return "invalid address"
        if a & ~ip4mask(bits) & 0xFFFFFFFF:
            return "invalid range (non-zero host part)"
        if self.maxrange4 and self.maxrange4 <= b - a:
            return "too large range ignored"
        v, warning = self.entry_value(s, i, negated)
        if v < 0:
            return warning
        self._expand(a, b, v)
        return ""

    def _add(self, idx: int, start: int, count: int, v: int) -> None:
        self.count(count)
        parts = self.parts[idx]
        if count == 1:
            parts[start >> 24].append(start << 24 | v)
            return
        step = 1 << (idx * 8)
        for addr in range(start, start + count * step, step):
            parts[addr >> 24].append(addr << 24 | v)

    def _expand(self, a: int, b: int, v: int) -> None:
        """``ip4range_expand`` of rbldnsd_ip4set.c: octet-aligned runs at four levels."""
        add = self._add
        for bits in (0, 8, 16):
            if (a | 255) >= b:
                if b - a == 255:
                    add((bits >> 3) + 1, a << bits, 1, v)
                else:
                    add(bits >> 3, a << bits, b - a + 1, v)
                return
            if a & 255:
                add(bits >> 3, a << bits, 256 - (a & 255), v)
                a = (a >> 8) + 1
            else:
                a >>= 8
            if (b & 255) != 255:
                add(bits >> 3, (b & ~255) << bits, (b & 255) + 1, v)
                b = (b >> 8) - 1
            else:
                b >>= 8
        add(3, a << 24, b - a + 1, v)

    def bulk32(self, addrs: Sequence[int]) -> None:
        """Plain addresses (a run of bare dotted-quad lines) with the current default value."""
        self.count(len(addrs))
        v = self.value(self.def_rr)
        keys = [a << 24 | v for a in addrs]
        keys.sort()  # one small sort (a run is bounded), then cut by first octet
        parts = self.parts[0]
        lo = 0
        n = len(keys)
        while lo < n:
            octet = keys[lo] >> 48  # a key is address << 24 | value: 56 bits
            hi = bisect_left(keys, (octet + 1) << 48, lo)
            parts[octet].extend(keys[lo:hi])
            lo = hi

    def finish(self) -> "Ip4Set":
        levels = []
        for parts in self.parts:
            frozen: list[array | None] = []
            for part in parts:
                if not part:
                    frozen.append(None)
                    continue
                part.sort()
                frozen.append(array("Q", dict.fromkeys(part)))  # repeats dropped (REMOVE_DUPS)
                part.clear()
            levels.append(frozen)
        return Ip4Set(levels, tuple(self.values), tuple(self.subst))


class Ip4Set:
    """A frozen ip4set: four levels of ``address << 24 | value``, sorted, by first octet."""

    family = IP4
    __slots__ = ("levels", "values", "subst", "entries", "nbytes")

    def __init__(self, levels: list[list[array | None]], values: tuple, subst: tuple) -> None:
        self.levels = [
            (tuple(_indexed(k, octet) for octet, k in enumerate(parts)), mask)
            for parts, mask in zip(levels, _LEVEL_MASKS)
            if any(k is not None for k in parts)
        ]
        self.values = values
        self.subst = subst
        self.entries = sum(len(k) for parts in levels for k in parts if k)
        self.nbytes = sum(k.itemsize * len(k) for parts in levels for k in parts if k) + sum(
            o.itemsize * len(o) for parts, _ in self.levels for p in parts if p is not None and (o := p[1]) is not None
        )

    def find(self, q: int) -> list[Rr] | None:
        octet = q >> 24
        for parts, mask in self.levels:
            part = parts[octet]
            if part is None:
                continue
            keys, offsets = part
            f = q & mask
            if offsets is None:
                i = bisect_left(keys, f << 24)
            else:
                o2 = (f >> 16) & 255
                i = bisect_left(keys, f << 24, offsets[o2], offsets[o2 + 1])
            if i < len(keys) and keys[i] >> 24 == f:
                key = keys[i]
                if not key & VMASK:
                    return None  # an exclusion at this level wins
                values = self.values
                out = [values[key & VMASK]]
                i += 1
                n = len(keys)
                while i < n and keys[i] >> 24 == f:
                    out.append(values[keys[i] & VMASK])
                    i += 1
                return out
        return None


def _indexed(keys: array | None, octet: int) -> tuple[array, array | None] | None:
    """A part's keys and, for a big part, where each second octet starts (4 bisect steps, not 12)."""
    if keys is None:
        return None
    if len(keys) < INDEX_MIN:
        return keys, None
    base = octet << 24
    return keys, array("I", [bisect_left(keys, (base | o2 << 16) << 24) for o2 in range(256)] + [len(keys)])


# --- ip4trie -------------------------------------------------------------------------


class Ip4TrieBuilder(Builder):
    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.by_len: dict[int, dict[int, int]] = {}

    def line(self, s: str) -> str:
        if s[0] == ":":
            return self.default_line(s)
        negated, i = negation(s)
        bits, a, i = ip4cidr(s, i)
        if bits < 0 or not tail_ok(s, i):
            return "invalid address"
        if a & ~ip4mask(bits) & 0xFFFFFFFF:
            return "invalid range (non-zero host part)"
        if self.maxrange4 and self.maxrange4 <= (~ip4mask(bits) & 0xFFFFFFFF):
            return "too large range ignored"
        v, warning = self.entry_value(s, i, negated)
        if v < 0:
            return warning
        table = self.by_len.setdefault(bits, {})
        if a in table:
            return "duplicated entry"
        self.count()
        table[a] = v
        return ""

    def finish(self) -> "Ip4Trie":
        lens = []
        for bits in sorted(self.by_len, reverse=True):
            table = self.by_len[bits]
            lens.append((array("Q", sorted(a << 24 | v for a, v in table.items())), ip4mask(bits)))
        self.by_len = {}
        return Ip4Trie(lens, tuple(self.values), tuple(self.subst))


class Ip4Trie:
    """A frozen ip4trie: per prefix length (longest first) a sorted array."""

    family = IP4
    __slots__ = ("lens", "values", "subst", "entries", "nbytes")

    def __init__(self, lens: list, values: tuple, subst: tuple) -> None:
        self.lens = lens
        self.values = values
        self.subst = subst
        self.entries = sum(len(k) for k, _ in lens)
        self.nbytes = sum(k.itemsize * len(k) for k, _ in lens)

    def find(self, q: int) -> list[Rr] | None:
        for keys, mask in self.lens:
            f = q & mask
            i = bisect_left(keys, f << 24)
            if i < len(keys) and keys[i] >> 24 == f:
                v = keys[i] & VMASK
                return [self.values[v]] if v else None
        return None
