"""Prometheus exposition of ``Stats``, read at scrape time, on its own registry.

The hot path only adds to the plain dicts of ``fastlookup.stats``; this
module turns them into metric families when ``/metrics`` is scraped, so no
Prometheus object is touched while serving and nothing is registered
globally (each service gets its own ``CollectorRegistry``).

* a counter ``name`` becomes ``fastlookup_<name>_total``, a gauge
  ``fastlookup_<name>``, a histogram ``fastlookup_<name>`` with
  ``_bucket``/``_sum``/``_count`` and the bucket bounds of
  ``stats.LATENCY_BUCKETS_S``; label names come from ``Stats.labels``
  (``Stats.declare``). Whatever series exist are exposed, so a counter added
  elsewhere needs no change here; ``docs/metrics.md`` lists every one.
* No secret in a label (house rule 11): label values that name a zone with
  an access key are replaced by its ``Zone.display`` (``***.zen.dq...``),
  and anything URL-shaped has its password masked, whatever the code that
  counted it passed in.

``serve(listen, service)`` answers ``GET /metrics`` and ``GET /healthz`` on
``host:port`` with the tiny asyncio HTTP/1.1 handler of ``metrics_http``
(no prometheus_client thread server), in the service's own loop: the
collector reads the dicts on the thread that writes them, so a scrape never
sees a dict change size.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from . import __version__
from .config import mask_url
from .metrics_http import HttpEndpoint, Route, parse_listen
from .stats import Stats

__all__ = ["StatsCollector", "make_registry", "render", "serve", "HELP", "PREFIX", "KNOWN_LABELS"]

log = logging.getLogger("fastlookup.metrics")

PREFIX = "fastlookup"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

#: Help text of the series fastlookup counts; ``docs/metrics.md`` is the long form.
HELP: dict[str, str] = {
    "lookups": "DNS answers given, by record type and the tier that answered (memory, redis, upstream, stale).",
    "coalesced": "Questions that waited on a query already in flight instead of asking again.",
    "upstream_queries": "Queries sent to an upstream DNS server (one per try).",
    "upstream_timeouts": "Tries that got no answer from an upstream server in time.",
    "upstream_dropped": "Replies dropped because they did not match the query (RFC 5452: wrong ID, question or source).",
    "upstream_tcp_retries": "Truncated UDP answers asked again over TCP.",
    "upstream_errors": "Upstream answers that were failures (servfail, refused, error, garbage: ours but unparseable), by server and status.",
    "upstream_latency_seconds": "Time from sending a query to its answer, per upstream server.",
    "upstream_hedges": "Tries that asked the next server too because a reply was later than the server's usual RTT band.",
    "upstream_explores": "Questions also sent to another live server in the background to keep its RTT known (upstream.explore_share).",
    "upstream_probes": "Background probes of upstream servers that had timed out, by server and result (up, down).",
    "upstream_srtt_seconds": "Smoothed round-trip time of each upstream server (RFC 6298), 0 until measured.",
    "upstream_rto_seconds": "The timeout of a try on each upstream server now, from its RTT (at most upstream.timeout_s).",
    "upstream_server_up": "1 while an upstream server answers, 0 while it is backed off after timeouts.",
    "deadline_timeouts": "Callers whose deadline passed before an answer and no stale answer was kept (fail open).",
    "stale_served": "Expired answers served because upstream could not answer (RFC 8767).",
    "fail_open": "Checks answered without every lookup (a zone timed out or was disabled), by reason.",
    "redis_hits": "Answers found in the shared Redis tier.",
    "redis_misses": "Questions not found in the shared Redis tier.",
    "redis_errors": "Redis operations that failed (the tier then behaves as empty).",
    "redis_corrupt": "Redis values that could not be decoded and were ignored.",
    "redis_breaker_open": "1 while the Redis circuit breaker is open (Redis skipped), else 0.",
    "connections": "Client connections open now on the msgpack-rpc socket.",
    "in_flight": "RPC calls being answered now.",
    "connections_accepted": "Connections accepted on the msgpack-rpc socket.",
    "framing_errors": "Connections closed because they sent bytes that are not msgpack.",
    "fd_exhausted": "Upstream queries that failed because the process was out of file descriptors (EMFILE/ENFILE).",
    "request_timeouts": "Connections closed because a request they began was not complete within server.request_timeout_s.",
    "rpc_errors": "RPC calls answered with an error, by wire error code.",
    "overloaded": "RPC calls refused with 'overloaded' (server.max_in_flight reached).",
    "memory_entries": "Answers held in the memory tier now.",
    "memory_evictions": "Answers evicted from the memory tier to stay within cache.memory_entries.",
    "redis_skipped": "Redis operations skipped without trying because the circuit breaker was open.",
    "redis_keys_rejected": "Cache keys never sent to Redis because they are not safe Redis keys.",
    "redis_round_trips": "Round trips to Redis (one per event-loop turn with Redis work).",
    "redis_keys_read": "Keys read from Redis (MGET), over all round trips.",
    "redis_writes": "Answers written to Redis.",
    "redis_round_trip_seconds": "Time of one Redis round trip.",
    "fleet_lock_won": "Fleet-wide locks won: this instance asked upstream for the question.",
    "fleet_lock_lost": "Fleet-wide locks lost: another instance was already asking.",
    "fleet_wait_hits": "Waits on another instance's answer that found it in Redis.",
    "fleet_wait_misses": "Waits on another instance's answer that gave up and asked upstream.",
    "fleet_takeovers": "Waits that saw the winner's lock gone without an answer (failed or died) and won it back: this instance asked upstream.",
    "fleet_polls": "Reads of every key waited on (one MGET per poll interval while waiting).",
    "front_cut_off": "Front-end (Postfix policy, socketmap, Exim) connections cut off, by front.",
    "verdicts": "Policy verdicts, by action (accept, reject, defer).",
    "ignored_hits": "Listings by log-only zones (action = \"ignore\"): logged and counted, never deciding, by zone.",
    "zone_disabled": "1 while list health has taken a zone out of use (it answers wrongly), else 0.",
    "health_probes": "RFC 5782 list health probe rounds, by zone and result.",
    "mirror_entries": "Entries in the local copy a mirrored zone answers from.",
    "mirror_bytes": "Bytes of a mirrored zone's lookup structures.",
    "mirror_loaded_at_s": "When a mirrored zone's copy was loaded (Unix time).",
    "mirror_mtime_s": "Newest mtime of a file mirror's data files (Unix time).",
    "mirror_serial": "SOA serial of a zone-transfer mirror's copy.",
    "mirror_answering": "1 while a mirrored zone answers from its copy, 0 while it is asked by DNS.",
    "mirror_loads": "Copies of a mirrored zone loaded.",
    "mirror_load_errors": "Copies of a mirrored zone refused (unreadable, cut short, too big) and zone transfers failed.",
}

#: Label names of series counted without ``Stats.declare``; a declaration wins.
KNOWN_LABELS: dict[str, tuple[str, ...]] = {
    "deadline_timeouts": ("type",),
    "stale_served": ("type",),
    "verdicts": ("action",),
    "zone_disabled": ("zone",),
    "rpc_errors": ("code",),
    "front_cut_off": ("front",),
    "health_probes": ("zone", "result"),
}

#: Numbers of ``Context.extra_stats`` that only grow; the others are gauges.
EXTRA_COUNTERS = frozenset({"memory_evictions"})

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_URLISH = re.compile(r"://[^:/@,\s]*:[^@/\s]+@")


class StatsCollector(Collector):
    """Builds metric families from a ``Stats`` each time the registry is collected."""

    def __init__(
        self,
        stats: Stats,
        redact: Callable[[str], str] | None = None,
        prefix: str = PREFIX,
        extra: Callable[[], dict] | None = None,
    ) -> None:
        self.stats = stats
        self.redact = redact or _mask_urls
        self.prefix = prefix
        self.extra = extra  # unlabelled numbers kept outside Stats (connections, in_flight, memory_entries...)

    def _label_names(self, name: str, width: int) -> list[str]:
        declared = list(self.stats.labels.get(name) or KNOWN_LABELS.get(name, ()))
        if len(declared) == width:
            return declared
        # Undeclared or mismatched: name them by position rather than drop the series.
        return declared[:width] + [f"label{i}" for i in range(len(declared[:width]), width)]

    def _values(self, labels: tuple) -> list[str]:
        return [self.redact(str(v)) for v in labels]

    def _help(self, name: str) -> str:
        return HELP.get(name, f"fastlookup {name}")

    def collect(self) -> Iterable[Any]:
        stats = self.stats
        # Counters sum series that redaction merges; gauges keep the last value.
        for family_type, table, last in ((CounterMetricFamily, stats.counters, False), (GaugeMetricFamily, stats.gauges, True)):
            for name, series in sorted(list(table.items())):
                items = list(series.items())
                width = len(items[0][0]) if items else len(stats.labels.get(name, ()))
                family = family_type(f"{self.prefix}_{name}", self._help(name), labels=self._label_names(name, width))
                for labels, value in _merged(items, width, self._values, last=last):
                    family.add_metric(labels, value)
                yield family
        for name, series in sorted(list(stats.histograms.items())):
            items = list(series.items())
            width = len(items[0][0]) if items else len(stats.labels.get(name, ()))
            family = HistogramMetricFamily(f"{self.prefix}_{name}", self._help(name), labels=self._label_names(name, width))
            for labels, hist in items:
                if len(labels) != width:
                    continue
                cumulative = 0
                buckets = []
                for bound, count in zip(hist.buckets, hist.counts):
                    cumulative += count
                    buckets.append((_bound(bound), cumulative))
                buckets.append(("+Inf", hist.count))
                family.add_metric(self._values(labels), buckets, hist.sum)
            yield family
        if self.extra is not None:
            try:
                extra = self.extra()
            except Exception:  # a bug in a snapshot must not break the scrape
                log.exception("metrics: extra stats failed")
                extra = {}
            seen = set(stats.counters) | set(stats.gauges) | set(stats.histograms)
            for name, value in sorted(extra.items()):
                if name in seen or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if not _NAME.fullmatch(name):
                    continue
                cls = CounterMetricFamily if name in EXTRA_COUNTERS else GaugeMetricFamily
                yield cls(f"{self.prefix}_{name}", self._help(name), value=value)
        info = GaugeMetricFamily(f"{self.prefix}_build_info", "Always 1; the version label says which fastlookup runs.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info


def _bound(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _merged(items, width: int, values: Callable[[tuple], list[str]], last: bool = False):
    """Label tuples as strings; series whose redacted labels collide are summed (counters)."""
    out: dict[tuple, float] = {}
    for labels, value in items:
        if len(labels) != width:
            continue  # a bug elsewhere: never let one bad series break the scrape
        key = tuple(values(labels))
        out[key] = value if last or key not in out else out[key] + value
    return [(list(k), v) for k, v in out.items()]


def _mask_urls(value: str) -> str:
    return mask_url(value) if "://" in value and _URLISH.search(value) else value


def _secret_zones(service: Any) -> list[tuple[str, str]]:
    """(name, display) of the configured zones whose name carries an access key, longest first."""
    secrets: dict[str, str] = {}
    zones = getattr(service, "zones", None)
    config = getattr(service, "config", None)
    if zones is None or config is None:
        return []
    specs: list[tuple[str, str]] = [(z, "dnsbl") for z in config.dnsbl] + [(z, "rhsbl") for z in config.rhsbl]
    for policy in config.policy.values():
        specs += [(z, "dnsbl") for z in policy.dnsbl + policy.allow_zones] + [(z, "rhsbl") for z in policy.rhsbl]
    for spec, kind in specs:
        try:
            zone = zones.get(spec, kind)
        except Exception:  # a bad spec fails at start elsewhere; never here
            continue
        if zone.display != zone.name:
            secrets[zone.name] = zone.display
    # Longest first, so a key zone inside another name is replaced whole.
    return sorted(secrets.items(), key=lambda kv: -len(kv[0]))


def _zone_redactor(service: Any) -> Callable[[str], str]:
    """Map zone names that carry an access key to their display form, in any label value.

    The table is rebuilt when the service's config object changes (a reload).
    """
    cache: dict[str, Any] = {"config": None, "pairs": []}

    def redact(value: str) -> str:
        config = getattr(service, "config", None)
        if config is not cache["config"]:
            cache["config"], cache["pairs"] = config, _secret_zones(service)
        for name, display in cache["pairs"]:
            if name in value:
                value = value.replace(name, display)
        return _mask_urls(value)

    return redact


def _extra_of(service: Any) -> Callable[[], dict] | None:
    """The service's ``Context.extra_stats``, looked up at each scrape (a reload swaps the context)."""
    if isinstance(service, Stats) or not hasattr(service, "ctx"):
        return None

    def extra() -> dict:
        fn = getattr(service.ctx, "extra_stats", None)
        return fn() if fn is not None else {}

    return extra


