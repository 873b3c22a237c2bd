"""Upstream queries per second on one core: the miss path's own cost (issue 13, item 4).

    python -m bench.upstream_rate --cpu 0               # socket_uses 1 (a socket per query) and 100
    python -m bench.upstream_rate --cpu 0 --queries 50000 --concurrency 64 --uses 1,100 --loop uvloop

The server is a real rbldnsd on loopback answering in ~0 ms (its own
process: its CPU is not ours). The client is one ``UpstreamPool`` on one
event loop asking distinct names (every reply is new to the codec:
``N.0.0.127.bl.test`` for N counting up; every tenth is listed), with
``--concurrency`` queries in flight. Every reply still goes through the
same checks as in service: the connected socket filters server and port,
the socket's table of queries in flight the ID, ``codec.parse_answer`` the
question (RFC 5452 §9.1).

Reported per ``socket_uses``: wall-clock rate, the client's CPU seconds
(``time.process_time``: this process only), and queries per CPU-second —
the "queries/s on one core" figure (goal >= 10,000). ``--cpu`` pins the
client to one core after rbldnsd started (so rbldnsd is not pinned with it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from fastlookup.testing import Rbldnsd, rfc5782_ip4set, soa_line
from fastlookup.upstream import Server, UpstreamPool

__all__ = ["measure", "main"]


def zone() -> str:
    listed = {f"10.{i // 256 % 256}.{i % 256}.{j}": (2, "Listed") for i in range(0, 2000) for j in (1,)}
    return soa_line("bl.test", ttl_s=60, minimum_s=30) + rfc5782_ip4set(listed)


async def _run(server: Server, queries: int, concurrency: int, uses: int) -> tuple[float, float, dict[str, int]]:
    try:
        pool = UpstreamPool([server], timeout_s=1.0, attempts=2, max_in_flight=max(64, concurrency), socket_uses=uses)
    except TypeError:  # a fastlookup before socket reuse (PYTHONPATH=<old tree>): its only behaviour
        pool = UpstreamPool([server], timeout_s=1.0, attempts=2, max_in_flight=max(64, concurrency))
    statuses: dict[str, int] = {}
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < queries:
            i = next_i
            next_i += 1
            name = f"{i % 250 + 1}.{i // 250 % 250}.{i // 62500 % 250}.10.bl.test"
            answer = await pool.query(name, "A", time.monotonic() + 2.0)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1

    # warm-up: sockets, codec caches, the server's own
    await asyncio.gather(*(pool.query(f"{i}.0.0.127.bl.test", "A", time.monotonic() + 2) for i in range(200)))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await pool.close()
    return wall, cpu, statuses


def measure(server: Server, queries: int, concurrency: int, uses: int, loop: str) -> dict:
    """One run: wall s, CPU s, rates and the statuses seen."""
    coro = _run(server, queries, concurrency, uses)
    if loop == "uvloop":
        import uvloop

        wall, cpu, statuses = uvloop.run(coro)
    else:
        wall, cpu, statuses = asyncio.run(coro)
    return {"uses": uses, "wall": wall, "cpu": cpu, "qps": queries / wall, "per_cpu_s": queries / cpu, "statuses": statuses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_rate", description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=30000, help="queries per run (bounded: 1000..1000000)")
    parser.add_argument("--concurrency", type=int, default=64, help="queries in flight")
    parser.add_argument("--uses", default="1,100", help="socket_uses values to compare, comma-separated")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--cpu", type=int, default=None, help="pin this client (not rbldnsd) to this CPU")
    args = parser.parse_args(argv)
    if not 1000 <= args.queries <= 1_000_000 or not 1 <= args.concurrency <= 1024:
        parser.error("--queries must be in 1000..1000000 and --concurrency in 1..1024")
    uses = [int(u) for u in args.uses.split(",")]
    with Rbldnsd({"bl.test": [("ip4set", zone())]}) as rbl:
        server = Server(*rbl.address)
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})  # after rbldnsd started: it keeps every core
        print(f"{args.queries} distinct queries to rbldnsd on loopback, {args.concurrency} in flight, {args.loop}")
        print("| socket_uses | wall s | client CPU s | queries/s (wall) | queries per CPU-second | CPU µs/query | statuses |")
        print("|---:|---:|---:|---:|---:|---:|---|")
        for u in uses:
            r = measure(server, args.queries, args.concurrency, u, args.loop)
            st = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
            print(
                f"| {u} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['qps']:,.0f} | {r['per_cpu_s']:,.0f} | "
                f"{1e6 * r['cpu'] / args.queries:.0f} | {st} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
