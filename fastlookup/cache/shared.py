"""The seam between the resolver and a fleet-wide shared tier (Redis).

The resolver only knows this Protocol; ``fastlookup.cache.redis_tier``
implements it on Redis. Every method fails soft: an unreachable or broken
shared tier behaves like an empty one and never raises to the resolver.
"""

from __future__ import annotations

from typing import Protocol

from .entry import Entry

__all__ = ["SharedTier"]


class SharedTier(Protocol):
    async def get(self, key: str) -> Entry | None:
        """The entry for ``key`` on the caller's clock (remaining TTL kept), or None."""

    def put(self, key: str, entry: Entry) -> None:
        """Store ``entry`` in the background; never delays the caller."""

    async def claim(self, key: str) -> bool:
        """True when this instance should ask upstream for ``key`` (it won the
        fleet-wide lock, or the tier cannot tell); False when another instance
        is already asking."""

    async def wait(self, key: str, timeout_s: float) -> Entry | None:
        """Wait up to ``timeout_s`` for another instance's answer to appear; None when this
        instance should ask upstream itself (the winner failed or died, or the time is up)."""

    # Optional (the resolver calls it when present): ``release(key)`` after a fetch this
    # instance won ended without an answer to share, so waiting instances take over now.

    async def close(self) -> None: ...
