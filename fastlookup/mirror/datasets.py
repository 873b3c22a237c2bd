"""rbldnsd's dataset types, loaded line by line and frozen into compact lookups.

Each builder takes the lines of its files (``start()`` at each file, as
rbldnsd's ``dst_startfn``: the ``:A:TXT`` default of one file does not carry
into the next, except in ``ip6tset``) and ``finish()`` returns an immutable
lookup object that the event loop can read while the next copy loads.

Storage (the goal is ≥ 1,000,000 IPv4 entries in ≤ 16 bytes each):

* ``ip4set`` keeps rbldnsd's four granularity levels (/32, /24, /16, /8: a
  range is cut into octet-aligned runs exactly as ``ip4range_expand`` cuts
  it) as sorted ``array('Q')`` of ``address << 24 | value``: 8 bytes an
  entry, found by bisect. The first level holding the address answers (a /32
  beats a /24 whatever the order of the lines), and there an exclusion
  (value 0) sorts first and wins, as rbldnsd's NULL value does.
* ``ip4trie`` keeps one sorted array per prefix length; the longest matching
  prefix answers; a duplicated prefix keeps its first value.
* ``ip6trie`` keeps a dict per prefix length (IPv6 lists are small).
* ``ip6tset`` keeps sorted /64 halves in an ``array('Q')`` and the /128
  exclusions in a set; one value for the whole dataset.
* ``dnset`` keeps two dicts, exact names and wildcard bases (``.d`` is in
  both, ``*.d`` only in the wildcard one), looked up by suffix.

Values are interned per dataset (``values[0]`` is the exclusion marker).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any, Sequence

from .syntax import (
    DEFAULT_RR,
    SPACE,
    Rr,
    ip4cidr,
    ip4mask,
    ip4range,
    ip6cidr,
    ip6prefix,
    parse_a_txt,
)

__all__ = ["BUILDERS", "Builder", "IP4", "IP6", "DN", "COMBINED", "MAX_VALUES", "TooMany"]

IP4, IP6, DN, COMBINED = "ip4", "ip6", "dn", "combined"
#: Distinct values a dataset may hold (they are 24-bit indexes).
MAX_VALUES = (1 << 24) - 1
_VMASK = (1 << 24) - 1
_LEVEL_MASKS = (0xFFFFFFFF, 0xFFFFFF00, 0xFFFF0000, 0xFF000000)
#: An ip4set part (one first octet of one level) this big gets a second-octet index.
INDEX_MIN = 512
_COMMENT = "#;"


class TooMany(Exception):
    """A dataset grew past a bound (values or entries): the load is refused."""


def _tail_ok(s: str, i: int) -> bool:
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


def _negation(s: str) -> tuple[bool, int]:
    if s[:1] == "!":
        i = 1
        while i < len(s) and s[i] in SPACE:
            i += 1
        return True, i
    return False, 0


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
        negated, i = _negation(s)
        bits, a, b, i = ip4range(s, i)
        if bits < 0 or not _tail_ok(s, i):
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
                if not key & _VMASK:
                    return None  # an exclusion at this level wins
                values = self.values
                out = [values[key & _VMASK]]
                i += 1
                n = len(keys)
                while i < n and keys[i] >> 24 == f:
                    out.append(values[keys[i] & _VMASK])
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
        negated, i = _negation(s)
        bits, a, i = ip4cidr(s, i)
        if bits < 0 or not _tail_ok(s, i):
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
                v = keys[i] & _VMASK
                return [self.values[v]] if v else None
        return None


# --- ip6trie / ip6tset ---------------------------------------------------------------


def _mask6(bits: int) -> int:
    return ((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1) if bits else 0


class Ip6TrieBuilder(Builder):
    family = IP6

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.by_len: dict[int, dict[int, int]] = {}

    def line(self, s: str) -> str:
        if s[0] == ":" and s[1:2] != ":":
            return self.default_line(s)
        negated, i = _negation(s)
        bits, addr, i = ip6cidr(s, i)
        if bits < 0 or not _tail_ok(s, i):
            return "invalid address"
        a = int.from_bytes(addr, "big")
        if a & ~_mask6(bits):
            return "invalid range (non-zero host part)"
        v, warning = self.entry_value(s, i, negated)
        if v < 0:
            return warning
        table = self.by_len.setdefault(bits, {})
        if a in table:
            return "duplicated entry"
        self.count()
        table[a] = v
        return ""

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
        negated, i = _negation(s)
        bits, addr, i = ip6prefix(s, i)
        if bits < 0 or not _tail_ok(s, i):
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
        negated, i = _negation(s)
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


BUILDERS: dict[str, type[Builder]] = {
    "ip4set": Ip4SetBuilder,
    "ip4trie": Ip4TrieBuilder,
    "ip6trie": Ip6TrieBuilder,
    "ip6tset": Ip6TSetBuilder,
    "dnset": DnSetBuilder,
}
