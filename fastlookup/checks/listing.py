"""DNSBL and RHSBL listings (RFC 5782): one A question per zone, TXT on a hit.

Not listed (NXDOMAIN/NODATA, or codes outside the zone's filter) is the
common case and a value, never an error. A list's error codes (e.g. Spamhaus
``127.255.255.254``, "query via public resolver") and answers outside
127.0.0.0/8 are never hits: they go to ``unknown`` with status
``list_error``. Upstream failures go to ``unknown`` with the answer status.

The query names of a call are built once (``dnsbl_queries``,
``rhsbl_queries``), before the first pass. ``listing`` gives the typed
``Listing`` (the policy engine reads it); ``listing_wire`` gives the same
result as the contract's map directly, for the ``dnsbl``/``rhsbl`` methods
that would only convert it.
"""

from __future__ import annotations

from ..lookup import Get
from ..model import Hit, Listing, Unknown
from ..names import IPAddress, reversed_labels, rhsbl_name
from .zones import Zone

__all__ = ["listing", "listing_wire", "dnsbl_listing", "rhsbl_listing", "dnsbl_queries", "rhsbl_queries", "join_txt"]

Queries = list[tuple[Zone, str]]


def join_txt(records: tuple[str, ...]) -> str | None:
    return "; ".join(records) if records else None


def _scan(get: Get, queries: Queries, disabled: set[str]) -> tuple[list, list, list]:
    """``([(display, codes, text, source)], [(display, status)], [mirrored display])`` of one pass.

    A mirrored zone (``zone.mirror``) is answered from its local copy, with
    the same codes filter and error codes as DNS answers; a mirror with no
    copy to answer from (``None``) leaves the zone to DNS.
    """
    hits: list = []
    unknown: list = []
    mirrored: list = []
    for zone, qname in queries:
        if disabled and zone.name in disabled:
            unknown.append((zone.display, "disabled"))
            continue
        mirror = zone.mirror
        if mirror is not None:
            found = mirror.answer(qname)
            if found is not None:
                mirrored.append(zone.display)
                if found[0]:
                    codes, error = zone.classify(found[0])
                    if codes:
                        hits.append((zone.display, codes, join_txt(found[1]), "mirror"))
                    elif error:
                        unknown.append((zone.display, "list_error"))
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
                hits.append((zone.display, codes, text, None))
            elif error:
                unknown.append((zone.display, "list_error"))
        elif status != "nxdomain" and status != "nodata":
            unknown.append((zone.display, status))
    return hits, unknown, mirrored


def listing(get: Get, queries: Queries, disabled: set[str] = frozenset()) -> Listing:  # type: ignore[assignment]
    """The listing of one item over ``(zone, query name)`` pairs."""
    hits, unknown, mirrored = _scan(get, queries, disabled)
    return Listing(
        tuple([Hit(*h) for h in hits]) if hits else (),
        tuple([Unknown(*u) for u in unknown]) if unknown else (),
        tuple(mirrored) if mirrored else (),
    )


def listing_wire(get: Get, queries: Queries, disabled: set[str] = frozenset()) -> dict:  # type: ignore[assignment]
    """``listing(...).to_wire()``, without building the typed objects first."""
    hits, unknown, mirrored = _scan(get, queries, disabled)
    out = {
        "listed": bool(hits),
        "hits": [
            {"zone": zone, "codes": list(codes), "text": text, "from": source}
            if source is not None
            else {"zone": zone, "codes": list(codes), "text": text}
            for zone, codes, text, source in hits
        ],
        "unknown": [{"zone": zone, "status": status} for zone, status in unknown],
    }
    if mirrored:
        out["mirror"] = mirrored
    return out


def dnsbl_queries(labels: str, zones: tuple[Zone, ...]) -> Queries:
    """``(zone, query name)`` pairs of an IP's reversed labels (``names.reversed_labels``), RFC 5782 §2.1/§2.4."""
    return [(z, labels + "." + z.name) for z in zones]


def rhsbl_queries(domain: str, zones: tuple[Zone, ...]) -> Queries:
    """``(zone, query name)`` pairs of a normalised domain; a zone under which the name is too long is left out."""
    queries = []
    for z in zones:
        try:
            queries.append((z, rhsbl_name(domain, z.name)))
        except Exception:  # name too long under this zone: it cannot be listed there
            continue
    return queries


def dnsbl_listing(get: Get, ip: IPAddress, zones: tuple[Zone, ...], disabled: set[str] = frozenset()) -> Listing:  # type: ignore[assignment]
    return listing(get, dnsbl_queries(reversed_labels(ip), zones), disabled)


def rhsbl_listing(get: Get, domain: str, zones: tuple[Zone, ...], disabled: set[str] = frozenset()) -> Listing:  # type: ignore[assignment]
    return listing(get, rhsbl_queries(domain, zones), disabled)
