"""Upstream server health: RTT estimate, backoff, best-first order, probes, garbage, hedging.

The arithmetic runs on a fake clock; the behaviour runs against real test DNS
servers (blackholed, slow, garbage-answering) on loopback. Counts are asserted
here; timings are the benchmark's (``bench/wan.py``), except generous bounds.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from fastlookup.stats import Stats
from fastlookup.testing import DnsServer
from fastlookup.upstream import Server, UpstreamPool
from fastlookup.upstream.health import DOWN, UNKNOWN, UP, ServerHealth

RECORDS = {("host.example.test", "A"): ["192.0.2.1"]}
NAME = "host.example.test"


def server_of(srv: DnsServer) -> Server:
    host, port = srv.address
    return Server(host, port)


@pytest.fixture
def servers():
    """Three independent test DNS servers with the same zone, faults set per test."""
    with DnsServer(RECORDS) as a, DnsServer(RECORDS) as b, DnsServer(RECORDS) as c:
        yield a, b, c
        for srv in (a, b, c):
            assert srv.errors == []


def health(**kw) -> ServerHealth:
    args = {"ceiling_s": 0.8, "floor_s": 0.05, "probe_min_s": 1.0, "probe_max_s": 8.0} | kw
    return ServerHealth(**args)


# -- the arithmetic (fake clock) ---------------------------------------------------


@pytest.mark.parametrize(
    ("events", "state", "rto", "down_until"),
    [
        ([], UNKNOWN, 0.8, 0.0),  # unknown: the ceiling, never cut a slow server short
        ([("rtt", 0.1)], UP, 0.1 + 4 * 0.05, 0.0),  # first sample: rttvar = rtt/2
        ([("rtt", 0.001)], UP, 0.001 + 0.05, 0.0),  # the floor
        ([("rtt", 0.7)], UP, 0.8, 0.0),  # capped by the ceiling
        ([("rtt", 0.010), ("timeout", 100.0)], DOWN, (0.010 + 0.05) * 2, 101.0),
        ([("rtt", 0.010), ("timeout", 100.0), ("timeout", 101.0)], DOWN, (0.010 + 0.05) * 4, 103.0),
        ([("timeout", 0.0)] * 6, DOWN, 0.8, 8.0),  # backoff capped by probe_max_s; unmeasured: ceiling
        ([("timeout", 0.0), ("rtt", 0.020)], UP, 0.020 + 0.05, 0.0),  # any reply brings it back
    ],
)
def test_rtt_timeout_and_backoff_arithmetic(events, state, rto, down_until):
    """RFC 6298 smoothing, the floor and ceiling of a try's timeout, and the doubling backoff of a server that times out."""
    h = health()
    for kind, value in events:
        if kind == "rtt":
            h.sample(value)
        else:
            h.timed_out(value)
    assert (h.state, h.down_until) == (state, pytest.approx(down_until))
    assert h.rto() == pytest.approx(rto)


def test_rank_orders_unknown_then_fastest_then_failing_then_down():
    """Unknown servers sort first (to be measured), then measured ones by srtt, those answering failures later, down ones last."""
    fast, slow, unknown, down, failing = health(), health(), health(), health(), health()
    fast.sample(0.01)
    slow.sample(0.2)
    down.sample(0.001)
    down.timed_out(5.0)
    failing.sample(0.001)
    failing.replied(False)
    ranked = sorted([down, failing, slow, fast, unknown], key=lambda h: h.rank(0.0))
    assert ranked == [unknown, fast, slow, failing, down]
    failing.sample(0.001)
    failing.replied(True)  # one good answer and it is back in its RTT place
    assert failing.rank(0.0) < fast.rank(0.0)


def test_smoothing_follows_a_changed_rtt():
    """After a server slows down, srtt moves towards the new RTT sample by sample."""
    h = health()
    h.sample(0.01)
    for _ in range(40):
        h.sample(0.3)
    assert h.srtt == pytest.approx(0.3, rel=0.01)


# -- real servers ---------------------------------------------------------------------


