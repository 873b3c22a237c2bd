"""Mirrored zones in a running service: answered from memory, reloaded, refused when broken."""

from __future__ import annotations

import os

import pytest

from fastlookup.model import Answer
from fastlookup.testing.service import ServiceThread, service_config
from fastlookup.upstream.memory import MemoryUpstream

IP4SET = """\
:2:Listed on mirror.test, see http://mirror.test/$
127.0.0.2 :2:RFC 5782 test entry
!127.0.0.1
192.0.2.0/24
!192.0.2.99
198.51.100.7 :3:three
203.0.113.5 :127.255.255.254:query refused
"""

DNSET = """\
:2:domain $ listed
test
.spam.example
"""


def _write(path: str, text: str, mtime: float | None = None) -> None:
    """Write a copy the way a feed must (temp file + rename), with a new mtime."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.fixture
def files(short_tmp):
    ip4 = os.path.join(short_tmp, "bl.ip4set")
    dn = os.path.join(short_tmp, "dbl.dnset")
    _write(ip4, IP4SET, 1_000_000)
    _write(dn, DNSET, 1_000_000)
    return ip4, dn


@pytest.fixture
def mirrored(short_tmp, files):
    """A service whose ``mirror.test`` (ip4set) and ``dmirror.test`` (dnset) are mirrored; DNS answers nothing."""
    ip4, dn = files
    upstream = MemoryUpstream()
    config = service_config(
        f"{short_tmp}/fl.sock",
        ["127.0.0.1:9"],
        dnsbl={"mirror.test": {"mirror": f"ip4set:{ip4}"}, "dns.test": {}},
        rhsbl={"dmirror.test": {"mirror": f"dnset:{dn}"}},
        policy={"default": {"dnsbl": ["mirror.test"], "rhsbl": ["dmirror.test"], "allow": [], "deadline_s": 1.0}},
    )
    svc = ServiceThread(config, upstream=upstream).start()
    try:
        yield svc, upstream
    finally:
        svc.stop()


def _mirror(svc: ServiceThread, zone: str = "mirror.test"):
    return svc.service.mirrors.table[("dnsbl", zone)]


CASES = [
    # (ip, listed codes, text)
    ("192.0.2.1", ["127.0.0.2"], "Listed on mirror.test, see http://mirror.test/192.0.2.1"),
    ("192.0.2.99", [], None),
    ("198.51.100.7", ["127.0.0.3"], "three"),
    ("127.0.0.2", ["127.0.0.2"], "RFC 5782 test entry"),
    ("127.0.0.1", [], None),
    ("10.0.0.1", [], None),
]


@pytest.mark.parametrize("ip, codes, text", CASES)
def test_dnsbl_answers_a_mirrored_zone_from_memory_without_dns(mirrored, ip, codes, text):
    """A mirrored zone's listing comes from the local copy (``from: mirror``) and no DNS question is asked."""
    svc, upstream = mirrored
    with svc.client() as client:
        result = client.call("dnsbl", {"ip": ip, "zones": ["mirror.test"]})
    assert result["mirror"] == ["mirror.test"]
    if codes:
        assert result["hits"] == [{"zone": "mirror.test", "codes": codes, "text": text, "from": "mirror"}]
    else:
        assert result["hits"] == [] and result["listed"] is False
    assert upstream.queries == []


def test_a_list_error_code_in_the_copy_is_unknown_not_a_hit(mirrored):
    """An error code in the mirrored data (127.255.255.254) is ``list_error``, as from DNS."""
    svc, _ = mirrored
    result = svc.call("dnsbl", {"ip": "203.0.113.5", "zones": ["mirror.test"]})
    assert result["hits"] == [] and result["unknown"] == [{"zone": "mirror.test", "status": "list_error"}]


def test_rhsbl_answers_a_mirrored_dnset_with_the_listed_name(mirrored):
    """An RHSBL dnset mirror lists subdomains of ``.d`` entries, ``$`` being the listed name."""
    svc, upstream = mirrored
    result = svc.call("rhsbl", {"domain": "a.b.spam.example"})
    assert result["hits"] == [{"zone": "dmirror.test", "codes": ["127.0.0.2"], "text": "domain spam.example listed", "from": "mirror"}]
    assert svc.call("rhsbl", {"domain": "example"})["listed"] is False
    assert upstream.queries == []


