"""The lookup engine (resolver + upstream + checks) against real DNS servers on loopback.

The resolver runs on a stepped clock where TTLs matter; the servers are the
real rbldnsd and the project's DnsServer.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from fastlookup import lookup, rpc
from fastlookup.cache import MemoryCache, TtlPolicy
from fastlookup.checks.zones import ZoneRegistry
from fastlookup.resolver import Resolver
from fastlookup.stats import Stats
from fastlookup.upstream import Server, UpstreamPool

from doubles import FakeClock


def engine(address, clock=time.monotonic, timeout_s=0.3, attempts=1, memory_entries=1000):
    """A resolver over a real upstream pool; returns (resolver, context)."""
    stats = Stats()
    pool = UpstreamPool([Server(*address)], timeout_s=timeout_s, attempts=attempts, stats=stats)
    resolver = Resolver(
        pool, MemoryCache(memory_entries, clock), TtlPolicy(), stats=stats, clock=clock,
        fetch_budget_s=timeout_s * attempts + 0.1,
    )
    return resolver, rpc.Context(ZoneRegistry(), stats)


async def call(resolver, ctx, method, args, deadline_s=2.0):
    evaluate = rpc.prepare(ctx, method, args)
    return await lookup.run(resolver, evaluate, resolver.clock() + deadline_s)


@pytest.mark.parametrize(
    "ip, listed, codes",
    [
        ("127.0.0.2", True, ["127.0.0.2"]),
        ("127.0.0.1", False, []),
        ("::FFFF:7F00:2", True, ["127.0.0.2"]),  # mapped: the IPv4 test point
        ("::FFFF:7F00:1", False, []),
        ("192.0.2.99", True, ["127.0.0.2"]),
        ("198.51.100.7", True, ["127.0.0.4"]),
        ("2001:db8:bad::1", True, ["127.0.0.2"]),  # RFC 5782 §2.4 nibble form
        ("2001:db8:900d::1", False, []),
    ],
)
def test_rfc5782_points_against_rbldnsd(rbldnsd, ip, listed, codes):
    """RFC 5782 test points and listings come out right through the engine and rbldnsd."""

    async def main():
        resolver, ctx = engine(rbldnsd.address)
        out = await call(resolver, ctx, "dnsbl", {"ip": ip, "zones": ["bl.test"]})
        assert out["listed"] is listed
        assert [c for h in out["hits"] for c in h["codes"]] == codes
        if listed:
            assert out["hits"][0]["text"]  # the TXT was fetched too
        await resolver.upstream.close()

    asyncio.run(main())


@pytest.mark.parametrize("domain, listed", [("test", True), ("invalid", False), ("spam.example", True), ("ham.example", False)])
def test_rhsbl_test_points_against_rbldnsd(rbldnsd, domain, listed):
    """RHSBL answers TEST listed and INVALID not (RFC 5782 §5), plus real listings."""

    async def main():
        resolver, ctx = engine(rbldnsd.address)
        out = await call(resolver, ctx, "rhsbl", {"domain": domain, "zones": ["dbl.test"]})
        assert out["listed"] is listed
        await resolver.upstream.close()

    asyncio.run(main())


def test_list_error_code_is_never_a_hit(rbldnsd):
    """A list answering its error code goes to unknown/list_error, never a hit."""

    async def main():
        resolver, ctx = engine(rbldnsd.address)
        out = await call(resolver, ctx, "dnsbl", {"ip": "192.0.2.1", "zones": ["errorcode.test"]})
        assert out == {"listed": False, "hits": [], "unknown": [{"zone": "errorcode.test", "status": "list_error"}]}
        await resolver.upstream.close()

    asyncio.run(main())


def test_500_concurrent_identical_lookups_make_one_upstream_query(dns_server):
    """500 callers asking the same question at once cause one query at the real server."""
    dns_server.set_faults(delay_s=0.05)

    async def main():
        resolver, ctx = engine(dns_server.address)
        results = await asyncio.gather(*(call(resolver, ctx, "a", {"name": "host.example.test"}) for _ in range(500)))
        assert {tuple(r["records"]) for r in results} == {("192.0.2.1",)}
        await resolver.upstream.close()

    asyncio.run(main())
    assert dns_server.count("host.example.test", "A") == 1


def test_negative_ttl_comes_from_the_soa_and_is_clamped(dns_server):
    """NXDOMAIN lives min(SOA TTL, MINIMUM) = 60 s here, raised to the negative clamp when lower."""

    async def main():
        clock = FakeClock(time.monotonic())  # the pool times real waits on time.monotonic
        resolver, ctx = engine(dns_server.address, clock=clock)
        first = await call(resolver, ctx, "a", {"name": "nothere.example.test"})
        assert first["status"] == "nxdomain" and first["ttl"] == 60
        clock.now += 59
        assert resolver.peek("nothere.example.test", "A").status == "nxdomain"
        clock.now += 2
        assert resolver.peek("nothere.example.test", "A") is None
        await resolver.upstream.close()

    asyncio.run(main())


def test_stale_answer_served_when_upstream_dies(dns_server):
    """After expiry, a dead upstream gets the old answer back with from=stale (RFC 8767)."""

    async def main():
        clock = FakeClock(time.monotonic())  # the pool times real waits on time.monotonic
        resolver, ctx = engine(dns_server.address, clock=clock)
        fresh = await call(resolver, ctx, "a", {"name": "host.example.test"})
        assert fresh["from"] == "upstream"
        clock.now += fresh["ttl"] + 10
        dns_server.set_faults(drop=True)
        stale = await call(resolver, ctx, "a", {"name": "host.example.test"})
        assert stale["from"] == "stale" and stale["records"] == ["192.0.2.1"]
        await resolver.upstream.close()

    asyncio.run(main())


def test_blackholed_upstream_answers_timeout_by_the_deadline(dns_server):
    """A blackholed upstream gives status timeout within the deadline plus a small margin."""
    dns_server.set_faults(drop=True)

    async def main():
        resolver, ctx = engine(dns_server.address, timeout_s=5.0)
        start = time.monotonic()
        out = await call(resolver, ctx, "fcrdns", {"ip": "192.0.2.1"}, deadline_s=0.3)
        assert out["result"] == "temperror"
        assert time.monotonic() - start < 3.0  # generous: the upstream's own timeout is 5 s
        await resolver.close()
        await resolver.upstream.close()

    asyncio.run(main())


def test_memory_bound_holds_under_ten_times_more_names(dns_server):
    """Asking 10x more distinct names than the memory tier holds keeps it at its bound."""

    async def main():
        resolver, ctx = engine(dns_server.address, memory_entries=20)
        for i in range(200):
            await call(resolver, ctx, "a", {"name": f"n{i}.example.test"})
        assert len(resolver.memory) == 20
        await resolver.upstream.close()

    asyncio.run(main())