def make_registry(service: Any) -> CollectorRegistry:
    """A fresh registry with fastlookup's collector for ``service`` (a Service or a bare Stats)."""
    stats = service if isinstance(service, Stats) else service.stats
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, _zone_redactor(service), extra=_extra_of(service)))
    try:
        from prometheus_client import ProcessCollector

        ProcessCollector(registry=registry)  # process_* (RSS, CPU, fds) from /proc; absent elsewhere
    except Exception:  # pragma: no cover - a platform without /proc
        pass
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition (format 0.0.4) of ``registry``."""
    return generate_latest(registry)


def _health_of(service: Any) -> Callable[[], tuple[int, str, bytes]]:
    """``/healthz``: 200 ``ok`` while the service runs; zones out of use are named, not fatal."""
    redact = _zone_redactor(service)

    def health() -> tuple[int, str, bytes]:
        stats = service if isinstance(service, Stats) else service.stats
        disabled = sorted(str(k[0]) for k, v in stats.gauges.get("zone_disabled", {}).items() if v and k)
        text = "ok\n" + ("disabled zones: " + " ".join(redact(z) for z in disabled) + "\n" if disabled else "")
        return 200, TEXT, text.encode()

    return health


async def serve(listen: str, service: Any) -> HttpEndpoint:
    """Serve ``/metrics`` and ``/healthz`` for ``service`` on ``listen`` (``host:port``; port 0 = any free)."""
    host, port = parse_listen(listen, "metrics.listen")
    registry = make_registry(service)
    routes: dict[str, Route] = {
        "/metrics": lambda: (200, CONTENT_TYPE, render(registry)),
        "/healthz": _health_of(service),
    }
    endpoint = await HttpEndpoint.start(host, port, routes)
    endpoint.registry = registry
    log.info("metrics on http://%s:%d/metrics", host or "*", endpoint.port, extra={"listen": listen})
    return endpoint
