"""Figures for the Redis tier (issue 5): a Redis-only hit vs a memory hit, and MGET batching.

    .venv/bin/python -m bench.redis_tier [--rounds 2000] [--cpus auto|none|1] [--skip-socket]

Not a test: bounded in count and time, loopback only, everything started
here (a redis-server, the project's test DNS server, two fastlookup
services) and stopped by pid. Prints two tables:

(a) through the unix socket with the sync client: service A (a ``fastlookup
    serve`` process) answers N names from upstream, which puts them in Redis;
    service B, a fresh process, is asked each name once (memory empty: a
    Redis-only hit, ``from: "redis"``) and then again (a memory hit). Both
    measured in one run, interleaved.
(b) redis-py asyncio (the tier's own client settings): K keys read as K
    sequential GETs, K concurrent GETs, one MGET, one MGET on the tier's lean
    connection (``redis_fastread``), and ``RedisTier.get`` x K in one loop
    turn (MGET + decode + futures), for K = 1, 6, 32.

By default every process is pinned to one CPU (``--cpus auto``) because
placement decides one-call latency on a small VM (``perf-facts.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time

from bench.procs import pin, placement

__all__ = ["main"]


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def _row(label: str, samples_s: list[float], per: int = 1) -> str:
    us = [x * 1e6 for x in samples_s]
    rate = per / statistics.fmean(samples_s) if samples_s else 0.0
    return f"| {label} | {_pct(us, 0.5):.0f} | {_pct(us, 0.9):.0f} | {_pct(us, 0.99):.0f} | {rate:,.0f} |"


# --- (b) batching through redis-py ------------------------------------------


async def _batching(url: str, rounds: int, budget_s: float) -> list[str]:
    from fastlookup.cache.entry import Entry
    from fastlookup.cache.redis_connect import connect
    from fastlookup.cache.redis_tier import RedisTier
    from fastlookup.stats import Stats

    conn = connect(url, timeout_s=1.0)
    client = conn.client
    tier = RedisTier(connect(url, timeout_s=1.0), key_prefix="bench:", timeout_s=1.0, stats=Stats())
    now = time.monotonic()
    names = [f"A:{i}.0.18.198.bench.test" for i in range(32)]
    for name in names:
        tier.put(name, Entry("ok", ("127.0.0.2",), 3600, now + 3600, now + 7200))
    await asyncio.sleep(0.05)
    keys = [tier.keys.value(n) for n in names]
    rows = ["| K keys, method | p50 µs | p90 µs | p99 µs | keys/s |", "|---|---|---|---|---|"]

    async def seq(ks):
        for k in ks:
            await client.get(k)

    async def par(ks):
        await asyncio.gather(*(client.get(k) for k in ks))

    async def mget(ks):
        await client.mget(ks)

    from fastlookup.cache.redis_fastread import FastReader

    lean = FastReader(client)

    async def lean_mget(ks):
        await lean.mget(ks)

    async def via_tier(ns):
        got = await asyncio.gather(*(tier.get(n) for n in ns))
        assert all(g is not None for g in got)

    for k in (1, 6, 32):
        ks, ns = keys[:k], names[:k]
        methods = [("GET x K, one after another", seq, ks), ("GET x K, concurrent", par, ks),
                   ("MGET of K", mget, ks), ("MGET of K, lean connection (`redis_fastread`)", lean_mget, ks),
                   ("RedisTier.get x K, one loop turn", via_tier, ns)]
        for _, fn, arg in methods:  # warm: connections, code paths
            for _ in range(20):
                await fn(arg)
        samples: dict[str, list[float]] = {label: [] for label, _, _ in methods}
        deadline = time.monotonic() + budget_s
        for _ in range(rounds):  # interleaved, so drift hits all methods alike
            for label, fn, arg in methods:
                t0 = time.perf_counter()
                await fn(arg)
                samples[label].append(time.perf_counter() - t0)
            if time.monotonic() > deadline:
                break
        for label, _, _ in methods:
            rows.append(_row(f"K={k}, {label}", samples[label], per=k))
    rows.append(f"tier counters: round trips {tier.stats.total('redis_round_trips')}, "
                f"keys read {tier.stats.total('redis_keys_read')}, hits {tier.stats.total('redis_hits')}")
    await tier.close()
    await lean.aclose()
    await conn.aclose()
    return rows


# --- (a) through the socket -------------------------------------------------------


def _socket_hits(redis_url: str, n: int, budget_s: float) -> list[str]:
    import tempfile

    from fastlookup.client import Client
    from fastlookup.testing.dnsserver import DnsServer
    from fastlookup.testing.dnszone import Zone
    from fastlookup.testing.service import ServiceProcess

    zone = Zone.from_json({"ttl": 3600, "soa": [{"origin": "bench.test", "ttl": 3600, "minimum": 60}], "records": {}})
    names = [f"h{i}.bench.test" for i in range(n)]
    rows = ["| hit through the socket (sync client, `a`) | p50 µs | p90 µs | p99 µs | calls/s |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="fastlookup-bench-redis-") as tmp, DnsServer(zone=zone) as dns:
        for i, name in enumerate(names):
            dns.add(name, "A", [f"198.18.{i >> 8}.{i & 255}"])
        host, port = dns.address
        config = os.path.join(tmp, "fl.toml")
        with open(config, "w") as fh:
            fh.write(
                f'[upstream]\nservers = ["{host}:{port}"]\n[redis]\nurl = "{redis_url}"\ntimeout_s = 0.5\n'
                "[health]\ninterval_s = 0\n[log]\nlevel = \"warning\"\n"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTLOOKUP_")}
        sock_a, sock_b = os.path.join(tmp, "a.sock"), os.path.join(tmp, "b.sock")
        with ServiceProcess(["--config", config, "--socket", sock_a], socket=sock_a, env=env) as a:
            with Client(a.socket, timeout=5.0) as ca:
                for name in names:
                    assert ca.a(name)["from"] == "upstream"
        queries = dns.count()
        # B starts after A has written everything: its memory is empty, Redis holds every name.
        with ServiceProcess(["--config", config, "--socket", sock_b], socket=sock_b, env=env) as b:
            with Client(b.socket, timeout=5.0) as cb:
                redis_s, memory_s = [], []
                for name in names[:20]:  # warm the connections and code paths of B
                    cb.a(name), cb.a(name)
                deadline = time.monotonic() + budget_s
                for name in names[20:]:
                    t0 = time.perf_counter()
                    first = cb.a(name)
                    t1 = time.perf_counter()
                    second = cb.a(name)
                    t2 = time.perf_counter()
                    assert first["from"] == "redis" and second["from"] == "memory", (first, second)
                    redis_s.append(t1 - t0)
                    memory_s.append(t2 - t1)
                    if time.monotonic() > deadline:
                        break
        assert dns.count() == queries, "service B asked upstream: Redis did not answer"
    rows.append(_row("memory hit", memory_s))
    rows.append(_row('Redis-only hit (memory empty, `from: "redis"`)', redis_s))
    rows.append(f"samples: {len(redis_s)} names, each asked once cold (Redis) then warm (memory); upstream queries by B: 0")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_tier", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="samples per method (b) / names (a); default 2000")
    parser.add_argument("--budget-s", type=float, default=10.0, help="time limit per part; default 10 s")
    parser.add_argument("--cpus", default="auto", help="pin to these CPUs: auto (one), none, or e.g. 1 or 0,1")
    parser.add_argument("--skip-socket", action="store_true", help="only part (b)")
    args = parser.parse_args(argv)
    rounds = max(10, min(args.rounds, 20000))
    cpus = pin(args.cpus)

    from fastlookup.testing.redis import RedisServer

    gc.freeze()
    with RedisServer() as rs:
        print(f"# Redis tier figures — {placement(cpus)['note']}; cpus {placement(cpus)['cpus']}")
        print(f"# python {sys.version.split()[0]}, redis-server on 127.0.0.1:{rs.port}\n")
        if not args.skip_socket:
            print("(a) Redis-only hit vs memory hit, through the unix socket\n")
            print("\n".join(_socket_hits(rs.url, rounds + 20, args.budget_s)))
            rs.command("FLUSHALL")
            print()
        print("(b) batching: K keys per read through redis-py asyncio + hiredis\n")
        print("\n".join(asyncio.run(_batching(rs.url, rounds, args.budget_s))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
