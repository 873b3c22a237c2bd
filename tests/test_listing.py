"""Blocklist logic on answers: reply-code filters, error codes, profiles, key masking, FCrDNS."""

from __future__ import annotations

import pytest

from fastlookup.checks.codes import CodeFilter
from fastlookup.checks.fcrdns import fcrdns, fcrdns_wire
from fastlookup.checks.listing import dnsbl_listing, dnsbl_queries, listing_wire, rhsbl_listing, rhsbl_queries
from fastlookup.checks.zones import ZoneRegistry
from fastlookup.config import ZoneConfig
from fastlookup.errors import ConfigError, InvalidArgument
from fastlookup.model import Answer
from fastlookup.names import client_ip, parse_ip


def table_get(table: dict):
    """A ``get`` over a dict: missing questions are NXDOMAIN."""

    def get(name, rdtype):
        return table.get((name, rdtype), Answer("nxdomain", (), 300))

    return get


@pytest.mark.parametrize(
    "specs, code, expected",
    [
        (["127.0.0.2-127.0.0.11"], "127.0.0.2", True),
        (["127.0.0.2-127.0.0.11"], "127.0.0.11", True),
        (["127.0.0.2-127.0.0.11"], "127.0.0.12", False),
        (["127.0.0.2"], "127.0.0.2", True),
        (["127.0.0.0/24"], "127.0.0.200", True),
        (["127.0.0.[2..11]"], "127.0.0.5", True),
        (["=127.0.0.[2..11]"], "127.0.0.1", False),
        (["127.0.[0..255].[1;3]"], "127.0.9.3", True),
        (["127.0.[0..255].[1;3]"], "127.0.9.2", False),
        (["127.0.0.2", "127.0.0.10-127.0.0.14"], "127.0.0.12", True),
        (["127.0.0.2"], "not-an-ip", False),
    ],
)
def test_code_filters(specs, code, expected):
    """Ranges, networks, single codes and Postfix octet patterns all filter reply codes."""
    assert CodeFilter.parse(specs).match(code) is expected


@pytest.mark.parametrize("bad", ["127.0.0.300", "127.0.0.9-127.0.0.2", "127.0.[1..999].1", "zen"])
def test_bad_code_filter_names_the_key(bad):
    """A bad filter fails with a message naming the key and the bad value."""
    with pytest.raises(ConfigError, match=r"dnsbl.x.codes\[0\]"):
        CodeFilter.parse([bad], "dnsbl.x.codes")


def test_profiles_apply_to_bare_zone_names():
    """A bare zen.spamhaus.org gets Spamhaus's listing and error codes without config."""
    zone = ZoneRegistry().get("zen.spamhaus.org")
    assert zone.classify(("127.0.0.2",)) == (("127.0.0.2",), False)
    assert zone.classify(("127.255.255.254",)) == ((), True)
    assert zone.classify(("127.0.0.12",)) == ((), False)


def test_access_key_is_masked_in_display():
    """A DQS zone with an access key shows as ***.zen.dq.spamhaus.net, never the key."""
    zone = ZoneRegistry().get("secretkey123.zen.dq.spamhaus.net")
    assert zone.display == "***.zen.dq.spamhaus.net"
    assert zone.name == "secretkey123.zen.dq.spamhaus.net"
    assert "secretkey123" not in repr(zone.display)


def test_config_overrides_profile_and_postfix_spec():
    """Config codes override a profile; a zone=pattern*weight spec overrides both."""
    reg = ZoneRegistry({"zen.spamhaus.org": ZoneConfig(codes=("127.0.0.4",), weight=2.0)})
    zone = reg.get("zen.spamhaus.org")
    assert zone.weight == 2.0 and zone.classify(("127.0.0.2",))[0] == ()
    spec = reg.get("zen.spamhaus.org=127.0.0.[2..3]*3")
    assert spec.weight == 3.0 and spec.classify(("127.0.0.3",))[0] == ("127.0.0.3",)


def test_zone_lists_are_built_once_and_still_checked():
    """The same list of zones gives the same built tuple, as a list or a tuple; a bad list is refused every time."""
    reg = ZoneRegistry()
    built = reg.many(["a.test", "b.test"])
    assert reg.many(("a.test", "b.test")) is built and reg.many(["a.test", "b.test"]) is built
    assert reg.many(["a.test", "b.test"], "rhsbl") is not built
    for bad in (["a.test", {"x": 1}], ["a.test", 5], "a.test", None):
        with pytest.raises(InvalidArgument, match="zones"):
            reg.many(bad)