async def ask_many(pool: UpstreamPool, n: int, within_s: float = 3.0) -> list[str]:
    out = []
    for _ in range(n):
        out.append((await pool.query(NAME, "A", time.monotonic() + within_s)).status)
    return out


@pytest.mark.parametrize("dead_count", [1, 2])
def test_dead_servers_are_learned_and_avoided(servers, dead_count):
    """With blackholed servers before a working one, every query is answered and each dead server is asked once."""
    *dead, good = servers[: dead_count + 1]
    for srv in dead:
        srv.set_faults(drop=True)
    stats = Stats()
    pool = UpstreamPool(
        [server_of(s) for s in (*dead, good)], timeout_s=0.15, attempts=2, probe_min_s=60, explore_share=0, stats=stats
    )
    statuses = asyncio.run(ask_many(pool, 20))
    assert statuses == ["ok"] * 20  # the first query tries every server, dead ones included, within its budget
    assert [s.count() for s in dead] == [1] * dead_count
    assert good.count() == 20
    states = pool.health()
    assert [states[server_of(s).label]["state"] for s in (*dead, good)] == [DOWN] * dead_count + [UP]
    assert stats.total("upstream_timeouts") == dead_count
    assert stats.gauges["upstream_server_up"][(server_of(good).label,)] == 1
    assert stats.gauges["upstream_server_up"][(server_of(dead[0]).label,)] == 0
    snap = stats.snapshot()  # what the `stats` RPC returns
    assert snap[f"upstream_server_up/{server_of(dead[0]).label}"] == 0
    assert 0 < snap[f"upstream_srtt_seconds/{server_of(good).label}"] < 0.1
    assert snap[f"upstream_rto_seconds/{server_of(good).label}"] >= 0.05  # the rtt_floor_ms default
    assert snap[f"upstream_timeouts/{server_of(dead[0]).label}"] == 1


def test_dead_server_comes_back_through_the_background_probe(servers):
    """A server that timed out is probed in the background after its backoff and is used again once it answers."""
    dead, good, _ = servers
    dead.set_faults(drop=True)
    stats = Stats()
    pool = UpstreamPool([server_of(dead), server_of(good)], timeout_s=0.2, probe_min_s=0.05, explore_share=0, stats=stats)

    async def main():
        changes: asyncio.Queue = asyncio.Queue()
        pool.on_state = lambda server, state: changes.put_nowait((server, state))
        first = await pool.query(NAME, "A", time.monotonic() + 2)  # the dead one first (unknown, in list order)
        assert await changes.get() == (server_of(dead), DOWN)
        assert await changes.get() == (server_of(good), UP)
        while_down = await ask_many(pool, 5)
        asked_while_down = dead.count()
        dead.clear_faults()  # it answers again: the next probe finds it
        back = await asyncio.wait_for(changes.get(), 10)
        await pool.close()
        return first.status, while_down, asked_while_down, back

    first, while_down, asked_while_down, back = asyncio.run(main())
    assert (first, while_down) == ("ok", ["ok"] * 5)
    assert back == (server_of(dead), UP)
    assert stats.counters["upstream_probes"][(server_of(dead).label, "up")] == 1
    assert good.count() == 6  # while down, no query went to the dead server first
    probes = stats.counters["upstream_probes"]
    label = server_of(dead).label
    assert dead.count() == 1 + probes[(label, "up")] + probes[(label, "down")]  # its first try, then probes only


def test_garbage_reply_fails_that_server_at_once(servers):
    """A reply from the right server, ID and question that does not parse is that server's failure: the next try starts at once."""
    broken, good, _ = servers
    broken.set_faults(garbage=True)
    stats = Stats()
    pool = UpstreamPool([server_of(broken), server_of(good)], timeout_s=2.0, explore_share=0, stats=stats)

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        answer = await pool.query(NAME, "A", time.monotonic() + 5)
        return answer, loop.time() - t0

    answer, elapsed = asyncio.run(main())
    assert answer.ok and answer.records == ("192.0.2.1",)
    assert elapsed < 1.0  # not the 2 s try timeout
    assert (broken.count(), good.count()) == (1, 1)
    assert stats.counters["upstream_errors"][(server_of(broken).label, "garbage")] == 1
    assert stats.total("upstream_timeouts") == 0
    statuses = asyncio.run(ask_many(pool, 10))
    assert statuses == ["ok"] * 10
    assert (broken.count(), good.count()) == (1, 11)  # the garbage server is now asked after the good one


