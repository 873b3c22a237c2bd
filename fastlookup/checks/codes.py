"""Reply-code filters for blocklist answers (``127.0.0.2-127.0.0.11`` and friends).

A filter is a list of specs, any of which may match:

* one address ``127.0.0.2``; a range ``127.0.0.2-127.0.0.11``; a network ``127.0.0.0/24``;
* Postfix's pattern form ``127.0.0.[2..11]`` / ``127.0.[0..255].[1;3]`` (one
  octet range or list per bracket), as in ``reject_rbl_client zone=pattern``
  and ``postscreen_dnsbl_sites``, so filters can be copied from ``main.cf``;
* Exim's forms (``dnslists``): ``&0.0.0.8`` is a bitmask (a code matches when
  it has every bit of the mask set, ``(code & mask) == mask``, as SURBL/URIBL
  lists are read); ``!=127.0.0.2`` and ``!&0.0.0.8`` negate the whole filter:
  the zone lists an address when *none* of its codes match (Exim's "precise
  opposite"). A filter is either all negated or not at all.

Everything is parsed and bounded before anything is built (a pattern is
client input when a call names ``zone=pattern``): at most ``MAX_SPECS`` specs
of ``MAX_SPEC_CHARS`` characters, numbers of at most three digits, octets
0..255; an octet set is kept as a 256-bit integer, so no pattern costs more
than four integers however wide its ranges.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ConfigError

__all__ = ["CodeFilter", "MAX_SPECS", "MAX_SPEC_CHARS", "split_zone_spec", "parse_weight"]

#: Bounds on a filter, checked before any parsing work.
MAX_SPECS = 64
MAX_SPEC_CHARS = 200
#: A zone spec's weight (``zone*2``) must lie within ±MAX_WEIGHT.
MAX_WEIGHT = 1000.0

_NUM = r"[0-9]{1,3}"
_ITEM = rf"{_NUM}(?:\.\.{_NUM})?"
_PART = rf"(\[{_ITEM}(?:;{_ITEM})*\]|{_NUM})"
_PATTERN = re.compile(r"\A" + r"\.".join([_PART] * 4) + r"\Z")
_DOTTED = re.compile(r"\A[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z")
_ALL_OCTETS = (1 << 256) - 1


@lru_cache(maxsize=4096)
def _v4(text: str) -> int:
    """The integer of a dotted quad; memoised: lists answer a handful of codes.

    Only valid addresses are cached (an exception is never memoised), and a
    valid dotted quad is at most 15 characters, so the cache stays small.
    """
    return int(ipaddress.IPv4Address(text))


def _octet_mask(part: str) -> int:
    """The 256-bit set of one pattern octet (``7``, ``[2..11]``, ``[1;3;9..12]``); ValueError if out of range."""
    if part[0] != "[":
        value = int(part)
        if value > 255:
            raise ValueError(part)
        return 1 << value
    mask = 0
    for item in part[1:-1].split(";"):
        lo_text, _, hi_text = item.partition("..")
        lo = int(lo_text)
        hi = int(hi_text) if hi_text else lo
        if not lo <= hi <= 255:
            raise ValueError(part)
        mask |= ((1 << (hi - lo + 1)) - 1) << lo
    return mask


def split_zone_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``zone[=pattern|&mask|!=…|!&…][*weight]`` -> (zone, filter text with its operator, weight text).

    Only splits; nothing is converted. The filter keeps its operator (``=…``,
    ``&…``, ``!=…``, ``!&…``) for ``CodeFilter.parse``.
    """
    weight = None
    star = spec.rfind("*")
    if star >= 0:
        spec, weight = spec[:star], spec[star + 1 :]
    cut = len(spec)
    for op in ("!", "=", "&"):
        at = spec.find(op)
        if 0 <= at < cut:
            cut = at
    if cut == len(spec):
        return spec, None, weight
    return spec[:cut], spec[cut:], weight


def parse_weight(text: str, spec: str) -> float:
    """The weight after ``*`` in a zone spec; ValueError unless a finite number within ±MAX_WEIGHT."""
    if not text or len(text) > 16:
        raise ValueError(spec)
    weight = float(text)  # ValueError for "x"; "nan"/"inf" parse, and are refused below
    if not -MAX_WEIGHT <= weight <= MAX_WEIGHT:
        raise ValueError(spec)
    return weight


