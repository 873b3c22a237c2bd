"""List health (RFC 5782 §5 probes): broken zones are taken out of use and put back when fixed."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from fastlookup.config import load_config
from fastlookup.health import ProbeResult, ZoneHealth, judge
from fastlookup.service import Service
from fastlookup.testing import Rbldnsd, everything_ip4set, rfc5782_dnset, rfc5782_ip4set, soa_line

from fixtures_servers import start_or_skip

LISTED_IP = "192.0.2.99"  # listed on bl.test (the session rbldnsd)
CLEAN_IP = "192.0.2.1"


def make_config(tmp_path: Path, port: int, *, dnsbl=(), rhsbl=(), policy_dnsbl=(), policy_rhsbl=()):
    """The config of a service asking the rbldnsd on ``port``, with health probing off (tests drive it)."""
    return load_config(
        environ={},
        overrides={
            "server": {"socket": str(tmp_path / "fl.sock")},
            "upstream": {"servers": [f"127.0.0.1:{port}"], "timeout_s": 0.5, "attempts": 2},
            "health": {"interval_s": 0},
            "dnsbl": {z: {} for z in dnsbl},
            "rhsbl": {z: {} for z in rhsbl},
            "policy": {"default": {"dnsbl": list(policy_dnsbl), "rhsbl": list(policy_rhsbl)}},
        },
    )


def make_service(tmp_path: Path, port: int, **zones) -> Service:
    """An in-process Service (not started: no socket) for ``make_config``."""
    return Service(make_config(tmp_path, port, **zones))


def probe(must: bool, outcome: str) -> ProbeResult:
    return ProbeResult("x.zone", must, outcome)


@pytest.mark.parametrize(
    "results, status",
    [
        ([probe(True, "listed"), probe(False, "not_listed")], "ok"),
        ([probe(True, "listed"), probe(False, "not_listed"), probe(True, "not_listed"), probe(False, "not_listed")], "ok"),
        ([probe(True, "listed"), probe(False, "listed")], "listed_all"),
        ([probe(True, "listed"), probe(False, "listed_other")], "listed_all"),
        ([probe(True, "error_code"), probe(False, "error_code")], "list_error"),
        ([probe(True, "listed"), probe(False, "error_code")], "list_error"),
        ([probe(True, "not_listed"), probe(False, "not_listed")], "no_test_point"),
        ([probe(True, "failed"), probe(False, "failed")], "unreachable"),
        ([probe(True, "failed"), probe(False, "not_listed")], "unreachable"),
        ([probe(True, "listed"), probe(False, "failed")], "unreachable"),
        ([probe(True, "failed"), probe(False, "listed")], "listed_all"),
    ],
)
def test_judge_table(results, status):
    """One round's probe outcomes map to a status: a wrong listing or an error code always wins."""
    assert judge(results) == status


def test_probe_all_judges_every_configured_zone(rbldnsd, tmp_path):
    """Healthy DNSBL and RHSBL zones are ok; the listed-the-world and error-code zones are taken out of use."""

    async def main():
        service = make_service(
            tmp_path, rbldnsd.port,
            dnsbl=["errorcode.test"], rhsbl=["dbl.test"], policy_dnsbl=["bl.test", "listall.test"],
        )
        health = ZoneHealth(service)
        try:
            statuses = await health.probe_all()
        finally:
            await service.upstream.close()
        return service, statuses

    service, statuses = asyncio.run(main())
    assert statuses == {"bl.test": "ok", "listall.test": "listed_all", "errorcode.test": "list_error", "dbl.test": "ok"}
    assert service.zones.disabled == {"listall.test", "errorcode.test"}
    gauges = service.stats.gauges["zone_disabled"]
    assert gauges == {("bl.test",): 0.0, ("listall.test",): 1.0, ("errorcode.test",): 1.0, ("dbl.test",): 0.0}
    snapshot = service.stats.snapshot()
    assert snapshot["zone_disabled/listall.test"] == 1.0 and snapshot["zone_disabled/bl.test"] == 0.0
    assert service.stats.counters["health_probes"][("listall.test", "listed_all")] == 1


