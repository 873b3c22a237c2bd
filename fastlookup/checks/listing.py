"""DNSBL and RHSBL listings (RFC 5782): one A question per zone, TXT on a hit.

Not listed (NXDOMAIN/NODATA, or codes outside the zone's filter) is the
common case and a value, never an error. A list's error codes (e.g. Spamhaus
``127.255.255.254``, "query via public resolver") and answers outside
127.0.0.0/8 are never hits: they go to ``unknown`` with status
``list_error``. Upstream failures go to ``unknown`` with the answer status.
"""

from __future__ import annotations

from ..lookup import Get
from ..model import Hit, Listing, Unknown
from ..names import IPAddress, dnsbl_name, rhsbl_name
from .zones import Zone

__all__ = ["listing", "dnsbl_listing", "rhsbl_listing", "join_txt"]


def join_txt(records: tuple[str, ...]) -> str | None:
    return "; ".join(records) if records else None


def listing(get: Get, queries: list[tuple[Zone, str]], disabled: set[str] = frozenset()) -> Listing:  # type: ignore[assignment]
    """The listing of one item over ``(zone, query name)`` pairs."""
    hits: list[Hit] = []
    unknown: list[Unknown] = []
    for zone, qname in queries:
        if zone.name in disabled:
            unknown.append(Unknown(zone.display, "disabled"))
            continue
        answer = get(qname, "A")
        if answer is None:
            continue
        status = answer.status
        if status == "ok":
            codes, error = zone.classify(answer.records)
            if codes:
                txt = get(qname, "TXT")
                text = join_txt(txt.records) if txt is not None and txt.status == "ok" else None
                hits.append(Hit(zone.display, codes, text))
            elif error:
                unknown.append(Unknown(zone.display, "list_error"))
        elif status != "nxdomain" and status != "nodata":
            unknown.append(Unknown(zone.display, status))
    return Listing(tuple(hits), tuple(unknown))


def dnsbl_listing(get: Get, ip: IPAddress, zones: tuple[Zone, ...], disabled: set[str] = frozenset()) -> Listing:  # type: ignore[assignment]
    return listing(get, [(z, dnsbl_name(ip, z.name)) for z in zones], disabled)


def rhsbl_listing(get: Get, domain: str, zones: tuple[Zone, ...], disabled: set[str] = frozenset()) -> Listing:  # type: ignore[assignment]
    queries = []
    for z in zones:
        try:
            queries.append((z, rhsbl_name(domain, z.name)))
        except Exception:  # name too long under this zone: it cannot be listed there
            continue
    return listing(get, queries, disabled)
