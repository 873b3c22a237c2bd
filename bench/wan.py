"""Upstream at real-world latencies: dead servers in the list, and a fleet on one Redis (issue 13).

    python -m bench.wan                                    # both tables, defaults below
    python -m bench.wan --table dead --good-ms 20 --misses 100
    python -m bench.wan --table fleet --delays 20,100,300,700 --names 20
    python -m bench.wan --table notify --trials 200

Everything is real and on loopback: ``fastlookup serve`` processes with the
default settings (only ``[upstream] servers`` and ``[redis] url`` set), the
project's test DNS server as its own process answering every query after
``--good-ms`` / each delay, a real redis-server. A *dead* server is a UDP
socket this script binds and never reads: queries vanish without an ICMP
error, like a blackholed resolver.

``dead`` table: one service per upstream list (GOOD; DEAD,GOOD;
DEAD,DEAD,GOOD) asked ``--misses`` distinct cold names one after another;
latency percentiles of all calls and of the calls after the first 10
(the goal: p50 <= GOOD's RTT + 5 ms after the first 10), and how many
ended as ``timeout``.

``fleet`` table: for each delay, 1 instance and then 4 instances sharing one
redis-server; every instance asks every one of ``--names`` cold names at the
same moment (one thread per call, one barrier), after one warm-up call per instance
(connections open). Upstream queries per
distinct name (goal <= 1.05), and latency percentiles over all calls (goal
p50 <= delay + 40 ms), then of the winners' calls (answered from upstream)
and the losers' (answered from Redis): the losers' extra wait.

``notify`` table: how long after the winner's answer lands a loser of the
fleet lock has it (goal <= ~20 ms). Two ``RedisTier`` instances of one
process on a real redis-server: the winner claims a key, the loser claims
(loses) and waits, the winner puts an answer after a random 0-100 ms
(or 300 ms); the figure is from ``put`` to the loser's ``wait`` returning:
the write's round trip, the rest of a poll interval, the poll's round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack

from fastlookup.testing import RedisServer
from fastlookup.testing.dnsprocess import DnsServerProcess
from fastlookup.testing.service import ServiceProcess

__all__ = ["dead_table", "fleet_table", "main"]

CONFIG = """
[server]
socket = "{sock}"
[upstream]
servers = [{servers}]
{redis}
[health]
interval_s = 0
"""


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTLOOKUP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def service(tmp: str, tag: str, servers: list[tuple[str, int]], redis_url: str = "") -> ServiceProcess:
    sock = f"{tmp}/{tag}.sock"
    path = f"{tmp}/{tag}.toml"
    redis = f'[redis]\nurl = "{redis_url}"' if redis_url else ""
    with open(path, "w") as fh:
        fh.write(CONFIG.format(sock=sock, servers=", ".join(f'"{h}:{p}"' for h, p in servers), redis=redis))
    return ServiceProcess(["--config", path], socket=sock, env=_env())


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def blackhole() -> socket.socket:
    """A bound UDP socket nobody reads: a dead upstream (no reply, no ICMP)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


# --- dead servers ---------------------------------------------------------------


def dead_table(good_ms: float, misses: int) -> list[str]:
    names = [f"m{i}.wan.test" for i in range(misses)]
    rows = [
        f"Upstream GOOD answers after {good_ms:g} ms; DEAD is blackholed; {misses} distinct cold names asked one after another.",
        "",
        "| upstream | p50 all | p50 after 10 | p90 after 10 | max | timeouts | queries to GOOD |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dead_count in (0, 1, 2):
        with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="fl-wan-") as tmp:
            good = stack.enter_context(
                DnsServerProcess({(n, "A"): ["192.0.2.1"] for n in names}, delay_s=good_ms / 1000)
            )
            holes = [stack.enter_context(blackhole()) for _ in range(dead_count)]
            servers = [h.getsockname() for h in holes] + [good.address]
            svc = stack.enter_context(service(tmp, f"dead{dead_count}", servers))
            lat: list[float] = []
            timeouts = 0
            with svc.client(timeout=5.0) as client:
                for name in names:
                    t0 = time.perf_counter()
                    answer = client.a(name)
                    lat.append((time.perf_counter() - t0) * 1000)
                    timeouts += answer["status"] == "timeout"
            asked = good.count()
        label = ",".join(["DEAD"] * dead_count + ["GOOD"])
        after = lat[10:]
        rows.append(
            f"| `{label}` | {statistics.median(lat):.1f} ms | {statistics.median(after):.1f} ms | {pct(after, 90):.1f} ms "
            f"| {max(lat):.0f} ms | {timeouts} | {asked} |"
        )
        print(rows[-1], flush=True)
    return rows


# --- the fleet ----------------------------------------------------------------------


def ask_all(services: list[ServiceProcess], names: list[str]) -> tuple[list[float], list[str], list[str]]:
    """Every service asks every name at the same moment; latencies (ms), statuses and sources."""
    jobs = [(svc, name) for svc in services for name in names]
    clients = [svc.client(timeout=10.0) for svc, _ in jobs]
    barrier = threading.Barrier(len(jobs))
    lat: list[float] = []
    statuses: list[str] = []
    sources: list[str] = []
    lock = threading.Lock()

    def ask(i: int) -> None:
        client, (_, name) = clients[i], jobs[i]
        barrier.wait()
        t0 = time.perf_counter()
        answer = client.a(name)
        took = (time.perf_counter() - t0) * 1000
        with lock:
            lat.append(took)
            statuses.append(answer["status"])
            sources.append(answer["from"])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(jobs))]
    # 80 client threads hand the GIL to each other: at the default 5 ms switch interval a reply's
    # thread may wait several intervals to run, which the 1-instance rows (20 threads) do not pay.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        sys.setswitchinterval(interval)
    for c in clients:
        c.close()
    return lat, statuses, sources


