"""The IPv4 dataset types: ``ip4set`` (rbldnsd's four granularity levels) and ``ip4trie``."""

from __future__ import annotations

from array import array
import socket
from bisect import bisect_left
from itertools import accumulate
from typing import Sequence

from .answers import EMPTY, MANY, ONE, STATIC, Answers
from .base import IP4, VMASK, Builder, TrieBuilder, negation, tail_ok
from .syntax import Rr, ip4cidr, ip4mask, ip4range

__all__ = ["Ip4SetBuilder", "Ip4Set", "Ip4TrieBuilder", "Ip4Trie", "INDEX_MIN"]

_from_bytes = int.from_bytes
_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_LEVEL_MASKS = (0xFFFFFFFF, 0xFFFFFF00, 0xFFFF0000, 0xFF000000)
#: An ip4set level with this many keys gets an index by leading bits; a smaller one is bisected whole
INDEX_MIN = 4096
#: The index of a big level uses at most this many leading bits (65,537 offsets, 256 KiB).
_INDEX_BITS = 16
#: A run of plain addresses this long is sorted and cut by first octet; a shorter one goes key by key.
_BULK_SORT_MIN = 512


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
        """Plain addresses (a run of bare dotted-quad lines) with the current default value.

        ``finish`` sorts every part, so a run is only cut by first octet: a short run
        (lines with values between them) key by key, a long one sorted and cut in slices.
        """
        self.count(len(addrs))
        v = self.value(self.def_rr)
        parts = self.parts[0]
        if len(addrs) < _BULK_SORT_MIN:
            for a in addrs:
                parts[a >> 24].append(a << 24 | v)
            return
        keys = [a << 24 | v for a in addrs]
        keys.sort()  # one small sort (a run is bounded), then cut by first octet
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
            keys = array("Q")  # the level's parts in first-octet order: one sorted array
            for part in parts:
                if part:
                    part.sort()
                    keys.extend(dict.fromkeys(part))  # repeats dropped (REMOVE_DUPS)
                    part.clear()
            levels.append(keys)
        return Ip4Set(levels, tuple(self.values), tuple(self.subst))


