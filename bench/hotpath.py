"""The server's per-call Python work for a memory hit, per method, in µs.

    taskset -c 0 python -m bench.hotpath             # 256 client IPs, best chunk of 5 passes
    taskset -c 0 python -m bench.hotpath --calls 5000 --repeat 3

What is timed is the real read callback, ``Connection.data_received``, fed
one request frame at a time on a connection whose transport only counts the
bytes written: a pooled decoder, ``parse_request``, ``rpc.prepare``,
``try_sync`` on a warm memory tier, ``encode_response`` and the write. No
socket and no event loop, so the figure is the service's own Python per
call, the part the 2x-of-the-floor goal (``docs/benchmarks.md``) leaves to
us. Every call must be a memory hit: a miss (a task) fails the run.

The world is ``bench``'s, in small: clients in 198.18.0.0/15 with a PTR that
confirms (85%), one that does not (8%) or none (7%); three DNSBL zones,
bl0 listing every tenth IP (with a TXT); one RHSBL zone listing every tenth
domain. The figure is the best per-call mean over chunks of 1000 calls:
other work shares the machine, and the fastest chunk is closest to the
code's own cost.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.memory_tier import NoUpstream
from fastlookup import rpc
from fastlookup.cache.entry import Entry, TtlPolicy
from fastlookup.cache.memory import MemoryCache, make_key
from fastlookup.checks.zones import ZoneRegistry
from fastlookup.lookup import MISSING, try_sync
from fastlookup.resolver import Resolver
from fastlookup.server import Connection, Server
from fastlookup.stats import Stats
from fastlookup.wire import Decoder, encode_request

__all__ = ["World", "measure", "main"]

DNSBL = ("bl0.bench.test", "bl1.bench.test", "bl2.bench.test")
RHSBL = ("rhs.bench.test",)


class _Transport:
    """Counts what the connection writes; a close means the run is broken."""

    __slots__ = ("writes", "bytes")

    def __init__(self) -> None:
        self.writes = 0
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.bytes += len(data)

    def close(self) -> None:
        raise AssertionError("hotpath: the connection was closed")

    def is_closing(self) -> bool:
        return False


class World:
    """``n`` clients and what the DNS says about them, warmed into one resolver's memory."""

    def __init__(self, n: int = 256) -> None:
        self.ips = [f"198.18.{i >> 8}.{i & 255}" for i in range(n)]
        self.domains = [f"d{i}.test" for i in range(n)]
        self.now = time.monotonic()
        self.resolver = Resolver(NoUpstream(), MemoryCache(100_000), TtlPolicy(), prefetch=False)
        self.ctx = rpc.Context(zones=ZoneRegistry(), stats=Stats(), default_dnsbl=DNSBL, default_rhsbl=RHSBL)
        self.server = Server("/nonexistent/hotpath.sock", self.ctx, self.resolver)

    def _entry(self, name: str, rdtype: str) -> Entry:
        now, ok = self.now, ("ok",)
        if rdtype == "PTR":
            i = _index_of_reverse(name)
            if i % 100 < 7:
                return Entry("nxdomain", (), 3600, now + 3600, now + 3900)
            return Entry(ok[0], (f"h{i}.d{i}.test",), 3600, now + 3600, now + 7200)
        if rdtype == "A" and name.startswith("h"):
            i = int(name[1:].split(".", 1)[0])
            addr = self.ips[i] if i % 100 >= 15 else "192.0.2.1"  # 8% do not resolve back
            return Entry("ok", (addr,), 3600, now + 3600, now + 7200)
        if name.endswith(".bl0.bench.test"):
            i = _index_of_reverse(name)
            if i % 10 == 0:
                value = "127.0.0.2" if rdtype == "A" else f"Listed by bl0.bench.test: {self.ips[i]}"
                return Entry("ok", (value,), 3600, now + 3600, now + 7200)
        if name.endswith(".rhs.bench.test") and int(name[1:].split(".", 1)[0]) % 10 == 0:
            value = "127.0.0.2" if rdtype == "A" else f"Listed: {name}"
            return Entry("ok", (value,), 3600, now + 3600, now + 7200)
        return Entry("nxdomain", (), 3600, now + 3600, now + 3900)

    def warm(self, method: str, args: dict) -> None:
        """Answer every question a call asks until it completes from memory."""
        for _ in range(8):
            result, lookup = try_sync(self.resolver, rpc.prepare(self.ctx, method, args))
            if result is not MISSING:
                return
            for name, rdtype in lookup.missing:
                self.resolver.memory.put(make_key(name, rdtype), self._entry(name, rdtype))
        raise AssertionError(f"hotpath: {method} kept asking new questions")

    def calls(self, method: str) -> list[tuple[str, dict]]:
        n = len(self.ips)
        if method in ("ptr", "fcrdns", "dnsbl"):
            return [(method, {"ip": ip}) for ip in self.ips]
        if method == "dnsbl-z":  # the zones named in the call, as a client that picks its own lists does
            return [("dnsbl", {"ip": ip, "zones": list(DNSBL)}) for ip in self.ips]
        if method == "rhsbl":
            return [("rhsbl", {"domain": d}) for d in self.domains]
        if method == "batch":
            return [
                ("batch", {"calls": [["ptr", {"ip": self.ips[i]}], ["fcrdns", {"ip": self.ips[i]}],
                                     ["dnsbl", {"ip": self.ips[i]}], ["rhsbl", {"domain": self.domains[i]}]]})
                for i in range(n)
            ]
        raise ValueError(method)


