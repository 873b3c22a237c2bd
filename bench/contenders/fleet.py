"""``fastlookup-fleet``: 4 cold fastlookup instances sharing one redis-server, next to one instance.

A relay farm runs several instances on one Redis; the shared tier and its
fleet lock should make one upstream query per distinct question across the
whole fleet, at any upstream latency. Per concurrency level the harness
starts a fresh unbound (the site's resolver, shared by the fleet), and 4
fresh services on the run's redis-server with a key prefix no service used
before (so Redis starts empty for them). The load threads take the
instances in turn (thread ``i`` talks to instance ``i % 4``), so the same
Zipf head reaches all four at once. The row reports
``fleet_upstream_queries_per_distinct_question``: the queries the 4
services sent to their resolver (their own counters, summed) divided by the
distinct questions of the cell (goal <= 1.05), next to the latency
percentiles; ``fastlookup-cold`` is the one-instance row to compare with.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from ..services import FastlookupService
from .viaclient import _ViaClient, client_missing, make_check

if TYPE_CHECKING:
    from ..runner import Run

__all__ = ["FleetContender", "FLEET_SIZE"]

FLEET_SIZE = 4


class FleetContender(_ViaClient):
    name = "fastlookup-fleet"
    note = (f"{FLEET_SIZE} fresh services (empty memory, empty Redis key space) on one redis-server and one fresh "
            "unbound per level; load threads take the instances in turn")
    cpu_of = "the fleet's service processes"

    def __init__(self) -> None:
        super().__init__()
        self.services: list[FastlookupService] = []
        self._unbound = None
        self._turn = itertools.count()

    def prepare(self, run: "Run") -> str | None:
        reason = client_missing() or run.redis_missing()
        if reason:
            return reason
        self.timeout_s = run.client_timeout_s
        self.workload = run.workload
        return None

    def before_level(self, run: "Run", concurrency: int) -> None:
        self._unbound = run.world.new_unbound(f"unbound-for-fleet-{concurrency}")
        for k in range(FLEET_SIZE):
            self.services.append(FastlookupService(
                f"fastlookup-fleet-{concurrency}-{k}", run.workdir, run.workload, self._unbound.address,
                redis_url=run.world.redis.url, key_prefix=f"fl:bench-fleet-{concurrency}:",  # type: ignore[union-attr]
            ).start())

    def after_level(self, run: "Run", concurrency: int) -> None:
        self.finish(run)

    def finish(self, run: "Run") -> None:
        for svc in self.services:
            svc.stop()
        self.services = []
        if self._unbound is not None:
            run.world.drop_unbound(self._unbound)
            self._unbound = None

    def worker(self):
        from fastlookup.client import Client

        svc = self.services[next(self._turn) % len(self.services)]
        client = Client(svc.socket, timeout=self.timeout_s)
        client.ping()
        return make_check(client, False, self.workload), getattr(client, "close", lambda: None)

    def pids(self) -> dict[str, int]:
        return {svc.name: svc.pid for svc in self.services if svc.child is not None}

    def cpu_seconds(self) -> float:
        return sum(svc.cpu_seconds() for svc in self.services)

    def resolver_cpu_seconds(self) -> float:
        return self._unbound.cpu_seconds() if self._unbound is not None else 0.0

    def service_stats(self) -> dict:
        """The fleet's counters, summed over its instances."""
        total: dict[str, Any] = {}
        for svc in self.services:
            for key, value in svc.stats().items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
        return total

    def extra_figures(self, run: "Run", concurrency: int, cell: Any) -> dict:
        return {"fleet_size": FLEET_SIZE}