class Ip4Set:
    """A frozen ip4set: per granularity level, most specific first, one sorted ``array('Q')``.

    A key is ``address << 24 | value``. A big level (``INDEX_MIN`` keys or
    more) also has an index by the address's leading bits (about 16 keys a
    bucket: a bisect of 4 steps); a small one is bisected whole. A lookup is
    one bisect per level, over one array per level whatever the first octets.
    """

    family = IP4
    __slots__ = ("probes", "values", "subst", "entries", "nbytes", "answers")

    def __init__(self, levels: list[array], values: tuple, subst: tuple) -> None:
        total = sum(len(keys) for keys in levels)
        self.probes = tuple(_probe(keys, mask, total) for keys, mask in zip(levels, _LEVEL_MASKS) if keys)
        self.values = values
        self.subst = subst
        self.entries = sum(len(p[2]) for p in self.probes)
        self.nbytes = sum(k.itemsize * len(k) + (o.itemsize * len(o) if o is not None else 0) for _, _, k, o in self.probes)
        self.answers = Answers(values, subst)

    def find(self, q: int) -> list[Rr] | None:
        for mask, shift, keys, offsets in self.probes:
            f = q & mask
            k = f << 24
            if offsets is None:
                i = bisect_left(keys, k)
            else:
                j = f >> shift
                i = bisect_left(keys, k, offsets[j], offsets[j + 1])
            n = len(keys)
            if i < n and keys[i] - k <= VMASK:
                key = keys[i]
                if key == k:
                    return None  # an exclusion at this level wins
                values = self.values
                out = [values[key & VMASK]]
                i += 1
                while i < n and keys[i] - k <= VMASK:
                    out.append(values[keys[i] & VMASK])
                    i += 1
                return out
        return None

    def answer(self, sub: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """What rbldnsd answers for the query labels ``sub`` (``d.c.b.a``); None when they are not
        four decimal labels without leading zeros (the caller reads those the general way).

        The hot path of a mirror: inet_pton takes exactly that form (in C) and reads it as
        rbldnsd's dntoip4addr does; the levels are probed inline and one value's answer is
        its prepared form (``answers``), so no list is built and no frame is added.
        """
        try:
            q = _from_bytes(_inet_pton(_AF_INET, sub), "little")
        except (OSError, ValueError):  # not that form (ValueError: a NUL or a surrogate)
            return None
        for mask, shift, keys, offsets in self.probes:
            f = q & mask
            k = f << 24
            if offsets is None:
                i = bisect_left(keys, k)
            else:
                j = f >> shift
                lo = offsets[j]
                hi = offsets[j + 1]
                if lo == hi:
                    continue  # nothing in this bucket
                i = bisect_left(keys, k, lo, hi)
            try:
                v = keys[i] - k  # bisect_left: keys[i] >= k; this address when the difference is a value
            except IndexError:
                continue
            if v <= VMASK:
                break
        else:
            return EMPTY
        if not v:
            return EMPTY  # an exclusion at this level wins
        try:
            several = keys[i + 1] - k <= VMASK
        except IndexError:
            several = False
        if not several:  # one value: its prepared answer (``Answers.reply`` has the same steps)
            answers = self.answers
            kind, x, y, z = answers.memo.get(v) or answers.prepare(v)
            if kind == ONE:
                d, c, b, a = sub.split(".")  # the labels are the address's octets, reversed
                return x, (f"{y}{a}.{b}.{c}.{d}{z}",)
            if kind == STATIC:
                return x
            if kind == MANY:
                d, c, b, a = sub.split(".")
                return x, (f"{a}.{b}.{c}.{d}".join(y),)
        return self.answers.slow(self.find(q), q)


def _probe(keys: array, mask: int, total: int) -> tuple[int, int, array, array | None]:
    """One level's (mask, shift, keys, offsets): its sorted keys and, when big, an index.

    ``offsets[j]`` is where the addresses with leading bits ``j`` (``address >> shift``)
    start, 4 bytes a bucket: about 16 keys a bucket for a level of ``INDEX_MIN`` keys or
    more. In a big dataset (64 times that) every level gets all ``_INDEX_BITS``: at most
    256 KiB a level, a fraction of a byte an entry, and a small level's buckets are then
    nearly all empty, so most addresses pass it without a bisect.
    """
    n = len(keys)
    if total >= 64 * INDEX_MIN:
        bits = _INDEX_BITS
    elif n >= INDEX_MIN:
        bits = min(_INDEX_BITS, max(8, n.bit_length() - 4))
    else:
        return mask, 0, keys, None
    shift = 32 - bits
    if n >= 1 << bits:
        offsets = array("I", [bisect_left(keys, j << shift << 24) for j in range(1 << bits)])
        offsets.append(n)
    else:  # fewer keys than buckets: count them
        counts = [0] * ((1 << bits) + 1)
        for key in keys:
            counts[(key >> 24 >> shift) + 1] += 1
        offsets = array("I", accumulate(counts))
    return mask, shift, keys, offsets


# --- ip4trie -------------------------------------------------------------------------


class Ip4TrieBuilder(TrieBuilder):
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
        return self.store(bits, a, s, i, negated)

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
    __slots__ = ("lens", "values", "subst", "entries", "nbytes", "answers")

    def __init__(self, lens: list, values: tuple, subst: tuple) -> None:
        self.lens = lens
        self.values = values
        self.subst = subst
        self.answers = Answers(values, subst)
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

    def answer(self, sub: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """As ``Ip4Set.answer``: the answer for four canonical decimal labels, else None."""
        try:
            q = _from_bytes(_inet_pton(_AF_INET, sub), "little")
        except (OSError, ValueError):
            return None
        for keys, mask in self.lens:
            k = (q & mask) << 24
            i = bisect_left(keys, k)
            if i < len(keys) and keys[i] - k <= VMASK:
                v = keys[i] - k
                return self.answers.reply(v, sub, q, self.find) if v else EMPTY
        return EMPTY
