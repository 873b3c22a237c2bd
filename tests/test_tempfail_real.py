"""tempfail = "auto" on a real service: answers to other methods prove upstream healthy, a blackholed upstream does not.

A real fastlookup service (``ServiceThread``, its own ``UpstreamPool``) asks
the project's test DNS server, where the client's reverse zone
(``5.113.0.203.in-addr.arpa``) answers SERVFAIL. The policy checks nothing but
``require_ptr = "defer"``, so the ``check`` itself asks only that failing PTR:
whether it defers depends on what upstream answered to *other* calls before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from fastlookup.client import Client
from fastlookup.health import ZoneHealth
from fastlookup.service import Service
from fastlookup.testing.service import ServiceThread, service_config

CLIENT = "203.0.113.5"
REVERSE = "5.113.0.203.in-addr.arpa"
LIST = "bl.example.test"  # a DNSBL zone inside the test server's example.test zone

# Warm-ups: calls of methods other than check, each answered by the test DNS server.
WARM_UPS: dict[str, Callable[[Client, ServiceThread], list[str]]] = {
    "none": lambda c, s: [],
    "ptr": lambda c, s: [c.ptr("192.0.2.1")["status"]],
    "dnsbl": lambda c, s: ["ok" if c.dnsbl("192.0.2.1", [LIST])["listed"] else "unknown"],
    "query": lambda c, s: [c.query("example.test", "MX")["status"]],
    "batch": lambda c, s: [r[1]["status"] for r in c.batch([("a", {"name": "host.example.test"})])["results"]],
    # a front end (Postfix policy, socketmap, Exim line) reaches the service in-process
    "front": lambda c, s: [s.call("ptr", {"ip": "192.0.2.25"})["status"]],
    # a reload builds a new policy engine: what upstream answered before it still counts
    "ptr, then reload": lambda c, s: [c.ptr("192.0.2.1")["status"]] + ([] if s.reload(s.config) else ["reload failed"]),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "warm_up, blackholed, action, code, fail_open",
    [
        ("ptr", None, "defer", 450, False),
        ("dnsbl", None, "defer", 450, False),
        ("query", None, "defer", 450, False),
        ("batch", None, "defer", 450, False),
        ("front", None, "defer", 450, False),
        ("ptr, then reload", None, "defer", 450, False),
        ("none", None, "accept", None, True),  # nothing else answered: the PTR's own SERVFAIL proves nothing
        # upstream blackholed from the start, the client's reverse zone still SERVFAILs: nothing else answers
        ("ptr", "from the start", "accept", None, True),
        # upstream answered, then went dark: the check's PTR times out, no reply at all -> our outage
        ("ptr", "after the warm-up", "accept", None, True),
    ],
)
def test_answers_to_other_methods_make_a_servfailing_reverse_zone_defer(
    short_tmp, dns_server, warm_up, blackholed, action, code, fail_open
):
    """After ptr/dnsbl/query/batch/front calls answered by upstream, a check whose reverse zone SERVFAILs gets 450; blackholed, it fails open."""
    dns_server.add(f"1.2.0.192.{LIST}", "A", ["127.0.0.2"])
    dns_server.set_faults(REVERSE, servfail=True)
    if blackholed == "from the start":
        dns_server.set_faults(drop=True)  # everything else: never answered (the name rule above still SERVFAILs)
    policy: dict[str, Any] = {"allow": [], "dnsbl": [], "rhsbl": [], "require_ptr": "defer", "tempfail": "auto",
                              "deadline_s": 1.0}
    config = service_config(f"{short_tmp}/fl.sock", [dns_server.address], policy={"default": policy})
    with ServiceThread(config) as svc, svc.client(timeout=5.0) as client:
        statuses = WARM_UPS[warm_up](client, svc)
        # the warm-up's answers came from upstream (real answers, or timeouts when blackholed)
        assert set(statuses) <= ({"timeout"} if blackholed == "from the start" else {"ok", "nxdomain", "nodata"}), statuses
        assert len(statuses) == (warm_up != "none")
        if blackholed == "after the warm-up":
            dns_server.clear_faults(REVERSE)
            dns_server.set_faults(drop=True)
        verdict = client.check(CLIENT)
    assert (verdict["action"], verdict.get("smtp_code"), verdict["fail_open"]) == (action, code, fail_open)
    details = [r["detail"] for r in verdict["reasons"]]
    if action == "defer":
        assert verdict["text"] == f"cannot find your reverse hostname, [{CLIENT}]"
        assert "temporary failure: servfail; upstream answers other questions: the client's DNS fails" in details
    else:
        status = "timeout" if blackholed == "after the warm-up" else "servfail"
        assert any(d.startswith(f"skipped: {status} (upstream not answering") for d in details), details


@pytest.mark.slow
def test_zone_health_probes_count_as_upstream_answers(rbldnsd, short_tmp):
    """A round of list health probes answered by upstream (a real rbldnsd) makes upstream count as healthy."""
    config = service_config(f"{short_tmp}/fl.sock", [rbldnsd.address], policy={"default": {"dnsbl": ["bl.test"]}})

    async def main() -> tuple[bool, bool, dict]:
        service = Service(config)
        try:
            before = service.upstream_seen.healthy()
            statuses = await ZoneHealth(service).probe_all()
            return before, service.upstream_seen.healthy(), statuses
        finally:
            await service.upstream.close()

    assert asyncio.run(main()) == (False, True, {"bl.test": "ok"})
