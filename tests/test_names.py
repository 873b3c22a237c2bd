"""Name construction: RFC 5782 DNSBL names, PTR names, domain normalising, bad input."""

from __future__ import annotations

import pytest

from fastlookup.errors import InvalidArgument
from fastlookup.names import (
    client_ip,
    dnsbl_name,
    domain_of_address,
    normalize_domain,
    parse_ip,
    reverse_name,
    reversed_labels,
    rhsbl_name,
)

NIBBLES_2001_DB8_1 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"


@pytest.mark.parametrize(
    "ip, zone, expected",
    [
        ("192.0.2.99", "bl.test", "99.2.0.192.bl.test"),
        ("127.0.0.2", "zen.spamhaus.org", "2.0.0.127.zen.spamhaus.org"),
        ("::ffff:192.0.2.99", "bl.test", "99.2.0.192.bl.test"),
        ("::FFFF:7F00:2", "bl.test", "2.0.0.127.bl.test"),
        ("2001:db8::1", "bl.test", NIBBLES_2001_DB8_1 + ".bl.test"),
        ("2001:DB8:0:0:0:0:0:1", "bl.test", NIBBLES_2001_DB8_1 + ".bl.test"),
        (" 10.0.0.1 ", "bl.test", "1.0.0.10.bl.test"),
    ],
)
def test_dnsbl_names_follow_rfc5782(ip, zone, expected):
    """IPv4 reverses octets, IPv6 uses 32 reversed nibbles, mapped IPv6 is IPv4 (RFC 5782 §2.1, §2.4)."""
    assert dnsbl_name(parse_ip(ip), zone) == expected


@pytest.mark.parametrize(
    "ip, expected",
    [
        ("192.0.2.1", "1.2.0.192.in-addr.arpa"),
        ("2001:db8::1", NIBBLES_2001_DB8_1 + ".ip6.arpa"),
        ("::ffff:192.0.2.1", "1.2.0.192.in-addr.arpa"),
    ],
)
def test_reverse_names(ip, expected):
    """PTR names use in-addr.arpa and ip6.arpa (mapped addresses as IPv4)."""
    assert reverse_name(parse_ip(ip)) == expected


@pytest.mark.parametrize("ip", ["192.0.2.1", " 10.0.0.1 ", "::ffff:192.0.2.1", "2001:DB8::1", "[2001:db8::1]"])
def test_client_ip_holds_the_names_built_from_the_address(ip):
    """A ClientIP carries the parsed address, its canonical text, its DNSBL labels and its PTR name."""
    parsed = parse_ip(ip)
    client = client_ip(ip)
    assert client.ip == parsed and client.text == str(parsed) and client.ptr == reverse_name(parsed)
    assert client.labels == reversed_labels(parsed) and client.labels + ".bl.test" == dnsbl_name(parsed, "bl.test")


def test_client_ip_refuses_what_parse_ip_refuses():
    """A bad address is the same InvalidArgument through client_ip."""
    with pytest.raises(InvalidArgument, match="ip:"):
        client_ip("1.2.3.256")


@pytest.mark.parametrize("bad", ["", "1.2.3", "1.2.3.256", "example.com", "::g", "1.2.3.4/32", "999.1.1.1"])
def test_bad_ips_are_invalid_argument(bad):
    """Anything that is not an IP address is refused before any query."""
    with pytest.raises(InvalidArgument, match="ip:"):
        parse_ip(bad)


def test_non_string_ip_is_invalid_argument():
    """A number where an IP string belongs is refused with a clear message."""
    with pytest.raises(InvalidArgument, match="expected a string"):
        parse_ip(12345)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Example.COM.", "example.com"),
        ("mail.example.com", "mail.example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("münchen.de.", "xn--mnchen-3ya.de"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_domains_are_normalised(name, expected):
    """Domains are lower-cased, lose the trailing dot and become A-labels."""
    assert normalize_domain(name) == expected


@pytest.mark.parametrize(
    "bad, why",
    [
        ("", "empty"),
        (".", "empty"),
        ("a..b", "empty label"),
        ("a" * 64 + ".com", "limit is 63"),
        (".".join(["a" * 60] * 5), "limit is 253"),
        ("exa mple.com", "not a valid DNS name"),
        ("user@example.com", "not a valid DNS name"),
        ("-bad-.com", "not a valid DNS name"),
        ("a/b.com", "not a valid DNS name"),
    ],
)
def test_bad_domains_are_invalid_argument(bad, why):
    """Names breaking label or length limits, or with bad characters, are refused."""
    with pytest.raises(InvalidArgument, match=why):
        normalize_domain(bad)


def test_rhsbl_name_refuses_overlong_result():
    """A domain that fits alone but not under the zone is refused, not truncated."""
    domain = ".".join(["a" * 60] * 4)  # 243 characters
    with pytest.raises(InvalidArgument, match="253"):
        rhsbl_name(domain, "dbl.example.org")
    assert rhsbl_name("example.com", "dbl.test") == "example.com.dbl.test"


@pytest.mark.parametrize(
    "address, domain",
    [
        ("user@example.com", "example.com"),
        ("<user@Example.com>", "Example.com"),
        ("<>", None),
        ("", None),
        (None, None),
        ("postmaster", None),
        ("a@b@c.example", "c.example"),
    ],
)
def test_domain_of_address(address, domain):
    """The domain of an envelope address is the part after the last '@'; <> has none."""
    assert domain_of_address(address) == domain
