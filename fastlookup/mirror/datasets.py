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

from .base import COMBINED, DN, IP4, IP6, MAX_VALUES, Builder, TooMany
from .dnset import DnSet, DnSetBuilder
from .ip4 import Ip4Set, Ip4SetBuilder, Ip4Trie, Ip4TrieBuilder
from .ip6 import Ip6Trie, Ip6TrieBuilder, Ip6TSet, Ip6TSetBuilder

__all__ = [
    "BUILDERS", "Builder", "IP4", "IP6", "DN", "COMBINED", "MAX_VALUES", "TooMany",
    "Ip4SetBuilder", "Ip4Set", "Ip4TrieBuilder", "Ip4Trie", "Ip6TrieBuilder", "Ip6Trie",
    "Ip6TSetBuilder", "Ip6TSet", "DnSetBuilder", "DnSet",
]

BUILDERS: dict[str, type[Builder]] = {
    "ip4set": Ip4SetBuilder,
    "ip4trie": Ip4TrieBuilder,
    "ip6trie": Ip6TrieBuilder,
    "ip6tset": Ip6TSetBuilder,
    "dnset": DnSetBuilder,
}
