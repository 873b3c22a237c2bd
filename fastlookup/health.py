"""List health: probe every configured zone with the test points of RFC 5782 §5.

A DNSBL must list 127.0.0.2 and ``::FFFF:7F00:2`` and must not list
127.0.0.1 and ``::FFFF:7F00:1``; an RHSBL must list ``test`` and must not
list ``invalid`` (RFC 5782 §5). A list that has died often answers
*everything* (the domain lapsed and a wildcard took it over), and a list that
refuses us answers its error codes (Spamhaus ``127.255.255.254``, "query via
public resolver"); either way its answers would reject good mail. So:

=================  ==========================================  ==============
status             what the probes saw                         action
=================  ==========================================  ==============
``ok``             test point listed, nothing wrongly listed   in use
``no_test_point``  127.0.0.2/``test`` not listed, nothing      in use, one
                   wrongly listed (some lists skip it)         warning
``listed_all``     127.0.0.1/``::FFFF:7F00:1``/``invalid``     taken out of
                   listed                                      use
``list_error``     a probe answered one of the list's error    taken out of
                   codes                                       use
``unreachable``    no usable answer (timeout, servfail...)     unchanged
=================  ==========================================  ==============

A zone taken out of use goes into ``ZoneRegistry.disabled``: checks answer it
as ``unknown`` / ``disabled`` without a query (fail open, house rule 10).
It comes back as soon as a probe round sees it answer right. Each change is
logged once (not every round), and shown as the gauge ``zone_disabled{zone}``
(metrics and the ``stats`` method) and the counter ``health_probes{zone,
result}``. A timeout changes nothing: per-query deadlines already fail open,
and a list that is merely slow is not wrong.

Probes go straight to ``resolver.upstream`` (not through the caches), so a
cached answer cannot hide a list's current state. Zone names with an access
key only ever appear as ``Zone.display``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from .checks.zones import Zone
from .model import Answer
from .names import dnsbl_name

__all__ = ["ZoneHealth", "ProbeResult", "DNSBL_PROBES", "RHSBL_PROBES", "DISABLING", "judge"]

log = logging.getLogger("fastlookup.health")

# RFC 5782 §5: (item, must be listed). The first listed one is the primary
# test point whose absence is worth a warning; IPv6 test points are often
# not published, so their absence alone says nothing.
DNSBL_PROBES: tuple[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, bool], ...] = (
    (ipaddress.IPv4Address("127.0.0.2"), True),
    (ipaddress.IPv4Address("127.0.0.1"), False),
    (ipaddress.IPv6Address("::ffff:7f00:2"), True),
    (ipaddress.IPv6Address("::ffff:7f00:1"), False),
)
RHSBL_PROBES: tuple[tuple[str, bool], ...] = (("test", True), ("invalid", False))

#: Statuses that take a zone out of use.
DISABLING = frozenset({"listed_all", "list_error"})
_REASONS = {
    "listed_all": "it lists an RFC 5782 test point that must not be listed (a dead list answering everything?)",
    "list_error": "it answers its error codes (query refused, over quota, or via a public resolver?)",
    "no_test_point": "it does not list its RFC 5782 test point 127.0.0.2/test; kept in use",
    "unreachable": "its probes got no usable answer; state unchanged",
}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe: the query name, whether it must be listed, and what came back.

    ``outcome`` is ``listed``, ``not_listed``, ``error_code`` or ``failed``.
    """

    qname: str
    must_list: bool
    outcome: str
    detail: str = ""


def _outcome(zone: Zone, answer) -> tuple[str, str]:
    status = answer.status
    if status in ("nxdomain", "nodata"):
        return "not_listed", status
    if status != "ok":
        return "failed", status
    codes, error = zone.classify(tuple(answer.records))
    if codes:
        return "listed", ",".join(codes)
    if error:
        return "error_code", ",".join(answer.records)
    # 127/8 codes outside this zone's filter: for a must-not point any A
    # record is a listing (RFC 5782 §5), for a must point it is not the test code.
    return "listed_other", ",".join(answer.records)


