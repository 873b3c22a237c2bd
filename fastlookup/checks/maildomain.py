"""Can a domain receive mail? MX, else A/AAAA (RFC 5321 §5.1), null MX (RFC 7505).

Used for ``sender_domain_exists``: a sender domain that cannot receive mail
cannot receive the bounce either. Outcomes are values:

* ``exists``     — an MX host, or (no MX at all) an A or AAAA record;
* ``nxdomain``   — the name does not exist;
* ``null_mx``    — only the null MX ``0 .``: the domain says it takes no mail;
* ``no_address`` — the name exists but has neither MX nor A/AAAA;
* ``temperror``  — upstream could not answer (the check is skipped, fail open);
* ``None``       — answers are still missing (see ``fastlookup.lookup``).
"""

from __future__ import annotations

from ..lookup import Get

__all__ = ["mail_domain", "OUTCOMES"]

OUTCOMES = ("exists", "nxdomain", "null_mx", "no_address", "temperror")
_ROOT = frozenset({".", "", "@"})


def _exchange(record: str) -> str:
    """The host of an MX rdata text ``"10 mx.example."``."""
    parts = record.split(None, 1)
    return parts[-1].strip() if parts else ""


def mail_domain(get: Get, domain: str) -> str | None:
    """The outcome for ``domain`` (already normalised), or None while answers are missing."""
    mx = get(domain, "MX")
    if mx is None:
        return None
    if mx.status == "ok" and mx.records:
        # RFC 7505 §3: a null MX is the only MX of its domain; should a
        # broken zone mix it with real hosts, the real hosts count.
        if any(_exchange(r) not in _ROOT for r in mx.records):
            return "exists"
        return "null_mx"
    if mx.status == "nxdomain":
        return "nxdomain"
    if mx.failed:
        return "temperror"
    # NODATA: no MX, so the domain itself is the implicit MX (RFC 5321 §5.1).
    a = get(domain, "A")
    aaaa = get(domain, "AAAA")
    if a is None or aaaa is None:
        return None
    if (a.ok and a.records) or (aaaa.ok and aaaa.records):
        return "exists"
    if a.failed or aaaa.failed:
        return "temperror"
    return "no_address"
