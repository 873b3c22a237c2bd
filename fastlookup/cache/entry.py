"""A cached answer and the rules that give it a lifetime.

TTL clamps (``[cache]`` config): positive answers between ``min_ttl_s`` and
``max_ttl_s``; NXDOMAIN/NODATA between ``negative_min_ttl_s`` and
``negative_max_ttl_s`` (their TTL comes from the SOA, RFC 2308 §5);
SERVFAIL/timeout only for ``failure_ttl_s`` and never past it, so a passing
outage is not remembered as an answer. After expiry an entry may still be
served as *stale* when upstream fails (RFC 8767 §4), for ``stale_s``, or
``stale_negative_s`` for a negative answer: a stale "not listed" for a
blocklist is a risk worth taking only briefly.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import FAILURES, NEGATIVE, Answer

__all__ = ["Entry", "TtlPolicy"]


class Entry:
    """One cached answer with absolute times on the cache's clock.

    ``ttl`` is the clamped lifetime it was stored with (for prefetch: the
    last 10% of it); ``stale`` marks an entry that is itself a stale answer
    re-served during an outage.
    """

    __slots__ = ("status", "records", "ttl", "expires", "stale_until", "stale")

    def __init__(
        self, status: str, records: tuple[str, ...], ttl: int, expires: float, stale_until: float, stale: bool = False
    ) -> None:
        self.status = status
        self.records = records
        self.ttl = ttl
        self.expires = expires
        self.stale_until = stale_until
        self.stale = stale

    def answer(self, now: float, source: str) -> Answer:
        left = self.expires - now
        return Answer(self.status, self.records, int(left) if left > 0 else 0, "stale" if self.stale else source)

    def __repr__(self) -> str:
        return f"Entry({self.status!r}, {self.records!r}, ttl={self.ttl}, expires={self.expires:.1f})"


@dataclass(frozen=True, slots=True)
class TtlPolicy:
    """The clamps and windows of ``[cache]``, applied to fresh upstream answers."""

    min_ttl_s: int = 60
    max_ttl_s: int = 86400
    negative_min_ttl_s: int = 60
    negative_max_ttl_s: int = 3600
    failure_ttl_s: int = 5
    stale_s: int = 3600
    stale_negative_s: int = 300

    @classmethod
    def from_config(cls, cache) -> "TtlPolicy":
        return cls(
            cache.min_ttl_s,
            cache.max_ttl_s,
            cache.negative_min_ttl_s,
            cache.negative_max_ttl_s,
            cache.failure_ttl_s,
            cache.stale_s,
            cache.stale_negative_s,
        )

    def lifetime(self, answer: Answer) -> tuple[int, int]:
        """(seconds fresh, seconds stale after that) for an upstream answer."""
        status = answer.status
        if status == "ok":
            return min(max(answer.ttl, self.min_ttl_s), self.max_ttl_s), self.stale_s
        if status in NEGATIVE:
            return min(max(answer.ttl, self.negative_min_ttl_s), self.negative_max_ttl_s), self.stale_negative_s
        return self.failure_ttl_s, 0

    def entry(self, answer: Answer, now: float) -> Entry:
        fresh, stale = self.lifetime(answer)
        return Entry(answer.status, answer.records, fresh, now + fresh, now + fresh + stale)

    @staticmethod
    def shareable(answer: Answer) -> bool:
        """Failures stay in memory only: another host may reach upstream fine."""
        return answer.status not in FAILURES