def test_only_server_answering_garbage_gives_error_not_timeout(servers):
    """With no other server, garbage replies end the query as `error` at once rather than waiting out every try."""
    broken = servers[0]
    broken.set_faults(garbage=True)
    pool = UpstreamPool([server_of(broken)], timeout_s=2.0, attempts=2)
    answer = asyncio.run(pool.query(NAME, "A", time.monotonic() + 5))
    assert answer.status == "error"
    assert broken.count() == 2


def test_hedge_asks_the_next_server_when_a_reply_is_late(servers):
    """With hedging on, a reply later than the server's usual RTT band sends the question to the next server too, counted."""
    slow, fast, _ = servers
    stats = Stats()
    pool = UpstreamPool([server_of(slow), server_of(fast)], timeout_s=1.0, hedge=True, explore_share=0, stats=stats)

    async def main():
        fast.set_faults(delay_s=0.03)
        await pool.query(NAME, "A", time.monotonic() + 2)  # measures `slow` (unknown, first in the list): ~0 ms
        await pool.query(NAME, "A", time.monotonic() + 2)  # measures `fast`: 30 ms
        slow.set_faults(delay_s=0.5)  # now the one measured faster is late
        fast.clear_faults()
        return await pool.query(NAME, "A", time.monotonic() + 2)

    answer = asyncio.run(main())
    assert answer.ok
    assert stats.counters["upstream_hedges"][(server_of(slow).label,)] == 1
    assert (slow.count(), fast.count()) == (2, 2)
    assert stats.total("upstream_timeouts") == 0  # the hedge answered before `slow` passed its rto


@pytest.mark.parametrize("n_servers", [1, 2])
def test_slow_answer_past_the_rto_does_not_take_a_server_down(servers, n_servers):
    """A reply later than the try timeout but within timeout_s (a resolver's cold lookup) is used, and the server stays up."""
    used = servers[:n_servers]
    for srv in used:
        srv.add("cold.example.test", "A", ["192.0.2.9"])
        srv.set_faults("cold.example.test", delay_s=0.3)
    stats = Stats()
    pool = UpstreamPool([server_of(s) for s in used], timeout_s=1.0, explore_share=0, stats=stats)
    states: list[tuple] = []

    async def main():
        pool.on_state = lambda server, state: states.append((server, state))
        for _ in range(3):  # measured: ~0 ms, so the rto is the 50 ms floor
            await pool.query(NAME, "A", time.monotonic() + 2)
        return await pool.query("cold.example.test", "A", time.monotonic() + 2)

    answer = asyncio.run(main())
    assert answer.ok and answer.records == ("192.0.2.9",)
    assert DOWN not in [state for _, state in states]
    assert all(h["state"] == UP for h in pool.health().values())
    # One server: asked once, no early retry to the same server. Two: the second is asked at the first's rto.
    assert [s.count("cold.example.test") for s in used] == [1] * n_servers
    assert stats.total("upstream_timeouts") == n_servers - 1


def test_a_new_pool_inherits_what_the_old_one_measured(servers):
    """A pool built on reload starts with the RTT the old pool measured for the servers both have, not from scratch."""
    a, b, c = servers
    b.set_faults(delay_s=0.02)
    old = UpstreamPool([server_of(a), server_of(b)], explore_share=0)

    async def main():
        await old.query(NAME, "A", time.monotonic() + 2)
        await old.query(NAME, "A", time.monotonic() + 2)  # both measured: a ~0 ms, b ~20 ms
        new = UpstreamPool([server_of(b), server_of(c)], explore_share=0)  # c is new, unmeasured
        new.inherit(old)
        return new.health()

    health_ = asyncio.run(main())
    assert health_[server_of(b).label]["state"] == UP and health_[server_of(b).label]["srtt_s"] >= 0.015
    assert health_[server_of(c).label]["state"] == UNKNOWN