def test_bad_zone_name_is_invalid_argument():
    """A zone that is not a domain name is refused."""
    with pytest.raises(InvalidArgument):
        ZoneRegistry().get("not a zone")


def test_dnsbl_listing_hits_errors_and_failures():
    """Hits carry codes and TXT; list error codes and odd answers are unknown, never hits."""
    ip = parse_ip("192.0.2.9")
    reg = ZoneRegistry()
    zones = reg.many(["bl.test", "zen.spamhaus.org", "fail.test", "odd.test", "clean.test"])
    get = table_get(
        {
            ("9.2.0.192.bl.test", "A"): Answer("ok", ("127.0.0.2",), 300),
            ("9.2.0.192.bl.test", "TXT"): Answer("ok", ("listed, see http://bl.test",), 300),
            ("9.2.0.192.zen.spamhaus.org", "A"): Answer("ok", ("127.255.255.254",), 300),
            ("9.2.0.192.fail.test", "A"): Answer("timeout"),
            ("9.2.0.192.odd.test", "A"): Answer("ok", ("192.0.2.1",), 300),
        }
    )
    listing = dnsbl_listing(get, ip, zones).to_wire()
    assert listing["listed"] is True
    assert listing["hits"] == [{"zone": "bl.test", "codes": ["127.0.0.2"], "text": "listed, see http://bl.test"}]
    assert listing["unknown"] == [
        {"zone": "zen.spamhaus.org", "status": "list_error"},
        {"zone": "fail.test", "status": "timeout"},
        {"zone": "odd.test", "status": "list_error"},
    ]


def test_disabled_zone_is_unknown_without_a_question():
    """A zone taken out of use answers unknown/disabled and asks nothing."""
    asked = []

    def get(name, rdtype):
        asked.append(name)
        return Answer("nxdomain")

    reg = ZoneRegistry()
    listing = dnsbl_listing(get, parse_ip("192.0.2.9"), reg.many(["bl.test"]), {"bl.test"})
    assert listing.to_wire()["unknown"] == [{"zone": "bl.test", "status": "disabled"}] and asked == []


def test_listing_without_txt_has_no_text():
    """A hit whose TXT is missing has text None (the policy supplies a useful one)."""
    get = table_get({("example.com.dbl.test", "A"): Answer("ok", ("127.0.1.2",), 300)})
    listing = rhsbl_listing(get, "example.com", ZoneRegistry().many(["dbl.test"], "rhsbl"))
    assert listing.to_wire()["hits"] == [{"zone": "dbl.test", "codes": ["127.0.1.2"], "text": None}]


def test_listing_reports_pending_while_answers_missing():
    """A pass with missing answers asks every zone's question at once."""
    asked = []

    def get(name, rdtype):
        asked.append((name, rdtype))
        return None

    dnsbl_listing(get, parse_ip("192.0.2.9"), ZoneRegistry().many(["a.test", "b.test", "c.test"]))
    assert asked == [("9.2.0.192.a.test", "A"), ("9.2.0.192.b.test", "A"), ("9.2.0.192.c.test", "A")]


PTR = "9.2.0.192.in-addr.arpa"


FCRDNS_CASES = [
        ({}, "none", None),
        ({(PTR, "PTR"): Answer("timeout")}, "temperror", None),
        ({(PTR, "PTR"): Answer("ok", ("host.example",), 60), ("host.example", "A"): Answer("ok", ("192.0.2.9",), 60)}, "pass", "host.example"),
        ({(PTR, "PTR"): Answer("ok", ("a.example", "b.example"), 60), ("b.example", "A"): Answer("ok", ("192.0.2.9",), 60)}, "pass", "b.example"),
        ({(PTR, "PTR"): Answer("ok", ("host.example",), 60), ("host.example", "A"): Answer("ok", ("192.0.2.10",), 60)}, "fail", None),
        ({(PTR, "PTR"): Answer("ok", ("host.example",), 60), ("host.example", "A"): Answer("servfail")}, "temperror", None),
        ({(PTR, "PTR"): Answer("ok", ("bad name!",), 60)}, "fail", None),
]


