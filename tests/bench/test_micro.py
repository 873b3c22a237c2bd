"""Micro-benchmarks of the hot path's pieces (pytest-benchmark).

The normal test run passes ``--benchmark-disable`` (pyproject's addopts), so
each runs once as a plain test that checks its result. For numbers:

    .venv/bin/python -m pytest tests/bench --benchmark-enable

Pieces: frame decode and encode (``fastlookup.wire``), key building
(``names.dnsbl_name``, the cache key), a memory hit (``Resolver.peek``), a
whole DNSBL call answered from memory (``lookup.try_sync``), and a policy
verdict on a warm cache (``checks.policy`` when present).
"""

from __future__ import annotations

import importlib.util
import time

import pytest

from bench.memory_tier import NoUpstream
from fastlookup import rpc
from fastlookup.cache.entry import Entry, TtlPolicy
from fastlookup.cache.memory import MemoryCache, make_key
from fastlookup.checks.listing import dnsbl_listing
from fastlookup.checks.zones import ZoneRegistry
from fastlookup.lookup import MISSING, try_sync
from fastlookup.names import dnsbl_name, parse_ip, reverse_name
from fastlookup.resolver import Resolver
from fastlookup.stats import Stats
from fastlookup.wire import Decoder, encode_request, encode_response, parse_request

pytestmark = pytest.mark.benchmark(group="hot-path")

ZONES = ("bl0.bench.test", "bl1.bench.test", "bl2.bench.test")
IP = "198.18.3.4"
PTR_NAME = "h3-4.d1.test"
LISTING = {
    "listed": True,
    "hits": [{"zone": "bl0.bench.test", "codes": ["127.0.0.2"], "text": "Listed by bl0.bench.test: 198.18.3.4"}],
    "unknown": [],
}


def _answer_for(name: str, rdtype: str) -> Entry:
    """What the benchmark's upstream would say: the client has a PTR that confirms, bl0 lists it."""
    now = time.monotonic()
    if rdtype == "PTR":
        return Entry("ok", (PTR_NAME,), 3600, now + 3600, now + 7200)
    if rdtype == "A" and name == PTR_NAME:
        return Entry("ok", (IP,), 3600, now + 3600, now + 7200)
    if name.endswith(".bl0.bench.test"):
        value = "127.0.0.2" if rdtype == "A" else "Listed by bl0.bench.test: 198.18.3.4"
        return Entry("ok", (value,), 3600, now + 3600, now + 7200)
    if rdtype == "MX":
        return Entry("ok", ("10 mx.d1.test",), 3600, now + 3600, now + 7200)
    return Entry("nxdomain", (), 3600, now + 3600, now + 3900)


def _warm(resolver: Resolver, evaluate) -> None:
    """Answer every question ``evaluate`` asks from ``_answer_for`` until it needs no more."""
    for _ in range(8):
        result, lookup = try_sync(resolver, evaluate)
        if result is not MISSING:
            return
        for name, rdtype in lookup.missing:
            resolver.memory.put(make_key(name, rdtype), _answer_for(name, rdtype))
    raise AssertionError("the evaluator kept asking new questions")


@pytest.fixture
def resolver() -> Resolver:
    return Resolver(NoUpstream(), MemoryCache(10_000), TtlPolicy(), prefetch=False)


@pytest.fixture
def dnsbl_evaluate(resolver):
    ip = parse_ip(IP)
    zones = ZoneRegistry().many(list(ZONES))

    def evaluate(get):
        return dnsbl_listing(get, ip, zones).to_wire()

    _warm(resolver, evaluate)
    return evaluate


def test_decode_request_frame(benchmark):
    """Decoding and validating one dnsbl request frame gives its method and arguments."""
    frame = encode_request(7, "dnsbl", {"ip": IP})
    decoder = Decoder()

    def decode():
        decoder.feed(frame)
        return [parse_request(obj, size) for obj, size in decoder]

    (request,) = benchmark(decode)
    assert request.msgid == 7 and request.method == "dnsbl" and request.args == {"ip": IP}


