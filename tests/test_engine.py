"""The engine without I/O: memory cache, TTL clamps, stale answers, prefetch, coalescing, deadlines.

Time is a ``FakeClock`` the tests step; upstream is an in-memory double. No
test here sleeps: waiting is on events the test controls.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from doubles import FakeClock, FakeUpstream

from fastlookup.cache.entry import TtlPolicy
from fastlookup.cache.memory import MemoryCache
from fastlookup.lookup import MAX_ROUNDS, MISSING, run, try_sync
from fastlookup.model import Answer
from fastlookup.resolver import Resolver
from fastlookup.stats import Stats
from fastlookup.upstream.memory import MemoryUpstream

OK = Answer("ok", ("192.0.2.1",), 300)


def make(table: dict | None = None, *, upstream=None, clock=None, entries: int = 1000, prefetch: bool = True, **ttl) -> tuple[Resolver, MemoryUpstream, FakeClock]:
    clock = clock or FakeClock()
    upstream = upstream or FakeUpstream(table)
    resolver = Resolver(
        upstream, MemoryCache(entries, clock), TtlPolicy(**ttl), stats=Stats(), prefetch=prefetch, fetch_budget_s=1.0, clock=clock
    )
    return resolver, upstream, clock


async def ask(resolver: Resolver, name: str = "a.test", rdtype: str = "A") -> Answer:
    return await resolver.resolve(name, rdtype, resolver.clock() + 1.0)


# --- TTL clamps ------------------------------------------------------------------------------

CLAMP_CASES = [
    # (upstream answer, seconds it stays fresh)
    (Answer("ok", ("192.0.2.1",), 5), 60),  # min_ttl_s
    (Answer("ok", ("192.0.2.1",), 600), 600),
    (Answer("ok", ("192.0.2.1",), 10**7), 86400),  # max_ttl_s
    (Answer("nxdomain", (), 1), 60),  # negative_min_ttl_s
    (Answer("nodata", (), 900), 900),
    (Answer("nxdomain", (), 10**6), 3600),  # negative_max_ttl_s
    (Answer("servfail"), 5),  # failure_ttl_s
    (Answer("timeout"), 5),
]


@pytest.mark.parametrize("answer, fresh_s", CLAMP_CASES)
def test_answers_stay_fresh_for_their_clamped_ttl(answer, fresh_s):
    """Each status is cached for its clamped lifetime, then asked again."""

    async def main():
        resolver, upstream, clock = make({("a.test", "A"): answer})
        first = await ask(resolver)
        assert first.source == "upstream" and first.status == answer.status
        clock.now += fresh_s - 0.5
        assert resolver.peek("a.test", "A").source == "memory"
        clock.now += 1.0
        assert resolver.peek("a.test", "A") is None
        assert len(upstream.queries) == 1

    asyncio.run(main())


def test_failures_are_never_given_a_real_ttl():
    """A failure answer says ttl 0 to the caller even while it is remembered briefly."""

    async def main():
        resolver, upstream, _ = make()
        upstream.failing = True
        assert (await ask(resolver)).ttl == 0

    asyncio.run(main())


# --- serve-stale (RFC 8767) ------------------------------------------------------------------------


STALE_CASES = [
    # (cached answer, seconds past expiry, served stale?)
    (OK, 10, True),
    (OK, 3500, True),  # inside stale_s (3600)
    (OK, 3700, False),
    (Answer("nxdomain", (), 300), 200, True),  # inside stale_negative_s (300)
    (Answer("nxdomain", (), 300), 400, False),
]


@pytest.mark.parametrize("cached, past_s, stale", STALE_CASES)
def test_expired_answer_is_served_stale_when_upstream_fails(cached, past_s, stale):
    """When upstream fails, an expired answer inside its stale window is served as 'stale'."""

    async def main():
        resolver, upstream, clock = make({("a.test", "A"): cached})
        await ask(resolver)
        fresh = resolver.memory.get("A:a.test").ttl
        clock.now += fresh + past_s
        upstream.failing = True
        answer = await ask(resolver)
        if stale:
            assert answer.source == "stale" and answer.status == cached.status and answer.records == cached.records
            assert resolver.stats.total("stale_served") == 1
            # Re-served for failure_ttl_s without asking upstream again.
            assert resolver.peek("a.test", "A").source == "stale"
            assert len(upstream.queries) == 2
        else:
            assert answer.status == "timeout" and answer.source == "upstream"

    asyncio.run(main())


# --- prefetch ---------------------------------------------------------------------------------------


def test_prefetch_starts_once_in_the_last_tenth_of_the_ttl():
    """A hit in the last 10% of its TTL starts exactly one background refresh, however many hits follow."""

    async def main():
        resolver, upstream, clock = make({("a.test", "A"): Answer("ok", ("192.0.2.1",), 100)}, upstream=FakeUpstream({("a.test", "A"): Answer("ok", ("192.0.2.1",), 100)}, hold=True))
        upstream.release()
        await ask(resolver)
        upstream.hold_answers()
        clock.now += 50
        assert resolver.peek("a.test", "A").source == "memory"
        assert len(upstream.queries) == 1  # not yet in the last 10%
        clock.now += 45
        for _ in range(20):
            assert resolver.peek("a.test", "A").source == "memory"  # still answered from memory
        await asyncio.sleep(0)  # let the refresh task start
        assert len(upstream.queries) == 2
        upstream.release()
        await asyncio.wait(list(resolver._tasks))
        clock.now += 50
        assert resolver.peek("a.test", "A").ttl > 40  # refreshed: fresh again
        assert len(upstream.queries) == 2

    asyncio.run(main())


def test_no_prefetch_when_disabled():
    """cache.prefetch = false: a hit near expiry starts no refresh."""

    async def main():
        resolver, upstream, clock = make({("a.test", "A"): Answer("ok", ("192.0.2.1",), 100)}, prefetch=False)
        await ask(resolver)
        clock.now += 95
        resolver.peek("a.test", "A")
        await asyncio.sleep(0)
        assert len(upstream.queries) == 1

    asyncio.run(main())


# --- memory bound ----------------------------------------------------------------------------------


def test_lru_stays_bounded_under_10x_distinct_keys():
    """Ten times more distinct names than memory_entries keep the cache at its bound, newest kept."""

    async def main():
        resolver, _, _ = make(entries=100)
        for i in range(1000):
            await ask(resolver, f"h{i}.test")
        memory = resolver.memory
        assert len(memory) == 100 and memory.evictions == 900
        assert resolver.peek("h999.test", "A") is not None
        assert resolver.peek("h0.test", "A") is None

    asyncio.run(main())


def test_lru_keeps_what_is_used():
    """A key read often survives a stream of new keys that evicts the rest."""
    clock = FakeClock()
    memory = MemoryCache(16, clock)
    policy = TtlPolicy()
    memory.put("A:hot", policy.entry(OK, clock()))
    for i in range(100):
        memory.get("A:hot")
        memory.put(f"A:cold{i}", policy.entry(OK, clock()))
    assert memory.get("A:hot") is not None and len(memory) == 16


def test_sweep_drops_only_dead_entries():
    """sweep removes entries past their stale window and keeps fresh and stale-eligible ones."""
    clock = FakeClock()
    memory = MemoryCache(100, clock)
    policy = TtlPolicy()
    memory.put("A:old", policy.entry(Answer("ok", (), 60), clock()))
    clock.now += 1000
    memory.put("A:new", policy.entry(Answer("ok", (), 60), clock()))
    assert memory.sweep() == 0  # "old" is expired but inside stale_s
    clock.now += 3600
    assert memory.sweep() == 1 and memory.get("A:new") is not None


# --- coalescing and deadlines ---------------------------------------------------------------------


def test_500_concurrent_identical_lookups_make_one_upstream_query():
    """500 callers asking the same question at once share one upstream query."""

    async def main():
        upstream = FakeUpstream({("a.test", "A"): OK}, hold=True)
        resolver, _, _ = make(upstream=upstream)
        tasks = [asyncio.ensure_future(ask(resolver)) for _ in range(500)]
        await asyncio.sleep(0)
        upstream.release()
        answers = await asyncio.gather(*tasks)
        assert len(upstream.queries) == 1
        assert {a.records for a in answers} == {OK.records}
        assert resolver.stats.total("coalesced") == 499

    asyncio.run(main())


def test_deadline_gives_timeout_and_the_answer_still_lands_in_the_cache():
    """A caller gets 'timeout' at its deadline; the fetch goes on and caches the answer for the next."""

    async def main():
        upstream = FakeUpstream({("a.test", "A"): OK}, hold=True)
        resolver, _, _ = make(upstream=upstream, clock=time.monotonic)
        t0 = time.monotonic()
        answer = await resolver.resolve("a.test", "A", time.monotonic() + 0.05)
        assert answer.status == "timeout" and time.monotonic() - t0 < 5.0  # generous: held forever otherwise
        assert resolver.stats.total("deadline_timeouts") == 1
        upstream.release()
        await asyncio.wait(list(resolver._tasks))
        assert resolver.peek("a.test", "A").records == OK.records

    asyncio.run(main())


def test_deadline_serves_a_stale_answer_when_one_is_kept():
    """At the deadline, an expired answer inside its stale window is served instead of timeout."""

    async def main():
        clock = FakeClock()
        upstream = FakeUpstream({("a.test", "A"): OK}, hold=True)
        resolver, _, _ = make(upstream=upstream, clock=clock)
        upstream.release()
        await ask(resolver)
        upstream.hold_answers()
        clock.now += 400  # expired (300 s), inside stale_s
        answer = await resolver.resolve("a.test", "A", clock() - 1)  # deadline already passed
        assert answer.source == "stale" and answer.records == OK.records

    asyncio.run(main())


# --- the lookup driver ---------------------------------------------------------------------------


def listing_evaluator(get):
    """A two-step check: the A answer, then its TXT only when listed (like a DNSBL hit)."""
    a = get("2.0.0.127.bl.test", "A")
    if a is None:
        return None
    if a.status != "ok":
        return ("not listed", None)
    txt = get("2.0.0.127.bl.test", "TXT")
    return ("listed", None if txt is None else txt.records)


def test_try_sync_answers_a_memory_hit_without_any_task():
    """A fully cached evaluation completes synchronously: no task, no future."""

    async def main():
        table = {("2.0.0.127.bl.test", "A"): Answer("ok", ("127.0.0.2",), 300), ("2.0.0.127.bl.test", "TXT"): Answer("ok", ("spam",), 300)}
        resolver, upstream, _ = make(table)
        result, lookup = try_sync(resolver, listing_evaluator)
        assert result is MISSING and lookup.missing == [("2.0.0.127.bl.test", "A")]
        assert await run(resolver, listing_evaluator, resolver.clock() + 1, lookup) == ("listed", ("spam",))
        assert len(upstream.queries) == 2  # A, then TXT in a second round
        before = len(asyncio.all_tasks())
        result, _ = try_sync(resolver, listing_evaluator)
        assert result == ("listed", ("spam",))
        assert len(asyncio.all_tasks()) == before

    asyncio.run(main())


def test_run_stops_an_evaluator_that_never_stops_asking():
    """An evaluator that keeps asking new questions ends after MAX_ROUNDS with timeouts, not a hang."""

    async def main():
        resolver, upstream, _ = make()
        asked = []

        def endless(get):
            n = len(asked)
            asked.append(n)
            answers = [get(f"n{i}.test", "A") for i in range(n + 1)]
            return None if any(a is None for a in answers) else [a.status for a in answers]

        result = await asyncio.wait_for(run(resolver, endless, resolver.clock() + 1), timeout=5)
        assert len(asked) == MAX_ROUNDS + 2  # the first pass, MAX_ROUNDS rounds, one final pass
        assert result is not None and result[-1] == "timeout"  # the final pass completes with timeouts
        assert len(upstream.queries) <= MAX_ROUNDS + 1

    asyncio.run(main())


def test_purge_suffix_drops_one_zone_only():
    """Purging a zone's suffix drops its answers and keeps every other entry."""
    from fastlookup.cache.entry import Entry
    from fastlookup.cache.memory import MemoryCache

    cache = MemoryCache(100)
    for key in ("A:2.0.0.127.bl.test", "TXT:2.0.0.127.bl.test", "A:2.0.0.127.other.test", "A:bl.test.example"):
        cache.put(key, Entry("ok", ("127.0.0.2",), 60, 100.0, 200.0))
    assert cache.purge_suffix(".bl.test") == 2
    assert cache.get("A:2.0.0.127.other.test") is not None and cache.get("A:bl.test.example") is not None


def test_a_miss_resolved_after_another_fetch_landed_asks_nothing_more():
    """A call that missed, then resolves after another call's fetch of the same question landed, reuses it."""

    async def main():
        resolver, upstream, _ = make({("h.test", "A"): Answer("ok", ("192.0.2.1",), 300)})
        first = try_sync(resolver, lambda get: get("h.test", "A"))
        assert first[0] is MISSING  # this call missed in its loop turn...
        await resolver.resolve("h.test", "A", resolver.clock() + 1)  # ...another call's fetch lands...
        out = await run(resolver, lambda get: get("h.test", "A"), resolver.clock() + 1, first[1])
        assert out.records == ("192.0.2.1",) and len(upstream.queries) == 1  # ...and no second query

    asyncio.run(main())
