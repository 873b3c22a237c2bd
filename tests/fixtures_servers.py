"""Fixtures that start real servers on loopback (a pytest plugin listed in conftest).

- ``dns_server``: our ``DnsServer`` in a thread, per test, serving
  ``tests/data/dns_records.json`` (example.test: A/AAAA/MX/NS/TXT/CNAME, a
  null MX, a TXT over 512 bytes, PTRs in 2.0.192.in-addr.arpa including a
  forged one for FCrDNS). Faults and counts start clean in every test.
- ``rbldnsd``: one real rbldnsd per session serving the ``RBL_ZONES`` below.
  Shared: tests must not ``reload`` it (start their own ``Rbldnsd``).
- ``redis_server``: a real redis-server per test on a free port.

A missing binary skips the test, except under ``CI=true`` where it fails:
CI must run everything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from fastlookup.testing import (
    DnsServer,
    Rbldnsd,
    RedisServer,
    ServerNotFound,
    Zone,
    everything_ip4set,
    everything_ip6trie,
    rfc5782_dnset,
    rfc5782_ip4set,
    rfc5782_ip6trie,
    soa_line,
)

DATA = Path(__file__).parent / "data"
DNS_RECORDS = DATA / "dns_records.json"

# Spamhaus answers 127.255.255.254 to queries that come through a public resolver.
SPAMHAUS_PUBLIC_RESOLVER = "127.255.255.254"

RBL_ZONES = {
    # An IPv4+IPv6 DNSBL with its RFC 5782 test points and a few listings.
    "bl.test": [
        (
            "ip4set",
            soa_line("bl.test", ttl_s=60, minimum_s=30)
            + rfc5782_ip4set(
                {"192.0.2.99": (2, "Listed: see https://bl.test/$"), "198.51.100.0/24": (4, "Listed range $")}
            ),
        ),
        ("ip6trie", rfc5782_ip6trie({"2001:db8:bad::/48": (2, "Listed v6 $")})),
    ],
    # A domain list (RHSBL/DBL) with its RFC 5782 test points.
    "dbl.test": [
        (
            "dnset",
            soa_line("dbl.test")
            + rfc5782_dnset({"spam.example": (2, "Spam domain"), "*.spammy.example": (3, "Spammy subdomain")}),
        ),
    ],
    # A broken list that lists the whole world, 127.0.0.1 included.
    "listall.test": [("ip4set", everything_ip4set(2, "everything")), ("ip6trie", everything_ip6trie(2))],
    # A list answering with Spamhaus-style error codes for every query.
    "errorcode.test": [
        ("ip4set", everything_ip4set(SPAMHAUS_PUBLIC_RESOLVER, "Error: open resolver; see https://errorcode.test/")),
    ],
}


def skip_or_fail(why: str) -> NoReturn:
    """A missing prerequisite (binary, package, root): skip the test, or fail it under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: missing prerequisites fail)")
    pytest.skip(why)


def start_or_skip(start: Callable[[], object], what: str) -> None:
    """Turn a missing server binary into a skip, or a failure under ``CI=true``."""
    try:
        start()
    except ServerNotFound as exc:
        skip_or_fail(f"{what}: {exc}")


def dns_zone() -> Zone:
    """A fresh copy of the default test zone (tests may change it)."""
    return Zone.from_json(json.loads(DNS_RECORDS.read_text(encoding="utf-8")))


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A threaded DnsServer with the default zone; fails the test if it hit an internal error."""
    with DnsServer(zone=dns_zone()) as srv:
        yield srv
        assert srv.errors == [], "the test DNS server raised while answering"


@pytest.fixture(scope="session")
def rbldnsd() -> Iterator[Rbldnsd]:
    """One real rbldnsd for the session serving ``RBL_ZONES`` (read-only: do not reload it)."""
    server = Rbldnsd(RBL_ZONES, ttl_s=60)
    start_or_skip(server.start, "rbldnsd fixture")
    yield server
    server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free 127.0.0.1 port, stopped by pid after the test."""
    server = RedisServer()
    start_or_skip(server.start, "redis_server fixture")
    yield server
    server.stop()