def fleet_table(delays_ms: list[float], n_names: int, instances: int = 4) -> list[str]:
    rows = [
        f"{n_names} cold names; every instance asks every name at the same moment; upstream answers after the delay.",
        "",
        "| upstream delay | instances | queries per name | p50 | p99 | max | p50 winners | p50 losers | not ok | takeovers | Redis errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for delay in delays_ms:
        for count in (1, instances):
            names = [f"c{i}.d{int(delay)}.n{count}.wan.test" for i in range(n_names)]
            with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="fl-wan-") as tmp:
                dns = stack.enter_context(DnsServerProcess({(n, "A"): ["192.0.2.7"] for n in names}, delay_s=delay / 1000))
                redis = RedisServer()
                redis.start()
                stack.callback(redis.stop)
                services = [
                    stack.enter_context(service(tmp, f"f{i}", [dns.address], redis.url)) for i in range(count)
                ]
                for i, svc in enumerate(services):  # warm: client and Redis connections open, codec loaded
                    with svc.client(timeout=5.0) as c:
                        c.a(f"warm{i}.wan.test")
                dns.reset_counts()
                lat, statuses, sources = ask_all(services, names)
                asked = dns.count()
                takeovers = 0
                redis_errors = 0
                for svc in services:
                    with svc.client(timeout=2.0) as c:
                        st = c.stats()
                    takeovers += st.get("fleet_takeovers", 0)
                    redis_errors += st.get("redis_errors", 0)
                    if os.environ.get("WAN_DEBUG"):
                        print({k: v for k, v in st.items() if k.startswith(("redis_", "fleet_"))}, flush=True)
            bad = sum(s != "ok" for s in statuses)
            won = [t for t, src in zip(lat, sources) if src == "upstream"]
            lost = [t for t, src in zip(lat, sources) if src == "redis"]
            lost_p50 = f"{pct(lost, 50):.0f} ms" if lost else "—"
            rows.append(
                f"| {delay:g} ms | {count} | {asked / n_names:.2f} | {pct(lat, 50):.0f} ms | {pct(lat, 99):.0f} ms "
                f"| {max(lat):.0f} ms | {pct(won, 50):.0f} ms | {lost_p50} | {bad} | {takeovers} | {redis_errors} |"
            )
            print(rows[-1], flush=True)
    return rows


# --- how soon a loser learns ----------------------------------------------------------


async def _notify_delays(redis_url: str, trials: int, fetch_s: float) -> list[float]:
    import random

    from fastlookup.cache.entry import Entry
    from fastlookup.cache.redis_tier import RedisTier
    from fastlookup.config import RedisConfig

    cfg = RedisConfig(url=redis_url)
    winner, loser = RedisTier.from_config(cfg), RedisTier.from_config(cfg)
    out: list[float] = []
    try:
        for i in range(trials):
            key = f"A:n{i}.{fetch_s:g}.wan.test"
            assert await winner.claim(key) and not await loser.claim(key)
            waiting = asyncio.ensure_future(loser.wait(key, 5.0))
            await asyncio.sleep(random.uniform(0, fetch_s))  # the winner's upstream fetch
            now = winner.clock()
            t0 = time.perf_counter()
            winner.put(key, Entry("ok", ("192.0.2.1",), 300, now + 300, now + 3600))
            got = await waiting
            out.append((time.perf_counter() - t0) * 1000)
            assert got is not None, "the loser did not get the winner's answer"
    finally:
        await winner.close()
        await loser.close()
    return out


def notify_table(trials: int) -> list[str]:
    rows = [
        f"From the winner's put to the loser's wait returning; {trials} trials per row, one process, real redis-server.",
        "",
        "| winner's fetch | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|",
    ]
    redis = RedisServer()
    redis.start()
    try:
        for fetch_s in (0.1, 0.3):
            d = asyncio.run(_notify_delays(redis.url, trials, fetch_s))
            rows.append(
                f"| uniform 0-{fetch_s * 1000:.0f} ms | {pct(d, 50):.1f} ms | {pct(d, 90):.1f} ms | {pct(d, 99):.1f} ms "
                f"| {max(d):.1f} ms |"
            )
            print(rows[-1], flush=True)
    finally:
        redis.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wan", description=__doc__.split("\n")[0])
    parser.add_argument("--table", choices=("dead", "fleet", "notify", "both"), default="both",
                        help="both = dead and fleet")
    parser.add_argument("--trials", type=int, default=200, help="trials per row of the notify table (10..5000)")
    parser.add_argument("--good-ms", type=float, default=20.0, help="GOOD's answer delay in the dead-server table")
    parser.add_argument("--misses", type=int, default=100, help="distinct cold names in the dead-server table (20..2000)")
    parser.add_argument("--delays", default="20,100,300,700", help="upstream delays of the fleet table, ms")
    parser.add_argument("--names", type=int, default=20, help="cold names per fleet run (1..200)")
    args = parser.parse_args(argv)
    if not 20 <= args.misses <= 2000 or not 1 <= args.names <= 200 or not 10 <= args.trials <= 5000:
        parser.error("--misses must be in 20..2000, --names in 1..200, --trials in 10..5000")
    delays = [float(d) for d in args.delays.split(",")]
    if any(not 0 <= d <= 5000 for d in delays):
        parser.error("--delays: each in 0..5000 ms")
    out: list[str] = [f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", ""]
    if args.table in ("dead", "both"):
        out += dead_table(args.good_ms, args.misses) + [""]
    if args.table in ("fleet", "both"):
        out += fleet_table(delays, args.names)
    if args.table == "notify":
        out += notify_table(args.trials)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