@dataclass(frozen=True, slots=True)
class CodeFilter:
    """A set of IPv4 reply codes given by ranges, octet patterns and bitmasks (maybe negated)."""

    ranges: tuple[tuple[int, int], ...] = ()
    patterns: tuple[tuple[int, int, int, int], ...] = ()  # per octet, a 256-bit set
    specs: tuple[str, ...] = ()
    masks: tuple[int, ...] = ()  # Exim ``&mask``: every bit of the mask set
    negate: bool = False  # Exim ``!=`` / ``!&``: listed when no code matches

    @classmethod
    def parse(cls, specs: tuple[str, ...] | list[str], where: str = "codes") -> "CodeFilter":
        """Parse a filter, bounded before any work; ConfigError naming ``where[i]`` otherwise.

        Equal spec lists give one shared filter (memoised, successes only):
        every zone of a profile has the same filters, so a registry holding
        thousands of zones holds a handful of filters.
        """
        if type(specs) is tuple and len(specs) <= MAX_SPECS:
            try:
                return _parse_shared(specs)
            except (ConfigError, TypeError):
                pass  # parsed again below, for the message naming ``where``
        return cls._parse(specs, where)

    @classmethod
    def _parse(cls, specs: tuple[str, ...] | list[str], where: str = "codes") -> "CodeFilter":
        if len(specs) > MAX_SPECS:
            raise ConfigError(f"{where}: {len(specs)} reply-code specs, the limit is {MAX_SPECS}")
        ranges: list[tuple[int, int]] = []
        patterns: list[tuple[int, int, int, int]] = []
        masks: list[int] = []
        negated: set[bool] = set()
        for i, spec in enumerate(specs):
            if not isinstance(spec, str) or len(spec) > MAX_SPEC_CHARS:
                shown = repr(spec[:40]) + "..." if isinstance(spec, str) else type(spec).__name__
                raise ConfigError(f"{where}[{i}]: {shown} is not a reply-code spec of at most {MAX_SPEC_CHARS} characters")
            text = spec.strip()
            negate = text.startswith("!")
            if negate:
                text = text[1:]
            if text[:2] in ("==", "=&"):
                # Exim's "every code must match" forms (==, =&, !==, !=&): not supported, said plainly.
                raise ConfigError(f"{where}[{i}]: {spec[:80]!r}: Exim's ==, =&, !== and !=& forms are not supported; use =, &, != or !&")
            if text.startswith("="):
                text = text[1:]
            bitmask = text.startswith("&")
            if bitmask:
                text = text[1:]
            try:
                # Exim writes several codes as a comma list: "=127.0.0.2,127.0.0.3".
                for piece in text.split(","):
                    piece = piece.strip()
                    if bitmask:
                        if not _DOTTED.match(piece):
                            raise ValueError(piece)
                        masks.append(_v4(piece))
                    elif "[" in piece:
                        m = _PATTERN.match(piece)
                        if m is None:
                            raise ValueError(piece)
                        a, b, c, d = (_octet_mask(p) for p in m.groups())
                        patterns.append((a, b, c, d))
                    elif "/" in piece:
                        net = ipaddress.IPv4Network(piece, strict=False)
                        ranges.append((int(net.network_address), int(net.broadcast_address)))
                    elif "-" in piece:
                        lo, hi = (_v4(x.strip()) for x in piece.split("-", 1))
                        if lo > hi:
                            raise ValueError(piece)
                        ranges.append((lo, hi))
                    else:
                        ranges.append((_v4(piece), _v4(piece)))
            except ValueError:
                raise ConfigError(
                    f"{where}[{i}]: {spec[:80]!r} is not a reply code, range (127.0.0.2-127.0.0.11), "
                    "network (127.0.0.0/24), pattern (127.0.0.[2..11]) or bitmask (&0.0.0.8)"
                ) from None
            negated.add(negate)
        if len(negated) > 1:
            raise ConfigError(f"{where}: negated (!=, !&) and plain reply-code specs cannot be mixed in one filter")
        return cls(tuple(ranges), tuple(patterns), tuple(specs), tuple(masks), negated == {True})

    def __bool__(self) -> bool:
        return bool(self.ranges or self.patterns or self.masks)

    def _matches(self, code: str) -> bool:
        try:
            value = _v4(code)
        except ValueError:
            return False
        for lo, hi in self.ranges:
            if lo <= value <= hi:
                return True
        for mask in self.masks:
            if value & mask == mask:
                return True
        if self.patterns:
            octets = (value >> 24, (value >> 16) & 255, (value >> 8) & 255, value & 255)
            for pattern in self.patterns:
                if all(allowed >> o & 1 for o, allowed in zip(octets, pattern)):
                    return True
        return False

    def match(self, code: str) -> bool:
        """Whether one code matches (for a negated filter: does not match what follows the ``!``)."""
        return self._matches(code) is not self.negate

    def select(self, codes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """The codes that make a listing: those matching, or for a negated filter all of them when none matches."""
        if self.negate:
            for code in codes:
                if self._matches(code):
                    return ()
            return tuple(codes)
        return tuple(code for code in codes if self._matches(code))


@lru_cache(maxsize=1024)
def _parse_shared(specs: tuple[str, ...]) -> CodeFilter:
    """``CodeFilter._parse`` memoised by the spec tuple (at most 64 specs of 200 characters: a bounded key)."""
    return CodeFilter._parse(specs)