def test_broken_zone_is_skipped_and_healthy_zone_still_rejects(rbldnsd, tmp_path, caplog):
    """With listall.test disabled a clean IP is accepted (fail open), a listed IP is still rejected by bl.test."""

    async def main():
        service = make_service(tmp_path, rbldnsd.port, policy_dnsbl=["bl.test", "listall.test"])
        health = ZoneHealth(service)
        try:
            before = await service.call("check", {"ip": CLEAN_IP})
            await health.probe_all()
            await health.probe_all()  # a second round changes nothing and logs nothing new
            clean = await service.call("check", {"ip": "192.0.2.2"})
            listed = await service.call("check", {"ip": LISTED_IP})
        finally:
            await service.upstream.close()
        return before, clean, listed

    with caplog.at_level(logging.INFO, logger="fastlookup.health"):
        before, clean, listed = asyncio.run(main())
    assert before["action"] == "reject"  # what a dead list does to good mail without health probes
    assert clean["action"] == "accept" and clean["fail_open"] is True
    assert any(r["zone"] == "listall.test" and "disabled" in r["detail"] for r in clean["reasons"])
    assert listed["action"] == "reject" and listed["smtp_code"] == 554
    assert [r["zone"] for r in listed["reasons"] if "disabled" not in r["detail"]] == ["bl.test"]
    out_of_use = [r for r in caplog.records if "taken out of use" in r.getMessage()]
    assert len(out_of_use) == 1 and "listall.test" in out_of_use[0].getMessage()


def test_zone_comes_back_when_fixed(tmp_path, caplog):
    """A zone that lists the world is disabled, and after an rbldnsd reload with sane data it is used again.

    Answers cached while it was broken are forgotten, so a clean IP checked then is not rejected after.
    """
    healthy = soa_line("good.test") + rfc5782_ip4set({LISTED_IP: (2, "Listed $")})
    rbl = Rbldnsd({"good.test": ("ip4set", healthy), "flaky.test": ("ip4set", everything_ip4set(2, "all"))})
    start_or_skip(rbl.start, "rbldnsd")
    try:

        async def main():
            service = make_service(tmp_path, rbl.port, policy_dnsbl=["good.test", "flaky.test"])
            health = ZoneHealth(service)
            try:
                cached_wrong = await service.call("check", {"ip": CLEAN_IP})  # before any probe: cached as listed
                first = await health.probe_all()
                broken_check = await service.call("check", {"ip": CLEAN_IP})
                await asyncio.to_thread(
                    rbl.reload,
                    {"good.test": ("ip4set", healthy), "flaky.test": ("ip4set", rfc5782_ip4set({"203.0.113.7": (2, None)}))},
                )
                second = await health.probe_all()
                fixed_check = await service.call("check", {"ip": CLEAN_IP})
                flaky_hit = await service.call("check", {"ip": "203.0.113.7"})
            finally:
                await service.upstream.close()
            return service, cached_wrong, first, broken_check, second, fixed_check, flaky_hit

        with caplog.at_level(logging.INFO, logger="fastlookup.health"):
            service, cached_wrong, first, broken_check, second, fixed_check, flaky_hit = asyncio.run(main())
    finally:
        rbl.stop()
    assert cached_wrong["action"] == "reject"
    assert first == {"good.test": "ok", "flaky.test": "listed_all"}
    assert broken_check["action"] == "accept" and broken_check["fail_open"] is True
    assert second == {"good.test": "ok", "flaky.test": "ok"}
    assert service.zones.disabled == set()
    assert service.stats.gauges["zone_disabled"][("flaky.test",)] == 0.0
    assert fixed_check["action"] == "accept" and fixed_check["fail_open"] is False
    assert flaky_hit["action"] == "reject" and flaky_hit["reasons"][0]["zone"] == "flaky.test"
    assert any("back in use" in r.getMessage() for r in caplog.records)