def _index_of_reverse(name: str) -> int:
    """The client index of ``4.3.18.198.<suffix>`` (the IP 198.18.3.4 is index 3*256+4)."""
    d, c = name.split(".", 2)[:2]
    return int(c) * 256 + int(d)


METHODS = ("ptr", "fcrdns", "dnsbl", "dnsbl-z", "rhsbl", "batch")


def measure(world: World, method: str, calls: int = 10_000, repeat: int = 5, chunk: int = 1000) -> float:
    """Best per-call µs of ``data_received`` for ``method``'s memory-hit calls."""
    requests = world.calls(method)
    for name, args in requests:
        world.warm(name, args)
    frames = [encode_request((i % 1000) + 1, name, args) for i, (name, args) in enumerate(requests)]
    frames = (frames * (calls // len(frames) + 1))[:calls]
    conn = Connection(world.server)
    transport = conn.transport = _Transport()
    world.server.decoders.append(Decoder(world.server.max_frame, max_array_len=world.server.max_array_len))
    feed = conn.data_received
    perf = time.perf_counter
    best = float("inf")
    for _ in range(repeat):
        for start in range(0, len(frames), chunk):
            part = frames[start : start + chunk]
            t0 = perf()
            for frame in part:
                feed(frame)
            best = min(best, (perf() - t0) / len(part))
    if transport.writes != repeat * len(frames) or world.server.tasks or world.server.in_flight:
        raise AssertionError(f"hotpath: {method}: not every call was answered from memory")
    errors = world.ctx.stats.total("rpc_errors")
    if errors:
        raise AssertionError(f"hotpath: {method}: {errors} calls answered an error")
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls per method per pass (default 10000)")
    parser.add_argument("--repeat", type=int, default=5, help="passes (default 5)")
    parser.add_argument("--ips", type=int, default=256, help="distinct clients (default 256)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    args = parser.parse_args(argv)
    if not 1 <= args.ips <= 65536 or args.calls < 1000 or args.repeat < 1:
        parser.error("--ips 1..65536, --calls >= 1000, --repeat >= 1")
    methods = [m for m in args.methods.split(",") if m]
    if any(m not in METHODS for m in methods):
        parser.error(f"--methods: choose from {','.join(METHODS)}")
    world = World(args.ips)
    import os

    print(f"CPU affinity {sorted(os.sched_getaffinity(0))}; {args.ips} clients; best chunk of 1000 over {args.repeat} x {args.calls} calls")
    print(f"{'method':<8} {'µs/call':>8}")
    for method in methods:
        print(f"{method:<8} {measure(world, method, args.calls, args.repeat):>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
