"""Is upstream answering? The ``tempfail`` tracker's semantics, and the resolver feeding it every upstream answer.

Time is a ``FakeClock`` the tests step; upstream is the in-memory double. The
real-service side (ptr/dnsbl calls answered by the test DNS server make a later
``check`` defer) is in ``test_tempfail_real.py``.
"""

from __future__ import annotations

import asyncio

import pytest
from doubles import FakeClock, FakeUpstream

from fastlookup.cache.entry import Entry, TtlPolicy
from fastlookup.cache.memory import MemoryCache
from fastlookup.checks.tempfail import MAX_STREAK, WINDOW_S, UpstreamSeen
from fastlookup.model import STATUSES, Answer
from fastlookup.resolver import Resolver
from fastlookup.stats import Stats

OK = Answer("ok", ("192.0.2.1",), 100)


# --- the tracker -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "events, healthy",
    [
        # events: (seconds to step first, status upstream gave); then: healthy now?
        ([], False),  # never heard from upstream: unknown, so not healthy
        ([(0, "ok")], True),
        ([(0, "nxdomain")], True),  # a real "no" is an answer
        ([(0, "nodata")], True),
        ([(0, "servfail")], False),  # failures are not answers
        ([(0, "refused")], False),
        ([(0, "timeout")], False),
        ([(0, "error")], False),
        ([(0, "ok"), (WINDOW_S, "servfail")], True),  # answered exactly a window ago: still inside
        ([(0, "ok"), (WINDOW_S + 1, "servfail")], False),  # the last answer is older than the window
        ([(0, "ok")] + [(1, "timeout")] * (MAX_STREAK - 1), True),  # some failures: the client's DNS may fail
        ([(0, "ok")] + [(1, "timeout")] * MAX_STREAK, False),  # every question failing since: our outage
        ([(0, "ok")] + [(1, "timeout")] * MAX_STREAK + [(1, "nxdomain")], True),  # one answer ends the outage
    ],
)
def test_tracker_is_healthy_only_after_a_real_answer_within_the_window(events, healthy):
    """Upstream counts as healthy when it gave ok/NXDOMAIN/NODATA within 60 s and has not failed MAX_STREAK questions in a row since."""
    clock = FakeClock()
    seen = UpstreamSeen(clock)
    for step_s, status in events:
        clock.now += step_s
        seen.saw(status)
    assert seen.healthy() is healthy


def test_every_status_is_either_an_answer_or_a_failure():
    """Each status the resolver can report moves the tracker: answers make it healthy, the rest only add to the streak."""
    for status in STATUSES:
        seen = UpstreamSeen(FakeClock())
        seen.saw(status)
        assert (seen.healthy(), seen.streak) == ((True, 0) if status in ("ok", "nxdomain", "nodata") else (False, 1))


# --- the resolver tells the tracker what upstream said -------------------------------------------


class OneEntryTier:
    """A shared tier (``SharedTier``) that holds one entry another instance put there."""

    def __init__(self, key: str, entry: Entry) -> None:
        self.entries = {key: entry}

    async def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def put(self, key: str, entry: Entry) -> None:
        self.entries[key] = entry

    async def claim(self, key: str) -> bool:
        return True

    async def wait(self, key: str, timeout_s: float) -> Entry | None:
        return None

    async def close(self) -> None:
        pass


async def scenario(name: str, resolver: Resolver, upstream, clock: FakeClock) -> list[str]:
    """Play one scenario on ``resolver``; the sources of the last answer the caller got."""

    async def ask() -> Answer:
        return await resolver.resolve("a.test", "A", clock() + 1.0)

    if name == "miss":
        return [(await ask()).source]
    if name == "memory hit":
        await ask()
        return [(await ask()).source for _ in range(5)]
    if name == "coalesced":
        return sorted({a.source for a in await asyncio.gather(*(ask() for _ in range(10)))})
    if name == "failure":
        upstream.set("a.test", "A", Answer("servfail"))
        return [(await ask()).source]
    if name == "stale served":
        await ask()
        clock.now += resolver.memory.get("A:a.test").ttl + 10
        upstream.failing = True
        first = await ask()
        return [first.source, (await ask()).source]  # then re-served from memory for failure_ttl_s
    if name == "prefetch":
        await ask()
        clock.now += 95  # the last 10% of the 100 s TTL
        hit = resolver.peek("a.test", "A")
        await resolver.resolve_many([("a.test", "A")], clock() + 1.0)  # joins the refresh in flight
        return [hit.source]
    if name == "shared tier hit":
        resolver.shared = OneEntryTier("A:a.test", Entry("ok", ("192.0.2.1",), 100, clock() + 100, clock() + 3700))
        return [(await ask()).source]
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name, sources, told",
    [
        ("miss", ["upstream"], ["ok"]),
        ("memory hit", ["memory"] * 5, ["ok"]),  # hits prove nothing about upstream now, and cost nothing extra
        ("coalesced", ["upstream"], ["ok"]),  # ten callers, one question to upstream, one answer told
        ("failure", ["upstream"], ["servfail"]),
        ("stale served", ["stale", "stale"], ["ok", "timeout"]),  # the stale answer hides a failure: told as one
        ("prefetch", ["memory"], ["ok", "ok"]),  # a background refresh is an upstream answer too
        ("shared tier hit", ["redis"], []),  # another instance's answer, not ours from upstream now
    ],
)
def test_resolver_tells_on_upstream_each_answer_upstream_gave(name, sources, told):
    """``on_upstream`` hears upstream's own status once per question sent upstream, never for a cache hit."""
    heard: list[str] = []

    async def main():
        clock = FakeClock()
        upstream = FakeUpstream({("a.test", "A"): OK})
        resolver = Resolver(upstream, MemoryCache(100, clock), TtlPolicy(), stats=Stats(), prefetch=True,
                            fetch_budget_s=1.0, clock=clock, on_upstream=heard.append)
        try:
            return await scenario(name, resolver, upstream, clock)
        finally:
            await resolver.close()

    assert asyncio.run(main()) == sources
    assert heard == told


def test_memory_hit_path_never_calls_the_hook():
    """The hot path (``peek`` on a fresh entry) does not call ``on_upstream``: a hook that raises is never reached."""

    def boom(status: str) -> None:
        raise AssertionError(f"on_upstream called on a hit ({status})")

    clock = FakeClock()
    memory = MemoryCache(100, clock)
    memory.put("A:a.test", Entry("ok", ("192.0.2.1",), 100, clock() + 100, clock() + 3700))
    resolver = Resolver(FakeUpstream(), memory, TtlPolicy(), prefetch=True, clock=clock, on_upstream=boom)
    for _ in range(100):
        assert resolver.peek("a.test", "A").source == "memory"
