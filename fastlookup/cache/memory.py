"""The memory tier: a bounded LRU of ``Entry`` values keyed by ``"TYPE:name"``.

Reads are synchronous and allocation-light, because a memory hit is the
hot path and answers inside the socket's read callback. Bounded by entry
count (``cache.memory_entries``): the least recently used entry goes first,
so a Zipf-shaped stream of client IPs keeps its head in memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from .entry import Entry

__all__ = ["MemoryCache", "make_key"]


def make_key(name: str, rdtype: str) -> str:
    """The cache key of one question; the Redis tier prefixes the same string."""
    return rdtype + ":" + name


class MemoryCache:
    """A bounded LRU of entries; time comes from ``clock`` so tests step it."""

    __slots__ = ("_data", "max_entries", "clock", "evictions")

    def __init__(self, max_entries: int = 200_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: OrderedDict[str, Entry] = OrderedDict()
        self.max_entries = max_entries
        self.clock = clock
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` whatever its age (fresh, stale or dead), marking it used."""
        entry = self._data.get(key)
        if entry is not None:
            self._data.move_to_end(key)
        return entry

    def put(self, key: str, entry: Entry) -> None:
        data = self._data
        data[key] = entry
        data.move_to_end(key)
        if len(data) > self.max_entries:
            data.popitem(last=False)
            self.evictions += 1

    def purge_suffix(self, suffix: str) -> int:
        """Drop every entry whose name ends with ``suffix`` (a zone taken out of use); returns how many."""
        dead = [k for k in self._data if k.endswith(suffix)]
        for k in dead:
            del self._data[k]
        return len(dead)

    def clear(self) -> None:
        self._data.clear()

    def sweep(self, now: float | None = None) -> int:
        """Drop entries past their stale window; returns how many (run on a timer, not per call)."""
        now = self.clock() if now is None else now
        dead = [k for k, e in self._data.items() if e.stale_until <= now and e.expires <= now]
        for k in dead:
            del self._data[k]
        return len(dead)
