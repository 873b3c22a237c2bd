"""Contenders measured through fastlookup's sync client: the floor and fastlookup itself.

One client per thread (one MTA process, one connection). A check is four
calls -- ``ptr``, ``fcrdns``, ``dnsbl``, ``rhsbl`` with the service's
default zones -- or, batched, one ``batch`` call holding the four. The
answer is compared with the workload (listed or not) so a fast wrong answer
counts as an error, not a win.

* ``floor``: the bare echo server (``bench.floor``) -- the limit.
* ``fastlookup-cold``: a fresh service in front of a fresh unbound, for
  every concurrency level: empty caches, the first seconds after a start.
* ``fastlookup-memory``: a service that answered every host once before
  (a warm-up pass, not measured): every lookup is a memory hit.
* ``fastlookup-batched``: the same warm service, one ``batch`` per check.
* ``fastlookup-redis``: a fleet neighbour (the warm service, with Redis)
  filled Redis; the measured service starts empty and keeps at most 16
  entries in memory (the config minimum), so its lookups are Redis hits.
* ``fastlookup-redis-batched``: the same set-up (a service of its own), one
  ``batch`` per check: what a batching hook gets from the Redis tier.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from ..services import FastlookupService
from .base import Contender, WrongAnswer

if TYPE_CHECKING:
    from ..runner import Run

__all__ = ["FloorContender", "FastlookupContender", "client_missing"]


def client_missing() -> str | None:
    if importlib.util.find_spec("fastlookup.client") is None:
        return "fastlookup.client (the sync client) is not in this tree yet"
    return None


def _check_listing(host, dnsbl: Any) -> None:
    if dnsbl["unknown"]:
        return  # a zone could not answer in time (fail open): not a wrong answer
    if bool(dnsbl["listed"]) != bool(host.zones):
        raise WrongAnswer(f"dnsbl {host.ip}: listed={dnsbl['listed']}, the zones list it in {host.zones}")


def make_check(client: Any, batched: bool):
    """The check function of one thread's client."""
    if batched:
        batch = client.batch

        def check(host) -> None:
            results = batch(
                [
                    ("ptr", {"ip": host.ip}),
                    ("fcrdns", {"ip": host.ip}),
                    ("dnsbl", {"ip": host.ip}),
                    ("rhsbl", {"domain": host.domain}),
                ]
            )
            results = results["results"]
            for error, _ in results:
                if error is not None:
                    raise WrongAnswer(f"batch call failed: {error}")
            _check_listing(host, results[2][1])

        return check
    ptr, fcrdns, dnsbl, rhsbl = client.ptr, client.fcrdns, client.dnsbl, client.rhsbl

    def check(host) -> None:
        ptr(host.ip)
        fcrdns(host.ip)
        _check_listing(host, dnsbl(host.ip))
        rhsbl(host.domain)

    return check


class _ViaClient(Contender):
    mode = "threads"
    batched = False

    def __init__(self) -> None:
        self.socket = ""
        self.timeout_s = 3.0

    def worker(self):
        from fastlookup.client import Client

        client = Client(self.socket, timeout=self.timeout_s)
        client.ping()  # connect before the clock starts
        close = getattr(client, "close", lambda: None)
        return make_check(client, self.batched), close


class FloorContender(_ViaClient):
    name = "floor"
    note = "bare uvloop msgpack echo server answering from a dict, same sync client: the limit"
    cpu_of = "the floor server process"

    def prepare(self, run: "Run") -> str | None:
        reason = client_missing()
        if reason:
            return reason
        self.floor = run.floor()
        self.socket = self.floor.socket
        self.timeout_s = run.client_timeout_s
        return None

    def cpu_seconds(self) -> float:
        return self.floor.cpu_seconds()


class FastlookupContender(_ViaClient):
    cpu_of = "the fastlookup service process"

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.name = f"fastlookup-{kind}"
        self.batched = kind in ("batched", "redis-batched")
        self.kind = "redis" if kind == "redis-batched" else kind
        self.service: FastlookupService | None = None
        self._own_unbound = None
        self.note = {
            "cold": "fresh service and fresh unbound per concurrency level: empty caches",
            "memory": "warm memory (every host asked once before), one call per lookup",
            "batched": "warm memory, one batch call per check",
            "redis": "memory empty and capped at 16 entries, Redis filled by a neighbour service",
            "redis-batched": "memory capped at 16 entries, Redis filled by a neighbour service, one batch call per check",
        }[kind]

    def prepare(self, run: "Run") -> str | None:
        reason = client_missing()
        if reason:
            return reason
        self.timeout_s = run.client_timeout_s
        self._run = run
        if self.kind in ("memory", "batched"):
            self.service = run.warm_service()
        elif self.kind == "redis":
            reason = run.redis_missing()
            if reason:
                return reason
            run.warm_service()  # the neighbour that filled Redis
            self._own_unbound = run.world.new_unbound(f"unbound-for-{self.name}")
            self.service = FastlookupService(
                self.name, run.workdir, run.workload, self._own_unbound.address,
                redis_url=run.world.redis.url, memory_entries=16,
            ).start()
        if self.service is not None:
            self.socket = self.service.socket
        return None

    def before_level(self, run: "Run", concurrency: int) -> None:
        if self.kind != "cold":
            return
        self._own_unbound = run.world.new_unbound(f"unbound-for-cold-{concurrency}")
        self.service = FastlookupService(
            f"fastlookup-cold-{concurrency}", run.workdir, run.workload, self._own_unbound.address
        ).start()
        self.socket = self.service.socket

    def after_level(self, run: "Run", concurrency: int) -> None:
        if self.kind == "cold":
            self._stop_own(run)

    def finish(self, run: "Run") -> None:
        if self.kind in ("cold", "redis"):
            self._stop_own(run)

    def _stop_own(self, run: "Run") -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None
        if self._own_unbound is not None:
            run.world.drop_unbound(self._own_unbound)
            self._own_unbound = None

    def cpu_seconds(self) -> float:
        return self.service.cpu_seconds() if self.service else 0.0

    def resolver_cpu_seconds(self) -> float:
        unbound = self._own_unbound if self.kind in ("cold", "redis") else self._run.warm_unbound()
        return unbound.cpu_seconds() if unbound is not None else 0.0

    def service_stats(self) -> dict:
        return self.service.stats() if self.service else {}
