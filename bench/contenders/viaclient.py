"""Contenders measured through fastlookup's sync client: the floor and fastlookup itself.

One client per thread (one MTA process, one connection). A check is four
calls -- ``ptr``, ``fcrdns``, ``dnsbl``, ``rhsbl`` with the service's
default zones -- or, batched, one ``batch`` call holding the four. Every
part of the answer (PTR names, FCrDNS result, the zones listing the IP and
the domain with their reply text) is compared with the workload
(``verify.judge``): a fast wrong answer counts as an error, a fail-open one
(a zone in ``unknown``, a timeout) as an unknown, never as a success.

* ``floor``: the bare echo server (``bench.floor``) -- the limit.
* ``floor-batched``: the same server, one ``batch`` per check: the limit
  the batched rows are compared with.
* ``fastlookup-cold``: a fresh service in front of a fresh unbound, for
  every concurrency level: empty caches, the first seconds after a start.
* ``fastlookup-memory``: a service that answered every host once before
  (a warm-up pass, not measured): every lookup is a memory hit.
* ``fastlookup-batched``: the same warm service, one ``batch`` per check.
* ``fastlookup-redis``: a fleet neighbour (the warm service, with Redis)
  filled Redis; the measured service starts empty and keeps at most 16
  entries in memory (the config minimum). Only checks whose answers came
  from the Redis tier are counted (the PTR answer's ``from`` says which tier
  answered; a check answered from those 16 memory entries is *excluded*,
  and the row says how many), so the row measures Redis hits only.
* ``fastlookup-redis-batched``: the same set-up (a service of its own), one
  ``batch`` per check: what a batching hook gets from the Redis tier.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from ..load import EXCLUDE
from ..services import FastlookupService
from .base import Contender, WrongAnswer
from .verify import judge, service_facts

if TYPE_CHECKING:
    from ..runner import Run

__all__ = ["FloorContender", "FastlookupContender", "client_missing"]


def client_missing() -> str | None:
    if importlib.util.find_spec("fastlookup.client") is None:
        return "fastlookup.client (the sync client) is not in this tree yet"
    return None


def make_check(client: Any, batched: bool, workload, *, redis_only: bool = False):
    """The check function of one thread's client; ``redis_only`` excludes checks not answered by Redis."""

    def finish(host, ptr, fcrdns, dnsbl, rhsbl):
        judge(workload, host, service_facts(ptr, fcrdns, dnsbl, rhsbl))
        if redis_only and ptr.get("from") != "redis":
            return EXCLUDE
        return None

    if batched:
        batch = client.batch

        def check(host):
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
            return finish(host, *(r for _, r in results))

        return check
    ptr, fcrdns, dnsbl, rhsbl = client.ptr, client.fcrdns, client.dnsbl, client.rhsbl

    def check(host):
        return finish(host, ptr(host.ip), fcrdns(host.ip), dnsbl(host.ip), rhsbl(host.domain))

    return check


class _ViaClient(Contender):
    mode = "threads"
    batched = False

    redis_only = False

    def __init__(self) -> None:
        self.socket = ""
        self.timeout_s = 3.0
        self.workload = None

    def worker(self):
        from fastlookup.client import Client

        client = Client(self.socket, timeout=self.timeout_s)
        client.ping()  # connect before the clock starts
        close = getattr(client, "close", lambda: None)
        return make_check(client, self.batched, self.workload, redis_only=self.redis_only), close


class FloorContender(_ViaClient):
    name = "floor"
    note = "bare uvloop msgpack echo server answering from a dict, same sync client: the limit"
    cpu_of = "the floor server process"

    def __init__(self, batched: bool = False) -> None:
        super().__init__()
        self.batched = batched
        if batched:
            self.name = "floor-batched"
            self.note = "the floor server, one batch call per check: the limit of the batched rows"

    def prepare(self, run: "Run") -> str | None:
        reason = client_missing()
        if reason:
            return reason
        self.floor = run.floor()
        self.socket = self.floor.socket
        self.timeout_s = run.client_timeout_s
        self.workload = run.workload
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
        self.redis_only = self.kind == "redis"
        self.service: FastlookupService | None = None
        self._own_unbound = None
        self.note = {
            "cold": "fresh service and fresh unbound per concurrency level: empty caches",
            "memory": "warm memory (every host asked once before), one call per lookup",
            "batched": "warm memory, one batch call per check",
            "redis": "memory capped at 16 entries, Redis filled by a neighbour service; only checks answered "
            "by the Redis tier counted (the others are 'excluded')",
            "redis-batched": "as fastlookup-redis, one batch call per check; only Redis-tier answers counted",
        }[kind]

    def prepare(self, run: "Run") -> str | None:
        reason = client_missing()
        if reason:
            return reason
        self.timeout_s = run.client_timeout_s
        self.workload = run.workload
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

    def pids(self) -> dict[str, int]:
        if self.kind in ("cold", "redis") and self.service is not None and self.service.child is not None:
            return {self.service.name: self.service.pid}  # its own unbound is one of the world's
        return {}

    def cpu_seconds(self) -> float:
        return self.service.cpu_seconds() if self.service else 0.0

    def resolver_cpu_seconds(self) -> float:
        unbound = self._own_unbound if self.kind in ("cold", "redis") else self._run.warm_unbound()
        return unbound.cpu_seconds() if unbound is not None else 0.0

    def service_stats(self) -> dict:
        return self.service.stats() if self.service else {}
