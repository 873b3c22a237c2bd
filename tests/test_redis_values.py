"""Values read from Redis are input: validated on read (issue 12 items 14-15), on a real redis-server."""

from __future__ import annotations

import asyncio
import time

import msgpack
import pytest

from fastlookup.cache.entry import Entry, TtlPolicy
from fastlookup.cache.redis_codec import SCHEMA
from fastlookup.cache.redis_tier import RedisTier
from fastlookup.config import RedisConfig
from fastlookup.stats import Stats
from fastlookup.testing.redis import RedisServer

from fixtures_servers import start_or_skip

PREFIX = "t12:"


def tier(url: str, **kw) -> RedisTier:
    t = RedisTier.from_config(RedisConfig(url=url, key_prefix=PREFIX, **kw), stats=Stats())
    t.set_ttl_policy(TtlPolicy(max_ttl_s=86400, stale_s=3600, negative_max_ttl_s=3600, stale_negative_s=300))
    return t


def set_raw(srv: RedisServer, key: str, raw: bytes) -> None:
    """SET a raw (binary) value with redis-py: the test server's helper sends text only."""
    import redis

    client = redis.Redis.from_url(srv.url)
    try:
        client.set(key, raw)
    finally:
        client.close()


def value(status="ok", records=("127.0.0.2",), ttl=300, stored=None, expires=None, stale=None) -> bytes:
    now = time.time()
    stored = now if stored is None else stored
    expires = now + 300 if expires is None else expires
    stale = expires + 3600 if stale is None else stale
    return msgpack.packb([SCHEMA, status, list(records), ttl, stored, expires, stale], use_bin_type=True)


NOW = time.time()
#: (case id, cache key, raw value): each must be a counted corrupt value, i.e. a miss.
CORRUPT_CASES = [
    ("expires-inf", "A:2.0.0.127.bl.test", value(expires=float("inf"), stale=float("inf"))),
    ("stale-inf", "A:2.0.0.127.bl.test", value(stale=float("inf"))),
    ("expires-nan", "A:2.0.0.127.bl.test", value(expires=float("nan"))),
    ("stored-in-the-future", "A:2.0.0.127.bl.test", value(stored=NOW + 86400 * 365, expires=NOW + 86400 * 366)),
    ("string-as-a-record", "A:2.0.0.127.bl.test", value(records=("hello world",))),
    ("scoped-aaaa", "AAAA:example.test", value(records=("fe80::1%eth0",))),
    ("name-with-space", "PTR:2.0.0.192.in-addr.arpa", value(records=("a b.example",))),
    ("bad-mx", "MX:example.test", value(records=("mx.example.test",))),
    ("100000-records", "A:2.0.0.127.bl.test", value(records=["127.0.0.2"] * 100_000)),
    ("1MB-value", "TXT:example.test", value(records=("x" * 1_000_000,))),
    ("record-not-a-string", "A:2.0.0.127.bl.test", msgpack.packb([SCHEMA, "ok", [1], 300, NOW, NOW + 300, NOW + 600])),
]


@pytest.fixture(scope="module")
def redis_srv():
    """One redis-server for this module (flushed by each test)."""
    srv = RedisServer()
    start_or_skip(srv.start, "redis_server")
    yield srv
    srv.stop()


@pytest.mark.parametrize("key, raw", [c[1:] for c in CORRUPT_CASES], ids=[c[0] for c in CORRUPT_CASES])
def test_hostile_redis_values_are_counted_corrupt_misses(redis_srv, key, raw):
    """A Redis value with non-finite or future times, wrong-shaped, too many or too big records is a counted miss."""
    redis_srv.command("FLUSHALL")
    set_raw(redis_srv, PREFIX + "v1:" + key, raw)

    async def main():
        t = tier(redis_srv.url)
        got = await t.get(key)
        again = await t.get(key)  # no exception, no crash later either
        await t.close()
        return got, again, t.stats

    got, again, stats = asyncio.run(main())
    assert got is None and again is None
    assert stats.total("redis_corrupt") == 2


def test_far_future_expiry_is_clamped_by_this_instances_policy(redis_srv):
    """A value claiming 299,999,999 s of life is served with at most this instance's max_ttl_s (and stale_s)."""
    redis_srv.command("FLUSHALL")
    key = "A:2.0.0.127.bl.test"
    set_raw(redis_srv, PREFIX + "v1:" + key, value(ttl=299_999_999, expires=NOW + 299_999_999, stale=NOW + 399_999_999))

    async def main():
        t = tier(redis_srv.url)
        before = t.clock()
        got = await t.get(key)
        await t.close()
        return before, got

    before, got = asyncio.run(main())
    assert isinstance(got, Entry) and got.records == ("127.0.0.2",)
    assert got.ttl == 86400
    assert got.expires - before <= 86400 + 1
    assert got.stale_until - got.expires <= 3600 + 1e-6


def test_full_redis_keeps_reads_working(redis_srv):
    """Under maxmemory + noeviction, failing writes do not open the breaker: reads still hit."""
    srv = RedisServer(extra_args=["--maxmemory-policy", "noeviction"])
    start_or_skip(srv.start, "redis_server (noeviction)")
    try:
        key = "A:2.0.0.127.bl.test"
        set_raw(srv, PREFIX + "v1:" + key, value())
        srv.command("CONFIG", "SET", "maxmemory", "1")  # full: from here on every write is refused with OOM

        async def main():
            t = tier(srv.url, breaker_failures=3, breaker_reset_s=30)
            now = t.clock()
            for i in range(6):  # write-only round trips, each refused by OOM
                t.put(f"A:{i}.0.0.127.other.test", Entry("ok", ("127.0.0.2",), 300, now + 300, now + 3900))
                await t.drain()
            got = await t.get(key)
            await t.close()
            return got, t.stats

        got, stats = asyncio.run(main())
        assert stats.total("redis_errors") >= 3, "the writes did not fail: Redis was not full"
        assert stats.gauges["redis_breaker_open"][()] == 0
        assert got is not None and got.records == ("127.0.0.2",)
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "poison, served",
    [
        (value(expires=float("inf"), stale=float("inf"), records=("192.0.2.99",)), ["192.0.2.1"]),
        (value(expires=1e300, stale=1e300, records=("192.0.2.99",)), ["192.0.2.99"]),  # finite: served, ttl clamped
        (value(records=("not an address",)), ["192.0.2.1"]),
        (value(records=["192.0.2.99"] * 100_000), ["192.0.2.1"]),
    ],
    ids=["expires-inf", "expires-1e300", "string-record", "100000-records"],
)
def test_a_poisoned_redis_value_is_never_internal_for_the_service(make_service, redis_srv, poison, served):
    """A poisoned Redis value is a miss (upstream's answer) or, if finite and well-formed, served clamped: never internal."""
    redis_srv.command("FLUSHALL")
    set_raw(redis_srv, "fl:1:v1:A:host.example.test", poison)
    svc = make_service(redis={"url": redis_srv.url, "key_prefix": "fl:1:"}, cache={"memory_entries": 16})
    with svc.client(timeout=5) as client:
        for _ in range(3):
            answer = client.a("host.example.test")
            assert answer["status"] == "ok" and answer["records"] == served
            assert answer["ttl"] <= 86400
    assert svc.call("stats").get("rpc_errors/internal", 0) == 0