def test_check_rejects_from_a_mirror_on_the_first_call(mirrored):
    """A cold ``check`` is answered from the mirrors alone: rejected, with no DNS question."""
    svc, upstream = mirrored
    with svc.client() as client:
        verdict = client.call("check", {"ip": "192.0.2.5"})
    assert verdict["action"] == "reject"
    assert any(r["zone"] == "mirror.test" for r in verdict["reasons"])
    assert not [q for q in upstream.queries if q[0].endswith("mirror.test")]


def test_a_zone_without_a_mirror_is_still_asked_by_dns(mirrored):
    """Only mirrored zones skip DNS: an ordinary zone in the same call is asked upstream."""
    svc, upstream = mirrored
    upstream.set("1.2.0.192.dns.test", "A", Answer("ok", ("127.0.0.2",), 60))
    result = svc.call("dnsbl", {"ip": "192.0.2.1", "zones": ["mirror.test", "dns.test"]})
    assert [h["zone"] for h in result["hits"]] == ["mirror.test", "dns.test"]
    assert "from" not in result["hits"][1]
    assert ("1.2.0.192.dns.test", "A") in upstream.queries


def test_a_changed_file_is_loaded_and_swapped_in(mirrored, files):
    """A new copy (new mtime/size) is loaded off the loop and answers from then on; stats show it."""
    svc, _ = mirrored
    ip4, _ = files
    _write(ip4, IP4SET + "10.9.9.9 :4:new entry\n", 1_000_100)
    assert svc.run(lambda: _mirror(svc).refresh()) is True
    result = svc.call("dnsbl", {"ip": "10.9.9.9", "zones": ["mirror.test"]})
    assert result["hits"][0]["codes"] == ["127.0.0.4"]
    stats = svc.call("stats")
    assert stats["mirror_loads/mirror.test"] == 2
    assert stats["mirror_mtime_s/mirror.test"] == 1_000_100
    assert stats["mirror_entries/mirror.test"] == 7  # a /24 is one entry
    assert stats["mirror_bytes/mirror.test"] > 0 and stats["mirror_loaded_at_s/mirror.test"] > 0


BROKEN = [
    ("truncated", IP4SET + "10.9.9.9 :4:cut sho"),
    ("gzip cut short", None),
]


