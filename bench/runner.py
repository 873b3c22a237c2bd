"""One benchmark run: the world, the shared services, and every contender at every level.

``Run`` owns what several contenders share -- the upstream world, the floor
server, the warm fastlookup service (which is also the fleet neighbour that
fills Redis) -- and stops all of it in ``close()``. ``measure(contender)``
runs one contender at each concurrency level and returns its rows; a
contender that cannot run gets skipped rows saying why, and the run goes on.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

from fastlookup.testing._proc import ServerStartError, wait_until

from .contenders import Contender
from .contenders.viaclient import make_check
from .figures import make_row, skipped_row
from .load import Cell, run_async, run_threads
from .procs import cpu_seconds
from .progress import Progress
from .services import FastlookupService, FloorService
from .workload import Workload, make_workload
from .world import World

__all__ = ["Settings", "Run", "MODES"]


@dataclass(frozen=True)
class Settings:
    mode: str
    ips: int
    listed_share: float
    zones: int
    seed: int
    delay_ms: float
    concurrency: tuple[int, ...]
    max_checks: int  # per cell
    max_s: float  # per cell
    warm_max_s: float
    client_timeout_s: float
    contenders: tuple[str, ...]
    delay_spread_ms: float = 0.0


#: Defaults per mode; every flag given on the command line wins.
MODES: dict[str, dict] = {
    "tiny": dict(ips=60, zones=2, concurrency=(1, 4), max_checks=60, max_s=0.5, warm_max_s=20.0),
    "quick": dict(ips=2000, zones=3, concurrency=(1, 8, 32), max_checks=20000, max_s=2.5, warm_max_s=60.0),
    "full": dict(ips=20000, zones=4, concurrency=(1, 8, 32), max_checks=300000, max_s=10.0, warm_max_s=300.0),
}


class Run:
    """The state of one run; use ``start()`` then ``measure()`` per contender, then ``close()``."""

    def __init__(self, settings: Settings, workdir: str, progress: Progress) -> None:
        self.settings = settings
        self.workdir = workdir
        self.progress = progress
        self.client_timeout_s = settings.client_timeout_s
        self.workload: Workload = make_workload(settings.ips, settings.listed_share, settings.zones, settings.seed)
        self.indices = self.workload.stream(settings.max_checks)
        self.stream = [self.workload.hosts[i] for i in self.indices]
        self.world = World(self.workload, workdir, delay_ms=settings.delay_ms, spread_ms=settings.delay_spread_ms)
        self._floor: FloorService | None = None
        self._warm: FastlookupService | None = None
        self._warm_unbound = None
        self.warm_notes: dict[str, str] = {}
        self.service_config = ""  # the warm service's TOML (the cold/redis ones differ as their notes say)

    # --- shared resources ---------------------------------------------------------

    def start(self) -> None:
        self.world.start()

    def floor(self) -> FloorService:
        if self._floor is None:
            self._floor = FloorService(self.workdir, self.workload).start()
        return self._floor

    def redis_missing(self) -> str | None:
        if self.world.redis is None:
            return self.world.redis_error or "redis-server did not start"
        if importlib.util.find_spec("fastlookup.cache.redis_tier") is None:
            return "the Redis tier (fastlookup/cache/redis_tier.py) is not in this tree yet"
        return None

    def warm_service(self) -> FastlookupService:
        """A service that asked every host once (memory warm; Redis filled when there is one)."""
        if self._warm is not None:
            return self._warm
        self._warm_unbound = self.world.new_unbound("unbound-for-warm")
        redis_url = "" if self.redis_missing() else self.world.redis.url  # type: ignore[union-attr]
        svc = FastlookupService("fastlookup-warm", self.workdir, self.workload, self._warm_unbound.address,
                                redis_url=redis_url).start()
        self._warm = svc
        self.service_config = svc.config_text
        from fastlookup.client import Client

        def worker():
            client = Client(svc.socket, timeout=self.client_timeout_s)
            return make_check(client, True, self.workload), getattr(client, "close", lambda: None)

        self.progress.note("warming the fastlookup service: every host once, batched ...")
        hosts = list(self.workload.hosts)
        cell = run_threads(worker, hosts, 8, len(hosts), self.settings.warm_max_s)
        want = self.workload.distinct_questions(range(len(hosts)))
        note = f"warm-up: {cell.checks} hosts in {cell.wall_s:.1f}s, {cell.errors} errors"
        try:
            wait_until(lambda: svc.stats().get("memory_entries", 0) >= want, timeout_s=10, what="warm memory")
        except ServerStartError as exc:
            note += f"; memory not fully warm: {str(exc).splitlines()[0]}"
        if redis_url:
            # Writes to Redis leave in the background: wait until the count stops moving.
            seen = [-1]

            def settled() -> bool:
                now = svc.stats().get("redis_writes", 0)
                done, seen[0] = now == seen[0], now
                return done

            try:
                wait_until(settled, timeout_s=10, what="redis writes to settle")
            except ServerStartError:
                pass
            st = svc.stats()
            note += (f"; {st.get('memory_entries')} answers in memory and {st.get('redis_writes')} written to "
                     f"Redis of {want} distinct questions (redis_errors {st.get('redis_errors', 0)}, "
                     f"redis_skipped {st.get('redis_skipped', 0)})")
        self.warm_notes["fastlookup"] = note
        return svc

    def warm_unbound(self):
        """The unbound behind the warm service (None before it exists)."""
        return self._warm_unbound

    def warm_async(self, contender: Contender, label: str) -> None:
        """One unmeasured pass of ``contender`` over every host (fills unbound's cache)."""
        self.progress.note(f"warming {label}: every host once ...")
        hosts = list(self.workload.hosts)
        cell = run_async(contender.aworker, hosts, 32, len(hosts), self.settings.warm_max_s)
        self.warm_notes[label] = f"warm-up: {cell.checks} hosts in {cell.wall_s:.1f}s, {cell.errors} errors"

    def close(self) -> None:
        """Stop everything this run started (by pid), whatever failed before."""
        for svc in (self._warm, self._floor):
            if svc is not None:
                try:
                    svc.stop()
                except Exception:
                    pass
        self.world.stop()

    def pids(self) -> dict[str, int]:
        out = self.world.pids()
        for name, svc in (("fastlookup-warm", self._warm), ("floor", self._floor)):
            if svc is not None and svc.child is not None:
                out[name] = svc.pid
        return out

    # --- measuring --------------------------------------------------------------------

    def measure(self, contender: Contender) -> list[dict]:
        """Every concurrency level of ``contender``: one row each."""
        s = self.settings
        name = contender.name
        try:
            reason = contender.prepare(self)
        except Exception as exc:  # a contender that cannot start is a skipped row, not a failed run
            reason = f"could not start: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if reason:
            rows = []
            for level in s.concurrency:
                self.progress.start(f"{name} c={level}")
                rows.append(skipped_row(name, level, reason, contender.note))
                self.progress.finish_cell(f"skipped: {reason}")
            contender.finish(self)
            return rows
        rows = []
        try:
            for level in s.concurrency:
                self.progress.start(f"{name} c={level}")
                try:
                    rows.append(self._cell(contender, level))
                    r = rows[-1]
                    self.progress.finish_cell(
                        f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['checks_per_s']} checks/s, "
                        f"{r['upstream_queries_per_check']} upstream q/check"
                        + (f", {r['errors']} errors ({r['first_error']})" if r["errors"] else "")
                    )
                except Exception as exc:
                    reason = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    rows.append(skipped_row(name, level, reason, contender.note))
                    self.progress.finish_cell(reason)
        finally:
            contender.finish(self)
        return rows

    def _process_cpu(self, pids: dict[str, int]) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    def _cell(self, contender: Contender, level: int) -> dict:
        s = self.settings
        world = self.world
        contender.before_level(self, level)
        try:
            # Every server process of the run (the world's, the shared services, the contender's
            # own) plus the client: only this contender works during the cell, so the others add
            # ~0, and cpu_s means the same thing in every row.
            pids = {**self.pids(), **contender.pids()}
            stats0 = contender.service_stats()
            up0 = world.upstream_counts()
            cpu0, client0, upcpu0 = contender.cpu_seconds(), cpu_seconds(), world.upstream_cpu()
            rcpu0 = contender.resolver_cpu_seconds()
            procs0 = self._process_cpu(pids)
            tick = self.progress.tick
            fail_s = s.client_timeout_s
            if contender.mode == "threads":
                cell: Cell = run_threads(contender.worker, self.stream, level, s.max_checks, s.max_s, tick,
                                         fail_s=fail_s)
            else:
                cell = run_async(contender.aworker, self.stream, level, s.max_checks, s.max_s, tick,
                                 check_timeout_s=max(5.0, 2 * s.client_timeout_s), fail_s=fail_s)
            procs1 = self._process_cpu(pids)
            cpu1, client1, upcpu1 = contender.cpu_seconds(), cpu_seconds(), world.upstream_cpu()
            rcpu1 = contender.resolver_cpu_seconds()
            up1 = world.upstream_counts()
            stats1 = contender.service_stats()
        finally:
            contender.after_level(self, level)
        upstream = {k: up1[k] - up0[k] for k in up1}
        by_process = {name: round(procs1[name] - procs0[name], 3) for name in procs1
                      if math.isfinite(procs1[name] - procs0[name])}
        extra = _service_figures(stats0, stats1, cell.checks)
        extra["cpu_s_by_process"] = {k: v for k, v in by_process.items() if v}
        extra["answering_process_cpu_s"] = round(cpu1 - cpu0, 3) if math.isfinite(cpu1 - cpu0) else None
        if (rcpu1 or rcpu0) and math.isfinite(rcpu1 - rcpu0):
            extra["resolver_cpu_s"] = round(rcpu1 - rcpu0, 3)  # the unbound a fastlookup service asks
        if contender.name.startswith("fastlookup") and "fastlookup" in self.warm_notes:
            extra["warm_up"] = self.warm_notes["fastlookup"]
        elif contender.name in self.warm_notes:
            extra["warm_up"] = self.warm_notes[contender.name]
        extra.update(contender.extra_figures(self, level, cell))
        return make_row(
            contender.name,
            level,
            cell,
            upstream=upstream,
            cpu_s=(client1 - client0) + sum(by_process.values()),
            cpu_of="client (the bench process, every thread) + every server process of the run: services, "
            "floor, unbound(s), redis-server, rbldnsd, the test DNS server, delay forwarders",
            client_cpu_s=client1 - client0,
            upstream_cpu_s=upcpu1 - upcpu0,
            distinct_questions=self.workload.distinct_questions(self.indices[: cell.started]),
            fail_s=fail_s,
            note=contender.note,
            extra=extra,
        )


def _service_figures(before: dict, after: dict, checks: int) -> dict:
    """Lookups per tier and upstream queries the service itself counted during the cell."""
    if not after:
        return {}
    tiers: dict[str, int] = {}
    for key, value in after.items():
        if key.startswith("lookups/") and "," in key:
            tier = key.rsplit(",", 1)[1]
            tiers[tier] = tiers.get(tier, 0) + int(value) - int(before.get(key, 0))
    sent = int(after.get("upstream_queries", 0)) - int(before.get("upstream_queries", 0))
    shared = {
        key: int(value) - int(before.get(key, 0))
        for key, value in after.items()
        if key.startswith(("redis_", "fleet_")) and "/" not in key and isinstance(value, (int, float))
        and not key.endswith("_open")
    }
    return {
        "service_redis_counters": {k: v for k, v in shared.items() if v},
        "service_lookups_by_tier": tiers,
        "service_upstream_queries": sent,
        "service_upstream_queries_per_check": round(sent / checks, 4) if checks else None,
    }
