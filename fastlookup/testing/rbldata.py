"""rbldnsd data files for tests, with the RFC 5782 section 5 test entries built in.

RFC 5782 section 5 asks every DNSxL to list its test points so clients can
check that a list works: IPv4 lists MUST list 127.0.0.2 and MUST NOT list
127.0.0.1, IPv6 lists list ::FFFF:7F00:2 and not ::FFFF:7F00:1, domain lists
list ``TEST`` and not ``INVALID``. The helpers here always add those, so every
test zone is a well-behaved list unless a test builds a broken one on purpose
(``everything_ip4set``: a list that lists the world, 127.0.0.1 included).

rbldnsd data format (``man rbldnsd``), as used here: one entry per line,
``ENTRY :A-VALUE:TXT`` gives an entry its own A record and TXT template, a
leading ``!`` excludes (whatever the order of the lines), ``$`` in a TXT is
replaced by the queried IP. Gotcha: ip4set rejects ``0.0.0.0/0``; write the
whole space as the range ``0.0.0.0-255.255.255.255``.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "Listing",
    "rfc5782_ip4set",
    "rfc5782_ip6trie",
    "rfc5782_dnset",
    "everything_ip4set",
    "everything_ip6trie",
    "soa_line",
    "TEST_TXT",
]

Listing = tuple[str | int, str | None]
"""(A value, TXT): the A value as ``"127.0.0.4"`` or just its last octet ``4``; TXT may be None."""

TEST_TXT = "RFC 5782 test entry"


def _value(listing: Listing) -> str:
    code, txt = listing
    a_value = f"127.0.0.{code}" if isinstance(code, int) else code
    if txt is not None and "\n" in txt:
        raise ValueError(f"rbldnsd TXT {txt!r}: a TXT template cannot contain a newline")
    return f":{a_value}:{txt or ''}"


def _entries(head: list[str], listed: Mapping[str, Listing] | None) -> str:
    lines = list(head)
    for entry, listing in (listed or {}).items():
        if entry.startswith("!"):
            raise ValueError(f"rbldnsd entry {entry!r}: give exclusions in the data text, not as a listing")
        lines.append(f"{entry} {_value(listing)}")
    return "\n".join(lines) + "\n"


def rfc5782_ip4set(listed: Mapping[str, Listing] | None = None, *, test_txt: str = TEST_TXT) -> str:
    """ip4set data listing ``listed`` (IPs, CIDRs, ranges) plus 127.0.0.2, and never 127.0.0.1."""
    head = [
        "# RFC 5782 section 5: 127.0.0.2 is listed, 127.0.0.1 is not (the ! wins over any range).",
        f"127.0.0.2 {_value(('127.0.0.2', test_txt))}",
        "!127.0.0.1",
    ]
    return _entries(head, listed)


def rfc5782_ip6trie(listed: Mapping[str, Listing] | None = None, *, test_txt: str = TEST_TXT) -> str:
    """ip6trie data listing ``listed`` (IPv6 CIDRs) plus ::FFFF:7F00:2, and never ::FFFF:7F00:1."""
    head = [
        "# RFC 5782 section 5: ::FFFF:7F00:2 is listed, ::FFFF:7F00:1 is not.",
        f"::ffff:7f00:2 {_value(('127.0.0.2', test_txt))}",
        "!::ffff:7f00:1",
    ]
    return _entries(head, listed)


def rfc5782_dnset(listed: Mapping[str, Listing] | None = None, *, test_txt: str = TEST_TXT) -> str:
    """dnset data listing ``listed`` (names; ``*.x`` subdomains, ``.x`` both) plus ``test``, never ``invalid``."""
    head = [
        "# RFC 5782 section 5: TEST is listed, INVALID is not.",
        f"test {_value(('127.0.0.2', test_txt))}",
        "!invalid",
    ]
    return _entries(head, listed)


def everything_ip4set(code: str | int = "127.0.0.2", txt: str | None = None) -> str:
    """ip4set data listing every IPv4 address, 127.0.0.1 included: a broken "listed-the-world" list."""
    return f"0.0.0.0-255.255.255.255 {_value((code, txt))}\n"


def everything_ip6trie(code: str | int = "127.0.0.2", txt: str | None = None) -> str:
    """ip6trie data listing every IPv6 address."""
    return f"::/0 {_value((code, txt))}\n"


def soa_line(zone: str, ttl_s: int = 60, minimum_s: int = 60) -> str:
    """A ``$SOA`` line for ``zone``; without one rbldnsd's negative answers carry no SOA (uncacheable).

    Note rbldnsd itself sends the SOA in negative answers with TTL
    ``min(ttl_s, minimum_s)`` (RFC 2308 section 3); serial 0 means "the data file's mtime".
    """
    zone = zone.rstrip(".")
    return f"$SOA {ttl_s} ns.{zone}. hostmaster.{zone}. 0 1h 10m 1d {minimum_s}\n"
