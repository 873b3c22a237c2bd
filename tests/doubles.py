"""In-memory doubles for the engine's seams (clock; upstream from fastlookup.upstream.memory).

Integration tests use the real servers of ``fastlookup.testing``; these
doubles only let cache and resolver logic be tested with a stepped clock.
"""

from __future__ import annotations

from fastlookup.model import Answer
from fastlookup.upstream.memory import MemoryUpstream


class FakeClock:
    """A clock the test steps by hand: ``clock.now += 30``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


#: The engine tests' default: NXDOMAIN with a 300 s SOA-derived TTL.
NXDOMAIN_300 = Answer("nxdomain", (), 300)


def FakeUpstream(table: dict | None = None, *, delay: float = 0.0, hold: bool = False) -> MemoryUpstream:
    """The shipped in-memory upstream with the engine tests' NXDOMAIN default (see MemoryUpstream)."""
    return MemoryUpstream(table, default=NXDOMAIN_300, delay_s=delay, hold=hold)
