"""Turning client input into DNS query names, or refusing it.

Every name fastlookup sends upstream is built here, so bad input becomes an
``InvalidArgument`` before any query is made:

* DNSBL names per RFC 5782 §2.1 (IPv4: reversed octets) and §2.4 (IPv6: the
  32 reversed nibbles of the fully expanded address); an IPv4-mapped IPv6
  address (``::ffff:a.b.c.d``) is treated as the IPv4 address it carries,
  since that is the client MTAs actually see.
* Domain names (RHSBL, HELO, sender domains): lower-cased, trailing dot
  removed, IDNs converted to A-labels (IDNA 2008 with UTS #46 mapping), label
  (63) and name (253) length limits of RFC 1035 §2.3.4 checked.

Results are memoised: the same client IPs and domains recur constantly. A
memo is keyed on the text as sent, so every memoised function refuses text
over a small bound (``MAX_IP_CHARS``, ``MAX_NAME_CHARS``) before it is
cached: failures are never memoised, so each cache holds at most 65,536
entries of at most that many characters each (``normalize_domain``, the
largest: ~50 MB at the very worst, with every entry a distinct 260-character
text; typical traffic repeats a few thousand names).
Scoped IPv6 (``fe80::1%eth0``) is refused: a zone index names an interface
of the sender's host, nothing a DNS name can carry.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import NamedTuple

from .errors import InvalidArgument

__all__ = [
    "IPAddress",
    "ClientIP",
    "parse_ip",
    "client_ip",
    "reverse_name",
    "reversed_labels",
    "dnsbl_name",
    "normalize_domain",
    "rhsbl_name",
    "domain_of_address",
    "MAX_IP_CHARS",
    "MAX_NAME_CHARS",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Letters, digits, hyphen; underscore too, since HELO names and some list
# entries carry it. Anything else (spaces, slashes, '@'...) is not a DNS name.
#: The longest text accepted as an address (an IPv4-mapped IPv6 in brackets with spaces to spare)
#: and as a domain name (253 characters, a trailing dot and a little whitespace).
MAX_IP_CHARS = 64
MAX_NAME_CHARS = 260

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


@lru_cache(maxsize=65536)
def parse_ip(text: str) -> IPAddress:
    """Parse an IPv4/IPv6 address; IPv4-mapped IPv6 becomes its IPv4 address."""
    if not isinstance(text, str):
        raise InvalidArgument(f"ip: expected a string, got {type(text).__name__}")
    if len(text) > MAX_IP_CHARS:
        raise InvalidArgument(f"ip: {len(text)} characters is not an IPv4 or IPv6 address")
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise InvalidArgument(f"ip: {text[:64]!r} is not an IPv4 or IPv6 address") from None
    if ip.version == 6 and ip.scope_id is not None:
        raise InvalidArgument(f"ip: {text[:64]!r} has a zone index (%...); give the address without it")
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _reversed_labels(ip: IPAddress) -> str:
    if ip.version == 4:
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(ip.exploded.replace(":", "")))


@lru_cache(maxsize=65536)
def reverse_name(ip: IPAddress) -> str:
    """The PTR query name: ``4.3.2.1.in-addr.arpa`` or the ``ip6.arpa`` nibbles."""
    return _reversed_labels(ip) + (".in-addr.arpa" if ip.version == 4 else ".ip6.arpa")


@lru_cache(maxsize=65536)
def reversed_labels(ip: IPAddress) -> str:
    """The RFC 5782 labels of ``ip`` (§2.1 octets, §2.4 nibbles): a DNSBL name is ``labels + "." + zone``."""
    return _reversed_labels(ip)


def dnsbl_name(ip: IPAddress, zone: str) -> str:
    """The RFC 5782 query name of ``ip`` under ``zone`` (zone already normalised)."""
    return reversed_labels(ip) + "." + zone


class ClientIP(NamedTuple):
    """A client address and every name the checks build from it.

    What the hot path needs per call, computed once per address: hashing an
    ``ip_address`` (the key of the caches above) runs Python code (~0.5 µs)
    and ``str()`` of one ~1.9 µs, while the text a client sent hashes in C.
    """

    ip: IPAddress
    text: str  # the canonical form, as A/AAAA records give it
    labels: str  # RFC 5782 §2.1/§2.4 reversed labels: a DNSBL name is ``labels + "." + zone``
    ptr: str  # the PTR query name (``reverse_name``)


@lru_cache(maxsize=65536)
def client_ip(text: str) -> ClientIP:
    """``parse_ip(text)`` with its names; memoised by the text (InvalidArgument as ``parse_ip``)."""
    ip = parse_ip(text)
    return ClientIP(ip, str(ip), reversed_labels(ip), reverse_name(ip))


@lru_cache(maxsize=65536)
def normalize_domain(text: str, what: str = "domain") -> str:
    """Lower-case, strip the trailing dot, convert IDN to A-labels, check limits.

    ``what`` names the argument in the error message (``"domain"``, ``"helo"``).
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"{what}: expected a string, got {type(text).__name__}")
    if len(text) > MAX_NAME_CHARS:
        raise InvalidArgument(f"{what}: name is {len(text)} characters long, the limit is 253")
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidArgument(f"{what}: empty name")
    if not name.isascii():
        try:
            import idna  # only loaded for non-ASCII input

            name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise InvalidArgument(f"{what}: {text[:64]!r} is not a valid internationalised name ({exc})") from None
    name = name.lower()
    if len(name) > 253:
        raise InvalidArgument(f"{what}: name is {len(name)} characters long, the limit is 253")
    for label in name.split("."):
        if not label:
            raise InvalidArgument(f"{what}: {text[:64]!r} has an empty label")
        if len(label) > 63:
            raise InvalidArgument(f"{what}: label {label[:20]!r}... is {len(label)} characters long, the limit is 63")
        if not _LABEL.match(label):
            raise InvalidArgument(f"{what}: {text[:64]!r} is not a valid DNS name")
    return name


def rhsbl_name(domain: str, zone: str) -> str:
    """The RHSBL query name ``domain.zone``, refusing one over 253 characters."""
    name = domain + "." + zone
    if len(name) > 253:
        raise InvalidArgument(f"domain: {domain[:64]!r} under zone {zone!r} makes a name over 253 characters")
    return name


def domain_of_address(address: str | None) -> str | None:
    """The domain of an envelope address (``<user@dom>``), or None for ``<>``/no '@'."""
    if not address:
        return None
    addr = address.strip().strip("<>")
    at = addr.rfind("@")
    if at < 0 or at == len(addr) - 1:
        return None
    return addr[at + 1 :]
