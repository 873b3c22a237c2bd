"""The loopback world of one run: upstream servers, Redis, resolvers; counted and stopped.

* rbldnsd serves the DNSBL zones and the RHSBL zone. It is started with
  ``-l +FILE`` (an unbuffered log line per query it recognises), and the
  lines are counted: that is the DNSBL side of "upstream queries".
* The project's test DNS server (``fastlookup.testing.dnsserver``) runs as a
  process and serves PTR and A; its own counter (CHAOS control query) is the
  PTR/A side.
* With ``--delay-ms`` (and ``--delay-spread-ms``), a delaying UDP forwarder
  (``fastlookup.testing.udpdelay``) stands in front of *each* of the two
  servers, so every answer any contender gets from upstream -- PTR, A, and
  the blocklist zones -- comes that late. Counting stays at the servers.
* redis-server for the shared tier; one reference unbound for the
  ``unbound`` and ``pydnsbl`` contenders, and a fresh unbound per fastlookup
  service (fastlookup is a stub: it sits in front of the site's resolver).

Every process is ours, started here and stopped by its pid in ``stop()``.
"""

from __future__ import annotations

import os

from fastlookup.testing.dnsprocess import DnsServerProcess
from fastlookup.testing.dnszone import Soa
from fastlookup.testing.rbldnsd import Rbldnsd
from fastlookup.testing.redis import RedisServer
from fastlookup.testing.udpdelay import DelayForwarder

from .unbound import Unbound
from .workload import TTL_S, Workload

__all__ = ["World"]


class World:
    """Starts the upstream servers of ``workload`` in ``workdir``; counts their queries."""

    def __init__(self, workload: Workload, workdir: str, *, delay_ms: float = 0.0, spread_ms: float = 0.0) -> None:
        self.workload = workload
        self.workdir = workdir
        self.delay_ms = delay_ms
        self.spread_ms = spread_ms
        self.delay_dns: DelayForwarder | None = None
        self.delay_rbl: DelayForwarder | None = None
        self.rbl: Rbldnsd | None = None
        self.dns: DnsServerProcess | None = None
        self.redis: RedisServer | None = None
        self.redis_error: str | None = None
        self.unbound: Unbound | None = None
        self._extra: list[Unbound] = []
        self._log = os.path.join(workdir, "rbldnsd-queries.log")
        self._log_lines = 0
        self._log_offset = 0

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> "World":
        os.chmod(self.workdir, 0o755)  # rbldnsd drops to its own user and writes its log here
        with open(self._log, "w", encoding="utf-8"):
            pass
        os.chmod(self._log, 0o666)
        self.rbl = Rbldnsd(self.workload.rbldnsd_zones(), ttl_s=TTL_S, extra_args=("-l", "+" + self._log)).start()
        soas = [Soa("18.198.in-addr.arpa", TTL_S, TTL_S), Soa("19.198.in-addr.arpa", TTL_S, TTL_S), Soa("test", TTL_S, TTL_S)]
        self.dns = DnsServerProcess(self.workload.dns_records(), ttl=TTL_S, soa=soas)
        self.dns.start()
        if self.delay_ms > 0:
            self.delay_dns = DelayForwarder(self.dns.address, delay_ms=self.delay_ms, spread_ms=self.spread_ms,
                                            seed=1).start()
            self.delay_rbl = DelayForwarder(self.rbl.address, delay_ms=self.delay_ms, spread_ms=self.spread_ms,
                                            seed=2).start()
        try:
            self.redis = RedisServer().start()
        except Exception as exc:  # the Redis rows are skipped with this reason, the rest still runs
            self.redis = None
            self.redis_error = f"redis-server could not start: {exc}".splitlines()[0]
        self.unbound = self.new_unbound("unbound-reference")
        return self

    def new_unbound(self, name: str = "unbound") -> Unbound:
        """A fresh unbound (empty cache) over the same servers; stopped with the world."""
        ub = Unbound(self.stubs(), name).start()
        self._extra.append(ub)
        return ub

    def drop_unbound(self, ub: Unbound) -> None:
        ub.stop()
        if ub in self._extra:
            self._extra.remove(ub)

    def stop(self) -> None:
        """Stop everything we started, by pid, whatever failed before."""
        for ub in self._extra:
            ub.stop()
        self._extra.clear()
        for server in (self.delay_dns, self.delay_rbl, self.redis, self.dns, self.rbl):
            if server is not None:
                try:
                    server.stop()
                except Exception:  # keep stopping the others
                    pass

    # --- routing ------------------------------------------------------------------

    @property
    def names_address(self) -> tuple[str, int]:
        """Where PTR/A questions go: the test DNS server, or its delaying forwarder."""
        assert self.dns is not None
        return self.delay_dns.address if self.delay_dns is not None else self.dns.address

    @property
    def lists_address(self) -> tuple[str, int]:
        """Where DNSBL/RHSBL questions go: rbldnsd, or its delaying forwarder."""
        assert self.rbl is not None
        return self.delay_rbl.address if self.delay_rbl is not None else self.rbl.address

    def stubs(self) -> dict[str, tuple[str, int]]:
        """Zone -> server, for unbound's stub zones (the most specific zone wins)."""
        out = {z: self.lists_address for z in self.workload.zones}
        out[self.workload.rhsbl_zone] = self.lists_address
        for zone in ("18.198.in-addr.arpa", "19.198.in-addr.arpa", "test"):
            out[zone] = self.names_address
        return out

    def pids(self) -> dict[str, int]:
        out = {}
        if self.rbl is not None:
            out["rbldnsd"] = self.rbl.pid
        if self.dns is not None:
            out["dnsserver"] = self.dns.pid
        if self.redis is not None:
            out["redis-server"] = self.redis.pid
        if self.delay_dns is not None:
            out["delay-forwarder-dns"] = self.delay_dns.pid
        if self.delay_rbl is not None:
            out["delay-forwarder-rbldnsd"] = self.delay_rbl.pid
        for ub in [self.unbound, *self._extra]:
            if ub is not None and ub.running:
                out[ub.name] = ub.pid
        return out

    # --- counting -------------------------------------------------------------------

    def rbldnsd_queries(self) -> int:
        """Queries rbldnsd answered so far (log lines), read incrementally."""
        with open(self._log, "rb") as fh:
            fh.seek(self._log_offset)
            data = fh.read()
        self._log_offset += len(data)
        self._log_lines += data.count(b"\n")
        return self._log_lines

    def upstream_counts(self) -> dict[str, int]:
        """Queries counted at the authoritative servers: ``{"dnsserver": n, "rbldnsd": m}``."""
        assert self.dns is not None
        return {"dnsserver": self.dns.count(), "rbldnsd": self.rbldnsd_queries()}

    def upstream_cpu(self) -> float:
        from .procs import cpu_seconds

        total = 0.0
        for pid in (self.rbl.pid if self.rbl else None, self.dns.pid if self.dns else None):
            if pid is not None:
                total += cpu_seconds(pid)
        return total
