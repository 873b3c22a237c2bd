"""In-memory doubles for the engine's seams (upstream, clock), for unit tests of logic.

Integration tests use the real servers of ``fastlookup.testing``; these
doubles only let cache and resolver logic be tested with a stepped clock.
"""

from __future__ import annotations

import asyncio

from fastlookup.model import Answer


class FakeClock:
    """A clock the test steps by hand: ``clock.now += 30``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class FakeUpstream:
    """Answers from a table ``{(name, rdtype): Answer}``; NXDOMAIN otherwise; counts queries."""

    def __init__(self, table: dict | None = None, delay: float = 0.0) -> None:
        self.table = dict(table or {})
        self.delay = delay
        self.queries: list[tuple[str, str]] = []
        self.fail = False  # answer "timeout" to everything (a dead upstream)

    async def query(self, name: str, rdtype: str, deadline: float) -> Answer:
        self.queries.append((name, rdtype))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            return Answer("timeout")
        return self.table.get((name, rdtype), Answer("nxdomain", (), 300))

    async def close(self) -> None:
        pass