@pytest.mark.parametrize("table, result, confirmed", FCRDNS_CASES)
def test_fcrdns_results(table, result, confirmed):
    """FCrDNS is pass when a PTR name maps back, none without PTR, fail or temperror otherwise."""
    out = fcrdns(table_get(table), parse_ip("192.0.2.9"))
    assert out is not None and out.result == result and out.confirmed == confirmed


@pytest.mark.parametrize("ip", ["192.0.2.9", "::ffff:192.0.2.9"])
@pytest.mark.parametrize("table, result, confirmed", FCRDNS_CASES)
def test_fcrdns_wire_is_the_typed_result_as_a_map(ip, table, result, confirmed):
    """The fcrdns method's map, built from a ClientIP, is the Confirmation's to_wire() of the same answers."""
    get = table_get(table)
    assert fcrdns_wire(get, client_ip(ip)) == fcrdns(get, parse_ip(ip)).to_wire()
    assert fcrdns(get, client_ip(ip)) == fcrdns(get, parse_ip(ip))


def test_fcrdns_wire_is_none_while_answers_are_missing():
    """Like fcrdns, the map form is None while the PTR answer is still missing."""
    assert fcrdns_wire(lambda name, rdtype: None, client_ip("192.0.2.9")) is None


LISTING_ANSWERS = {
    ("9.2.0.192.bl.test", "A"): Answer("ok", ("127.0.0.2",), 300),
    ("9.2.0.192.bl.test", "TXT"): Answer("ok", ("listed, see http://bl.test",), 300),
    ("9.2.0.192.zen.spamhaus.org", "A"): Answer("ok", ("127.255.255.254",), 300),
    ("9.2.0.192.fail.test", "A"): Answer("timeout"),
    ("9.2.0.192.odd.test", "A"): Answer("ok", ("192.0.2.1",), 300),
    ("example.com.dbl.test", "A"): Answer("ok", ("127.0.1.2",), 300),
}


@pytest.mark.parametrize(
    "zones, disabled",
    [
        (["bl.test", "zen.spamhaus.org", "fail.test", "odd.test", "clean.test"], set()),
        (["bl.test", "zen.spamhaus.org", "fail.test"], {"bl.test"}),
        (["clean.test"], set()),
    ],
)
def test_listing_wire_is_the_typed_listing_as_a_map(zones, disabled):
    """The dnsbl method's map, from names built once per call, is the Listing's to_wire() of the same answers."""
    get = table_get(LISTING_ANSWERS)
    built = ZoneRegistry().many(zones)
    queries = dnsbl_queries(client_ip("192.0.2.9").labels, built)
    assert listing_wire(get, queries, disabled) == dnsbl_listing(get, parse_ip("192.0.2.9"), built, disabled).to_wire()


def test_rhsbl_queries_leave_out_a_zone_whose_name_would_be_too_long():
    """A domain that makes a name over 253 characters under one zone is asked only under the others."""
    domain = ".".join(["a" * 60] * 3) + ".example"  # 191 characters
    zones = ZoneRegistry().many(["dbl.test", "x" * 61 + ".test"], "rhsbl")
    assert [name for _, name in rhsbl_queries(domain, zones)] == [domain + ".dbl.test"]
    get = table_get(LISTING_ANSWERS)
    assert listing_wire(get, rhsbl_queries("example.com", zones)) == rhsbl_listing(get, "example.com", zones).to_wire()


def test_fcrdns_fan_out_is_bounded():
    """At most 10 PTR names are followed forward."""
    names = tuple(f"h{i}.example" for i in range(50))
    asked = []

    def get(name, rdtype):
        asked.append(rdtype)
        return Answer("ok", names, 60) if rdtype == "PTR" else Answer("nxdomain")

    assert fcrdns(get, parse_ip("192.0.2.9")).result == "fail"
    assert asked.count("A") == 10


def test_fcrdns_ipv6_uses_aaaa():
    """An IPv6 client is confirmed through AAAA records."""
    ip = parse_ip("2001:db8::9")
    from fastlookup.names import reverse_name

    get = table_get({(reverse_name(ip), "PTR"): Answer("ok", ("v6.example",), 60), ("v6.example", "AAAA"): Answer("ok", ("2001:db8::9",), 60)})
    assert fcrdns(get, ip).result == "pass"