@pytest.mark.parametrize("what, text", BROKEN)
def test_a_broken_file_is_refused_and_the_old_copy_kept(mirrored, files, what, text):
    """A copy cut short is refused (logged, counted), the old data keeps answering, and it is not retried until it changes."""
    svc, _ = mirrored
    ip4, _ = files
    if text is None:
        import gzip

        blob = gzip.compress((IP4SET + "10.9.9.9\n").encode())
        with open(ip4, "wb") as fh:
            fh.write(blob[: len(blob) // 2])
        os.utime(ip4, (1_000_200, 1_000_200))
    else:
        _write(ip4, text, 1_000_200)
    assert svc.run(lambda: _mirror(svc).refresh()) is False
    assert svc.run(lambda: _mirror(svc).refresh()) is False  # the same broken copy is not loaded again
    assert svc.call("dnsbl", {"ip": "192.0.2.1", "zones": ["mirror.test"]})["listed"] is True
    assert svc.call("dnsbl", {"ip": "10.9.9.9", "zones": ["mirror.test"]})["listed"] is False
    stats = svc.call("stats")
    assert stats["mirror_load_errors/mirror.test"] == 1
    assert stats["mirror_answering/mirror.test"] == 1


def test_a_gzipped_copy_is_read(mirrored, files):
    """A gzip-compressed data file (as rbldnsd reads them) loads like the plain one."""
    import gzip

    svc, _ = mirrored
    ip4, _ = files
    with open(ip4 + ".tmp", "wb") as fh:
        fh.write(gzip.compress((IP4SET + "10.9.9.9 :5\n").encode()))
    os.replace(ip4 + ".tmp", ip4)
    assert svc.run(lambda: _mirror(svc).refresh()) is True
    assert svc.call("dnsbl", {"ip": "10.9.9.9", "zones": ["mirror.test"]})["hits"][0]["codes"] == ["127.0.0.5"]


def test_a_mirror_without_data_leaves_the_zone_to_dns(short_tmp):
    """A mirror whose file is missing at start answers nothing: the zone is asked by DNS, and the error is counted."""
    upstream = MemoryUpstream()
    upstream.set("1.2.0.192.mirror.test", "A", Answer("ok", ("127.0.0.2",), 60))
    config = service_config(
        f"{short_tmp}/fl.sock",
        ["127.0.0.1:9"],
        dnsbl={"mirror.test": {"mirror": f"ip4set:{short_tmp}/missing"}},
    )
    with ServiceThread(config, upstream=upstream) as svc:
        result = svc.call("dnsbl", {"ip": "192.0.2.1", "zones": ["mirror.test"]})
        assert result["listed"] is True and "mirror" not in result and "from" not in result["hits"][0]
        assert ("1.2.0.192.mirror.test", "A") in upstream.queries
        stats = svc.call("stats")
        assert stats["mirror_load_errors/mirror.test"] == 1 and stats["mirror_answering/mirror.test"] == 0


def test_reload_keeps_an_unchanged_mirror_and_its_data(mirrored, files, short_tmp):
    """A config reload with the same mirror value keeps the loaded copy (no reload, no gap)."""
    svc, _ = mirrored
    before = _mirror(svc)
    assert svc.reload(svc.service.config) is True
    assert _mirror(svc) is before and before.loads == 1
    assert svc.call("dnsbl", {"ip": "192.0.2.1", "zones": ["mirror.test"]})["listed"] is True


def test_cli_lookup_dnsbl_shows_the_mirror(mirrored):
    """``fastlookup lookup dnsbl`` says a hit (and a clean result) came from the mirror."""
    from click.testing import CliRunner

    from fastlookup import cli

    svc, _ = mirrored
    listed = CliRunner().invoke(cli.main, ["lookup", "dnsbl", "192.0.2.1", "--zone", "mirror.test", "--socket", svc.socket])
    assert listed.exit_code == 1, listed.output
    assert "mirror.test: 127.0.0.2" in listed.output and "(from mirror)" in listed.output
    clean = CliRunner().invoke(cli.main, ["lookup", "dnsbl", "10.0.0.1", "--zone", "mirror.test", "--socket", svc.socket])
    assert clean.exit_code == 0 and "from mirror: mirror.test" in clean.output
    as_json = CliRunner().invoke(cli.main, ["lookup", "dnsbl", "192.0.2.1", "--zone", "mirror.test", "--json", "--socket", svc.socket])
    assert '"from": "mirror"' in as_json.output


@pytest.mark.parametrize("data, status", [(IP4SET, "ok"), (IP4SET + "127.0.0.0/24\n", "ok"), ("0.0.0.0-255.255.255.255\n", "listed_all")])
def test_health_probes_a_mirrored_zone_through_its_copy(short_tmp, data, status):
    """List health judges a mirrored zone by its local data (RFC 5782 test points), not by DNS."""
    from fastlookup.health import ZoneHealth

    path = os.path.join(short_tmp, "bl")
    _write(path, data)
    upstream = MemoryUpstream()
    config = service_config(f"{short_tmp}/fl.sock", ["127.0.0.1:9"], dnsbl={"mirror.test": {"mirror": f"ip4set:{path}"}})
    with ServiceThread(config, upstream=upstream) as svc:
        result = svc.run(lambda: ZoneHealth(svc.service).probe_all())
        assert result == {"mirror.test": status}
        assert upstream.queries == []


@pytest.mark.slow
def test_bench_mirror_runs_and_reports_every_figure(capsys):
    """``python -m bench.mirror`` (tiny) reports load, bytes, lookups, the reload pause and the check comparison."""
    import json

    from bench import mirror as bench_mirror

    assert bench_mirror.main(["--entries", "2000", "--lookups", "1000", "--calls", "100", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["entries"] >= 1900 and result["bytes_per_entry"] == 8.0
    for key in ("load_s", "lookup_us", "lookup_listed_us", "lookup_unlisted_us", "check_mirror_p50_us",
                "check_memory_p50_us", "max_call_ms_during_reload", "reload_s"):
        assert result[key] > 0, key
    assert result["mirror_loads"] == 2


def test_reload_with_a_new_mirror_value_loads_the_new_copy(mirrored, files, short_tmp):
    """A config reload that points a zone at other files replaces its mirror, which answers from the new files."""
    import dataclasses
    import types

    svc, _ = mirrored
    other = os.path.join(short_tmp, "other.ip4set")
    _write(other, "10.7.7.7 :9:other file\n")
    config = svc.service.config
    zone = dataclasses.replace(config.dnsbl["mirror.test"], mirror=f"ip4set:{other}")
    new = dataclasses.replace(config, dnsbl=types.MappingProxyType({**config.dnsbl, "mirror.test": zone}))
    before = _mirror(svc)
    assert svc.reload(new) is True
    after = _mirror(svc)
    assert after is not before
    svc.run(lambda: after.refresh())  # whether or not the background start got there first
    result = svc.call("dnsbl", {"ip": "10.7.7.7", "zones": ["mirror.test"]})
    assert result["hits"][0]["text"] == "other file"
    assert svc.call("dnsbl", {"ip": "192.0.2.1", "zones": ["mirror.test"]})["listed"] is False


@pytest.mark.slow
def test_a_big_copy_loads_in_a_child_process_and_a_broken_one_is_refused_there(mirrored, files):
    """Past ``process_min_bytes`` an IP set loads in a child process: the copy answers, and a copy cut short is still refused."""
    svc, _ = mirrored
    ip4, _ = files
    mirror = _mirror(svc)
    mirror.process_min_bytes = 0  # every size: this file is small
    _write(ip4, IP4SET + "10.8.8.8 :6:loaded by a child\n", 1_000_300)
    assert svc.run(lambda: mirror.refresh(), timeout_s=60.0) is True
    assert mirror.last_loader == "process"
    assert svc.call("dnsbl", {"ip": "10.8.8.8", "zones": ["mirror.test"]})["hits"][0]["text"] == "loaded by a child"
    assert mirror.data.loaded_at > 0
    _write(ip4, IP4SET + "10.8.8.9 :6:cut sh", 1_000_400)
    assert svc.run(lambda: mirror.refresh(), timeout_s=60.0) is False
    assert "last line has no newline" in mirror.last_error
    assert svc.call("dnsbl", {"ip": "10.8.8.8", "zones": ["mirror.test"]})["listed"] is True


def test_a_mirrored_zone_keeps_its_codes_filter_weight_and_message(short_tmp, files):
    """``codes``, ``weight`` and ``message`` of a mirrored zone apply to its local answers as to DNS ones."""
    ip4, _ = files
    config = service_config(
        f"{short_tmp}/fl.sock",
        ["127.0.0.1:9"],
        dnsbl={"mirror.test": {"mirror": f"ip4set:{ip4}", "codes": ["127.0.0.3"], "weight": 2.0,
                               "message": "local copy says $ip: $txt"}},
        policy={"default": {"dnsbl": ["mirror.test"], "allow": [], "deadline_s": 1.0, "threshold": 2.0}},
    )
    with ServiceThread(config, upstream=MemoryUpstream()) as svc:
        assert svc.call("dnsbl", {"ip": "192.0.2.1", "zones": ["mirror.test"]})["listed"] is False  # 127.0.0.2: filtered
        assert svc.call("dnsbl", {"ip": "198.51.100.7", "zones": ["mirror.test"]})["hits"][0]["codes"] == ["127.0.0.3"]
        verdict = svc.call("check", {"ip": "198.51.100.7"})
        assert verdict["action"] == "reject" and verdict["score"] == 2.0
        assert verdict["text"] == "local copy says 198.51.100.7: three"
        assert svc.call("check", {"ip": "192.0.2.1"})["action"] == "accept"
