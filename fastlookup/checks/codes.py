"""Reply-code filters for blocklist answers (``127.0.0.2-127.0.0.11`` and friends).

A filter is a list of specs, any of which may match:

* one address ``127.0.0.2``; a range ``127.0.0.2-127.0.0.11``; a network ``127.0.0.0/24``;
* Postfix's pattern form ``127.0.0.[2..11]`` / ``127.0.[0..255].[1;3]`` (one
  octet range or list per bracket), as in ``reject_rbl_client zone=pattern``
  and ``postscreen_dnsbl_sites``, so filters can be copied from ``main.cf``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["CodeFilter"]

_OCTET = re.compile(r"^\[(.+)\]$")
_PART = r"(\[[0-9.;]+\]|[0-9]{1,3})"
_PATTERN = re.compile(r"^" + r"\.".join([_PART] * 4) + r"$")


@lru_cache(maxsize=4096)
def _v4(text: str) -> int:
    """The integer of a dotted quad; memoised: lists answer a handful of codes."""
    return int(ipaddress.IPv4Address(text))


def _octet_set(part: str, spec: str) -> frozenset[int]:
    m = _OCTET.match(part)
    if not m:
        return frozenset({int(part)})
    values: set[int] = set()
    for item in m.group(1).split(";"):
        if ".." in item:
            lo, hi = (int(x) for x in item.split("..", 1))
            values.update(range(lo, hi + 1))
        else:
            values.add(int(item))
    if not all(0 <= v <= 255 for v in values):
        raise ValueError(spec)
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class CodeFilter:
    """A set of IPv4 reply codes given by ranges and octet patterns."""

    ranges: tuple[tuple[int, int], ...] = ()
    patterns: tuple[tuple[frozenset[int], ...], ...] = ()
    specs: tuple[str, ...] = ()

    @classmethod
    def parse(cls, specs: tuple[str, ...] | list[str], where: str = "codes") -> "CodeFilter":
        ranges: list[tuple[int, int]] = []
        patterns: list[tuple[frozenset[int], ...]] = []
        for i, spec in enumerate(specs):
            text = spec.strip().lstrip("=")
            try:
                if "[" in text:
                    m = _PATTERN.match(text)
                    if m is None:
                        raise ValueError(text)
                    parts = m.groups()
                    patterns.append(tuple(_octet_set(p, text) for p in parts))
                elif "/" in text:
                    net = ipaddress.IPv4Network(text, strict=False)
                    ranges.append((int(net.network_address), int(net.broadcast_address)))
                elif "-" in text:
                    lo, hi = (_v4(x.strip()) for x in text.split("-", 1))
                    if lo > hi:
                        raise ValueError(text)
                    ranges.append((lo, hi))
                else:
                    ranges.append((_v4(text), _v4(text)))
            except ValueError:
                raise ConfigError(
                    f"{where}[{i}]: {spec!r} is not a reply code, range (127.0.0.2-127.0.0.11), "
                    "network (127.0.0.0/24) or pattern (127.0.0.[2..11])"
                ) from None
        return cls(tuple(ranges), tuple(patterns), tuple(specs))

    def __bool__(self) -> bool:
        return bool(self.ranges or self.patterns)

    def match(self, code: str) -> bool:
        try:
            value = _v4(code)
        except ValueError:
            return False
        for lo, hi in self.ranges:
            if lo <= value <= hi:
                return True
        if self.patterns:
            octets = (value >> 24, (value >> 16) & 255, (value >> 8) & 255, value & 255)
            for pattern in self.patterns:
                if all(o in allowed for o, allowed in zip(octets, pattern)):
                    return True
        return False