def test_encode_response_frame(benchmark):
    """Encoding a listing answer gives a msgpack-rpc response frame."""
    frame = benchmark(encode_response, 7, LISTING)
    assert frame[:2] == b"\x94\x01"  # fixarray of 4, type 1 (response)


def test_encode_request_frame(benchmark):
    """Encoding a request (what the sync client does per call) gives a request frame."""
    frame = benchmark(encode_request, 7, "dnsbl", {"ip": IP})
    assert frame[:2] == b"\x94\x00"


def test_dnsbl_name(benchmark):
    """The RFC 5782 query name reverses the octets under the zone."""
    ip = parse_ip(IP)
    assert benchmark(dnsbl_name, ip, "bl0.bench.test") == "4.3.18.198.bl0.bench.test"


def test_reverse_name(benchmark):
    """The PTR name of an IPv4 address is its reversed octets under in-addr.arpa."""
    ip = parse_ip(IP)
    assert benchmark(reverse_name, ip) == "4.3.18.198.in-addr.arpa"


def test_cache_key(benchmark):
    """The cache key of a question is its type and name."""
    assert benchmark(make_key, "4.3.18.198.bl0.bench.test", "A") == "A:4.3.18.198.bl0.bench.test"


def test_memory_hit_peek(benchmark, resolver, dnsbl_evaluate):
    """A fresh memory entry is answered synchronously by ``Resolver.peek``, from memory."""
    answer = benchmark(resolver.peek, "4.3.18.198.bl0.bench.test", "A")
    assert answer is not None and answer.status == "ok" and answer.source == "memory"


def test_dnsbl_call_from_memory(benchmark, resolver, dnsbl_evaluate):
    """A DNSBL call over 3 zones on a warm cache completes in one synchronous pass."""
    result, lookup = benchmark(try_sync, resolver, dnsbl_evaluate)
    assert result is not MISSING and not lookup.missing
    assert result["listed"] and [h["zone"] for h in result["hits"]] == ["bl0.bench.test"]


def test_server_call_without_socket(benchmark, resolver, dnsbl_evaluate):
    """The server's per-call work for a memory hit (decode, prepare, try_sync, encode) yields a response."""
    ctx = rpc.Context(zones=ZoneRegistry(), stats=Stats(), default_dnsbl=ZONES)
    frame = encode_request(9, "dnsbl", {"ip": IP})
    decoder = Decoder()

    def call() -> bytes:
        decoder.feed(frame)
        out = b""
        for obj, size in decoder:
            request = parse_request(obj, size)
            result, _ = try_sync(resolver, rpc.prepare(ctx, request.method, request.args))
            out = encode_response(request.msgid, result)
        return out

    assert benchmark(call)[:3] == b"\x94\x01\x09"


@pytest.mark.skipif(importlib.util.find_spec("fastlookup.checks.policy") is None, reason="no policy engine yet")
def test_policy_verdict_from_memory(benchmark, resolver):
    """A policy check (FCrDNS, 3 DNSBL zones, RHSBL, sender domain) on a warm cache gives a reject verdict."""
    from fastlookup.checks.policy import PolicyEngine
    from fastlookup.config import load_config

    policy = {
        "dnsbl": list(ZONES),
        "rhsbl": ["rhs.bench.test"],
        "require_fcrdns": "reject",
        "sender_domain_exists": "defer",
        "allow": [],
    }
    config = load_config(environ={}, overrides={"policy": {"default": policy}})
    zones = ZoneRegistry(config.dnsbl, config.rhsbl)
    engine = PolicyEngine(config, zones, Stats())
    args = {"ip": IP, "helo": PTR_NAME, "sender": "someone@d1.test"}
    _warm(resolver, engine.prepare(args))

    def verdict():
        return try_sync(resolver, engine.prepare(args))[0]

    result = benchmark(verdict)
    assert result is not MISSING
    assert result["action"] == "reject" and result["reasons"][0]["zone"] == "bl0.bench.test"