def test_missing_test_point_warns_without_disabling(tmp_path, caplog):
    """A zone that does not list 127.0.0.2 but lists nothing wrongly stays in use, with one warning."""
    rbl = Rbldnsd({"notest.test": ("ip4set", f"{LISTED_IP} :127.0.0.2:listed\n")})
    start_or_skip(rbl.start, "rbldnsd")
    try:

        async def main():
            service = make_service(tmp_path, rbl.port, policy_dnsbl=["notest.test"])
            health = ZoneHealth(service)
            try:
                statuses = [await health.probe_all(), await health.probe_all()]
                listed = await service.call("check", {"ip": LISTED_IP})
            finally:
                await service.upstream.close()
            return service, statuses, listed

        with caplog.at_level(logging.WARNING, logger="fastlookup.health"):
            service, statuses, listed = asyncio.run(main())
    finally:
        rbl.stop()
    assert statuses == [{"notest.test": "no_test_point"}] * 2
    assert service.zones.disabled == set()
    assert listed["action"] == "reject"
    warnings = [r for r in caplog.records if "test point" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_rhsbl_listing_invalid_is_disabled(tmp_path):
    """An RHSBL that lists INVALID (RFC 5782 §5: must not) is taken out of use; one listing TEST is fine."""
    rbl = Rbldnsd({
        "dom.test": ("dnset", rfc5782_dnset({"spam.example": (2, None)})),
        "baddom.test": ("dnset", "test :127.0.0.2:\ninvalid :127.0.0.2:\n"),
    })
    start_or_skip(rbl.start, "rbldnsd")
    try:

        async def main():
            service = make_service(tmp_path, rbl.port, rhsbl=["dom.test", "baddom.test"])
            try:
                return service, await ZoneHealth(service).probe_all()
            finally:
                await service.upstream.close()

        service, statuses = asyncio.run(main())
    finally:
        rbl.stop()
    assert statuses == {"dom.test": "ok", "baddom.test": "listed_all"}
    assert service.zones.disabled == {"baddom.test"}


def test_unreachable_zone_keeps_its_state(tmp_path):
    """Probes that time out change nothing: a disabled zone stays disabled, a healthy one stays in use."""
    rbl = Rbldnsd({"flaky.test": ("ip4set", everything_ip4set(2))})
    start_or_skip(rbl.start, "rbldnsd")

    async def main():
        service = make_service(tmp_path, rbl.port, policy_dnsbl=["flaky.test"])
        health = ZoneHealth(service, timeout_s=0.3)
        try:
            first = await health.probe_all()
            await asyncio.to_thread(rbl.stop)
            second = await health.probe_all()
        finally:
            await service.upstream.close()
        return service, first, second

    try:
        service, first, second = asyncio.run(main())
    finally:
        rbl.stop()
    assert first == {"flaky.test": "listed_all"}
    assert second == {"flaky.test": "unreachable"}
    assert service.zones.disabled == {"flaky.test"}


def test_periodic_probing_starts_with_a_round_and_stops(rbldnsd, tmp_path):
    """start() probes at once and then on its interval; stop() ends the task and keeps the last state."""

    async def main():
        service = make_service(tmp_path, rbldnsd.port, policy_dnsbl=["bl.test", "listall.test"])
        health = ZoneHealth(service, interval_s=3600)
        try:
            round_done = health.next_round()
            health.start()
            statuses = await asyncio.wait_for(round_done, timeout=10)
            await health.stop()
        finally:
            await service.upstream.close()
        return service, health, statuses

    service, health, statuses = asyncio.run(main())
    assert statuses == {"bl.test": "ok", "listall.test": "listed_all"}
    assert health.rounds == 1 and health.disabled == {"listall.test"}
    assert service.zones.disabled == {"listall.test"}


def test_zero_interval_means_no_probing(tmp_path):
    """With health.interval_s = 0, start() starts nothing."""

    async def main():
        service = make_service(tmp_path, 9, policy_dnsbl=["bl.test"])
        health = ZoneHealth(service)
        health.start()
        task = health._task
        await health.stop()
        await service.upstream.close()
        return task

    assert asyncio.run(main()) is None


def test_reload_that_drops_a_disabled_zone_forgets_it(rbldnsd, tmp_path):
    """After a reload removes a disabled zone from the config, it leaves zones.disabled and the gauge."""

    async def main():
        service = make_service(tmp_path, rbldnsd.port, policy_dnsbl=["bl.test", "listall.test"])
        health = ZoneHealth(service)
        try:
            await health.probe_all()
            before = set(service.zones.disabled)
            smaller = make_config(tmp_path, rbldnsd.port, policy_dnsbl=["bl.test"])
            assert service.reload(smaller)
            after = await health.probe_all()
        finally:
            await service.upstream.close()
        return service, before, after

    service, before, after = asyncio.run(main())
    assert before == {"listall.test"}
    assert after == {"bl.test": "ok"}
    assert service.zones.disabled == set()
    assert service.stats.gauges["zone_disabled"] == {("bl.test",): 0.0}