def judge(results: list[ProbeResult]) -> str:
    """The zone status of one probe round (see the module table)."""
    must_not = [r for r in results if not r.must_list]
    must = [r for r in results if r.must_list]
    if any(r.outcome in ("listed", "listed_other") for r in must_not):
        return "listed_all"
    if any(r.outcome == "error_code" for r in results):
        return "list_error"
    if not must_not or all(r.outcome == "failed" for r in must_not):
        return "unreachable"
    primary = must[0] if must else None
    if primary is None or primary.outcome == "listed":
        return "ok"
    if primary.outcome == "failed":
        return "unreachable"
    return "no_test_point"


class ZoneHealth:
    """Probes the service's zones; ``probe_all()`` once, or ``start()``/``stop()`` on a schedule.

    ``service`` needs ``.config`` (zones and ``health.interval_s``), ``.zones``
    (a ``ZoneRegistry``), ``.stats`` and ``.resolver`` (``.upstream``,
    ``.clock``, ``.memory``).
    """

    def __init__(self, service: Any, interval_s: float | None = None, timeout_s: float | None = None) -> None:
        self.service = service
        config = service.config
        self.interval_s = config.health.interval_s if interval_s is None else interval_s
        up = config.upstream
        self.timeout_s = timeout_s if timeout_s is not None else max(1.0, up.timeout_s * up.attempts + 0.2)
        self.status: dict[tuple[str, str], str] = {}  # (kind, zone name) -> last status
        self._disabled: set[str] = set()  # zone names this monitor put in zones.disabled
        self._task: asyncio.Task | None = None
        self._waiters: list[asyncio.Future] = []
        self.rounds = 0  # probe rounds completed
        stats = service.stats
        stats.declare("zone_disabled", "zone")
        stats.declare("health_probes", "zone", "result")

    # --- which zones --------------------------------------------------------

    def zones(self) -> list[tuple[str, Zone]]:
        """Every configured zone once, as ``(kind, Zone)``: the zone tables and the policies' lists."""
        config = self.service.config
        registry = self.service.zones
        specs: list[tuple[str, str]] = [("dnsbl", z) for z in config.dnsbl] + [("rhsbl", z) for z in config.rhsbl]
        for policy in config.policy.values():
            specs += [("dnsbl", z) for z in policy.dnsbl + policy.allow_zones]
            specs += [("rhsbl", z) for z in policy.rhsbl]
        out: dict[tuple[str, str], Zone] = {}
        for kind, spec in specs:
            try:
                zone = registry.get(spec, kind)
            except Exception as exc:  # config validation rejects these at start
                log.warning("health: cannot probe zone spec %r: %s", spec, exc)
                continue
            out.setdefault((kind, zone.name), zone)
        return [(kind, zone) for (kind, _), zone in out.items()]

    # --- probing ------------------------------------------------------------

    async def probe(self, kind: str, zone: Zone) -> tuple[str, list[ProbeResult]]:
        """Probe one zone with its RFC 5782 test points, concurrently; ``(status, results)``."""
        if kind == "dnsbl":
            points = [(dnsbl_name(ip, zone.name), must) for ip, must in DNSBL_PROBES]
        else:
            points = [(label + "." + zone.name, must) for label, must in RHSBL_PROBES]
        resolver = self.service.resolver
        deadline = resolver.clock() + self.timeout_s
        answers = await asyncio.gather(
            *(self._ask(zone, qname, deadline) for qname, _ in points), return_exceptions=True
        )
        results = []
        for (qname, must), answer in zip(points, answers):
            if isinstance(answer, BaseException):
                results.append(ProbeResult(qname, must, "failed", type(answer).__name__))
            else:
                outcome, detail = _outcome(zone, answer)
                results.append(ProbeResult(qname, must, outcome, detail))
        return judge(results), results

    async def _ask(self, zone: Zone, qname: str, deadline: float) -> Answer:
        """A probe's answer: from the zone's local mirror when it has a copy (its data is what checks use), else upstream."""
        mirror = zone.mirror
        if mirror is not None:
            found = mirror.answer(qname)
            if found is not None:
                return Answer("ok", found[0], 0, "mirror") if found[0] else Answer("nxdomain")
        return await self.service.resolver.ask_upstream(qname, "A", deadline)  # its answer counts for tempfail

    async def probe_all(self) -> dict[str, str]:
        """Probe every zone once and apply the results; ``{zone display: status}``."""
        pairs = self.zones()
        rounds = await asyncio.gather(*(self.probe(kind, zone) for kind, zone in pairs))
        out: dict[str, str] = {}
        for (kind, zone), (status, results) in zip(pairs, rounds):
            self._apply(kind, zone, status, results)
            out[zone.display] = status
        self._sync_disabled(pairs)
        self.rounds += 1
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(out)
        return out

    def next_round(self) -> asyncio.Future:
        """A future with the result of the next completed round (for tests and tools, no polling)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def _apply(self, kind: str, zone: Zone, status: str, results: list[ProbeResult]) -> None:
        key = (kind, zone.name)
        before = self.status.get(key)
        self.service.stats.inc("health_probes", (zone.display, status))
        if status == "unreachable":
            if before in DISABLING:
                return  # keep the last real judgement: out of use until it answers right
            self.status[key] = status
            if before != "unreachable":
                log.warning("health: zone %s: %s", zone.display, _REASONS[status], extra=_extra(kind, zone, status))
            return
        self.status[key] = status
        if status == before:
            return
        seen = "; ".join(f"{r.qname.replace(zone.name, zone.display)}={r.outcome}" for r in results if r.outcome != "failed")
        if status in DISABLING:
            log.error(
                "health: zone %s taken out of use (fail open): %s [%s]",
                zone.display, _REASONS[status], seen, extra=_extra(kind, zone, status),
            )
        elif status == "no_test_point":
            log.warning("health: zone %s: %s [%s]", zone.display, _REASONS[status], seen, extra=_extra(kind, zone, status))
        elif before in DISABLING:
            log.warning("health: zone %s answers right again; back in use", zone.display, extra=_extra(kind, zone, status))

    def _sync_disabled(self, pairs: list[tuple[str, Zone]]) -> None:
        """Make ``zones.disabled`` and the ``zone_disabled`` gauge match the last statuses."""
        registry = self.service.zones
        stats = self.service.stats
        bad: dict[str, Zone] = {}
        for kind, zone in pairs:
            if self.status.get((kind, zone.name)) in DISABLING:
                bad[zone.name] = zone
        for name in bad.keys() - self._disabled:
            registry.disabled.add(name)
        for name in self._disabled - bad.keys():
            registry.disabled.discard(name)
            self._forget(name)  # answers cached while it was broken must not come back with it
        self._disabled = set(bad)
        current = {(zone.display,) for _, zone in pairs}
        series = stats.gauges["zone_disabled"]
        for labels in [k for k in series if k not in current]:
            del series[labels]  # a zone dropped from the config by a reload
        for kind, zone in pairs:
            stats.set("zone_disabled", 1.0 if zone.name in bad else 0.0, (zone.display,))

    def _forget(self, zone_name: str) -> None:
        """Drop this process's cached answers under ``zone_name`` (memory tier only)."""
        self.service.resolver.memory.purge_suffix("." + zone_name)

    # --- schedule -----------------------------------------------------------

    @property
    def disabled(self) -> frozenset[str]:
        """Display names of the zones this monitor has taken out of use."""
        return frozenset(z.display for kind, z in self.zones() if z.name in self._disabled)

    def start(self) -> None:
        """Probe now and then every ``interval_s`` in a background task (no-op when 0)."""
        if self.interval_s <= 0 or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fastlookup-zone-health")

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: log it and keep probing
                log.exception("health: probe round failed")
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        """Cancel the periodic task and wait for it; zones stay as the last round left them."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])


def _extra(kind: str, zone: Zone, status: str) -> dict[str, str]:
    return {"zone": zone.display, "kind": kind, "status": status}
