"""The Prometheus endpoint: scraped over HTTP after real traffic, parsed with prometheus_client's parser."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastlookup.metrics import StatsCollector, make_registry, render
from fastlookup.metrics_http import parse_listen
from fastlookup.stats import Stats
from fastlookup.testing import Rbldnsd, everything_ip4set, free_port, rfc5782_ip4set, soa_line
from fastlookup.testing.service import ServiceThread, service_config

from fixtures_servers import start_or_skip

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
SECRET = "s3cr3tk3y"
KEYED_ZONE = f"{SECRET}.zen.dq.spamhaus.net"  # a Spamhaus DQS zone: the first label is an access key
KEYED_DISPLAY = "***.zen.dq.spamhaus.net"
LISTED_IP = "192.0.2.99"


@pytest.fixture(scope="module")
def rbl():
    """An rbldnsd serving a healthy list, a keyed (DQS-style) list and a listed-the-world list."""
    data = soa_line("bl.test") + rfc5782_ip4set({LISTED_IP: (2, "Listed $")})
    server = Rbldnsd({
        "bl.test": ("ip4set", data),
        KEYED_ZONE: ("ip4set", rfc5782_ip4set({LISTED_IP: (4, "XBL")})),
        "listall.test": ("ip4set", everything_ip4set(2)),
    })
    start_or_skip(server.start, "rbldnsd")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scraped(rbl):
    """A service with metrics and health on, some traffic through the client, then /metrics, /healthz and stats."""
    port = free_port("tcp")

    def config(tmp: str):
        return service_config(
            tmp + "/fl.sock",
            upstream=[rbl.address],
            metrics={"listen": f"127.0.0.1:{port}"},
            health={"interval_s": 3600},
            policy={"default": {"dnsbl": ["bl.test", KEYED_ZONE, "listall.test"]}},
        )

    with ServiceThread(config) as svc:

        async def first_health_round():
            health = svc.service.health
            assert health is not None, "the service did not start list health with health.interval_s > 0"
            if health.rounds == 0:
                await health.next_round()

        svc.run(first_health_round)
        with svc.client(timeout=5) as client:
            verdicts = [client.check(LISTED_IP), client.check("192.0.2.1"), client.check(LISTED_IP)]
            client.dnsbl("192.0.2.2", [KEYED_ZONE])
            stats = client.stats()
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            content_type = response.headers["Content-Type"]
            body = response.read().decode("utf-8")
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
            healthz = (response.status, response.read().decode("utf-8"))
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nothing", timeout=5)
    return {
        "body": body,
        "content_type": content_type,
        "families": {f.name: f for f in text_string_to_metric_families(body)},
        "healthz": healthz,
        "missing": missing.value.code,
        "verdicts": verdicts,
        "stats": stats,
        "port": port,
        "rbl_port": rbl.port,
    }


def samples(family, suffix: str = "", **labels):
    """Sample values of ``family`` whose name ends with ``suffix`` and whose labels include ``labels``."""
    return [
        s.value
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_endpoint_answers_in_the_text_format(scraped):
    """/metrics is the 0.0.4 text format, /healthz says ok, other paths are 404."""
    assert scraped["content_type"].startswith("text/plain; version=0.0.4")
    assert scraped["healthz"][0] == 200 and scraped["healthz"][1].startswith("ok\n")
    assert scraped["missing"] == 404
    assert samples(scraped["families"]["fastlookup_build_info"], version=__import__("fastlookup").__version__) == [1.0]


def test_lookup_families_count_tiers(scraped):
    """Lookups are counted by type and tier: the first check asks upstream, the repeated one hits memory."""
    lookups = scraped["families"]["fastlookup_lookups"]
    assert lookups.type == "counter"
    assert sum(samples(lookups, "_total", type="A", tier="upstream")) >= 3
    assert sum(samples(lookups, "_total", type="A", tier="memory")) >= 1
    assert sum(samples(lookups, "_total")) == scraped["stats"]["lookups"]  # the metrics are the stats' numbers


def test_upstream_families_per_server(scraped):
    """Upstream queries and the latency histogram are labelled by server, with consistent buckets."""
    server = f"127.0.0.1:{scraped['rbl_port']}"
    families = scraped["families"]
    queries = sum(samples(families["fastlookup_upstream_queries"], "_total", server=server))
    assert queries >= 3
    latency = families["fastlookup_upstream_latency_seconds"]
    assert latency.type == "histogram"
    buckets = [(float(s.labels["le"]), s.value) for s in latency.samples if s.name.endswith("_bucket") and s.labels["server"] == server]
    assert [le for le, _ in buckets] == sorted(le for le, _ in buckets) and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    (count,) = samples(latency, "_count", server=server)
    (total,) = samples(latency, "_sum", server=server)
    assert counts[-1] == count > 0 and 0 < total < count * 1.0


def test_verdict_families_by_action(scraped):
    """Verdicts are counted by action: two rejects for the listed IP, one accept for the clean one."""
    assert [v["action"] for v in scraped["verdicts"]] == ["reject", "accept", "reject"]
    verdicts = scraped["families"]["fastlookup_verdicts"]
    assert samples(verdicts, "_total", action="reject") == [2.0]
    assert samples(verdicts, "_total", action="accept") == [1.0]


def test_zone_health_in_metrics_and_stats(scraped):
    """The listed-the-world zone is disabled in metrics, /healthz and stats; healthy zones are 0."""
    disabled = scraped["families"]["fastlookup_zone_disabled"]
    assert samples(disabled, zone="listall.test") == [1.0]
    assert samples(disabled, zone="bl.test") == [0.0]
    assert samples(disabled, zone=KEYED_DISPLAY) == [0.0]
    assert "listall.test" in scraped["healthz"][1]
    assert scraped["stats"]["zone_disabled/listall.test"] == 1.0
    assert scraped["verdicts"][1]["fail_open"] is True  # the disabled zone was skipped


def test_server_gauges(scraped):
    """Connections and in-flight calls are exposed as gauges."""
    families = scraped["families"]
    assert families["fastlookup_connections"].type == "gauge"
    assert samples(families["fastlookup_in_flight"]) == [0.0]


def test_no_secret_anywhere(scraped):
    """The access key of a keyed zone appears in no metric, label, /healthz or stats key: only its display form."""
    assert SECRET not in scraped["body"]
    assert KEYED_DISPLAY in scraped["body"]
    assert SECRET not in scraped["healthz"][1]
    assert not [k for k in scraped["stats"] if SECRET in k]


def test_every_scraped_family_is_documented(scraped):
    """Each fastlookup_* family the endpoint served is listed in docs/metrics.md."""
    docs = DOCS.read_text(encoding="utf-8")
    names = {f.name for f in scraped["families"].values() if f.name.startswith("fastlookup_")}
    undocumented = sorted(
        n for n in names if f"`{n}`" not in docs and f"`{n}_total`" not in docs
    )
    assert undocumented == []


def test_collector_masks_secrets_passed_by_mistake():
    """A series counted with a raw key zone name or a password URL in a label is still exposed without the secret."""

    class FakeService:
        def __init__(self):
            from fastlookup.checks.zones import ZoneRegistry
            from fastlookup.config import load_config

            self.config = load_config(environ={}, overrides={"dnsbl": {KEYED_ZONE: {}}})
            self.zones = ZoneRegistry(self.config.dnsbl, self.config.rhsbl)
            self.stats = Stats()

    service = FakeService()
    service.stats.declare("oops", "where")
    service.stats.inc("oops", (f"2.0.0.127.{KEYED_ZONE}",))
    service.stats.inc("oops", ("redis://user:hunter2@redis:6379/0",))
    body = render(make_registry(service)).decode()
    assert SECRET not in body and "hunter2" not in body
    assert f'where="2.0.0.127.{KEYED_DISPLAY}"' in body
    assert 'where="redis://user:***@redis:6379/0"' in body


def test_undeclared_labels_are_named_by_position():
    """A labelled series without declared label names is exposed with label0, label1... rather than dropped."""
    stats = Stats()
    stats.inc("mystery", ("a", "b"), 2)
    families = {f.name: f for f in StatsCollector(stats).collect()}
    (sample,) = families["fastlookup_mystery"].samples
    assert sample.labels == {"label0": "a", "label1": "b"} and sample.value == 2


@pytest.mark.parametrize(
    "listen, expected",
    [("127.0.0.1:9153", ("127.0.0.1", 9153)), ("[::1]:9153", ("::1", 9153)), (":9153", (None, 9153)), ("inet:0.0.0.0:1", ("0.0.0.0", 1))],
)
def test_parse_listen(listen, expected):
    """metrics.listen takes host:port, [v6]:port and :port (every address)."""
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("bad", ["9153", "localhost", "127.0.0.1:http", "[::1]", "1.2.3.4:99999"])
def test_parse_listen_refuses(bad):
    """A listen value without a numeric port is refused with a message naming the key."""
    with pytest.raises(ValueError, match="metrics.listen"):
        parse_listen(bad)


def test_metric_names_in_help_table_are_documented():
    """Every metric with help text in fastlookup.metrics has a row in docs/metrics.md."""
    from fastlookup.metrics import HELP

    docs = DOCS.read_text(encoding="utf-8")
    missing = [name for name in HELP if not re.search(rf"`fastlookup_{name}(_total)?`", docs)]
    assert missing == []


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", 200),
        (b"HEAD /healthz HTTP/1.1\r\n\r\n", 200),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /other HTTP/1.1\r\n\r\n", 404),
        (b"\x00\xffgarbage\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
    ],
)
def test_http_endpoint_statuses(request_bytes, status):
    """The endpoint answers GET/HEAD of its paths and refuses other methods, paths, garbage and huge heads."""
    import asyncio

    from fastlookup.metrics import serve

    async def main():
        stats = Stats()
        stats.inc("lookups", ("A", "memory"))
        endpoint = await serve("127.0.0.1:0", stats)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
            writer.write(request_bytes)
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), timeout=5)
            writer.close()
        finally:
            endpoint.close()
            await endpoint.wait_closed()
        return response

    response = asyncio.run(main())
    assert response.startswith(f"HTTP/1.1 {status} ".encode())
    if request_bytes.startswith(b"HEAD"):
        assert response.endswith(b"\r\n\r\n")  # headers only
    if status == 200 and b"/metrics" in request_bytes:
        assert b"fastlookup_lookups_total" in response
