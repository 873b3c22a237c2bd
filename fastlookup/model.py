"""Frozen result types of the wire contract (``../shared/protocol.md``).

Only the standard library is imported here: the sync client and the hot path
use these types. Each type converts to the exact map of the contract with
``to_wire()``; results travel as those maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "STATUSES",
    "RDTYPES",
    "TIERS",
    "Answer",
    "Confirmation",
    "Hit",
    "Unknown",
    "Listing",
    "Reason",
    "Verdict",
]

#: Every status an Answer can carry; outcomes are values, never exceptions.
STATUSES = ("ok", "nxdomain", "nodata", "servfail", "refused", "timeout", "error")
#: Record types the ``query`` method accepts.
RDTYPES = ("A", "AAAA", "PTR", "TXT", "MX", "NS", "CNAME", "SOA")
#: Where an answer came from.
TIERS = ("memory", "redis", "upstream", "stale")

#: Negative answers (cached with their SOA-derived TTL, RFC 2308) and failures
#: (cached only briefly, never shared); "ok" is the one positive status.
NEGATIVE = frozenset({"nxdomain", "nodata"})
FAILURES = frozenset({"servfail", "refused", "timeout", "error"})


class Answer(NamedTuple):
    """One DNS answer: status, records as text, seconds of freshness left, tier.

    A NamedTuple rather than a frozen dataclass: every memory hit builds one,
    and a tuple is built in a third of the time (0.24 vs 0.81 µs measured),
    while staying immutable and typed.
    """

    status: str
    records: tuple[str, ...] = ()
    ttl: int = 0
    source: str = "upstream"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        """True when upstream could not give a real answer (servfail, timeout...)."""
        return self.status in FAILURES

    def to_wire(self) -> dict:
        return {"status": self.status, "records": list(self.records), "ttl": self.ttl, "from": self.source}


@dataclass(frozen=True, slots=True)
class Confirmation:
    """Forward-confirmed reverse DNS of one IP."""

    result: str  # pass | fail | none | temperror
    names: tuple[str, ...] = ()
    confirmed: str | None = None

    def to_wire(self) -> dict:
        return {"result": self.result, "names": list(self.names), "confirmed": self.confirmed}


@dataclass(frozen=True, slots=True)
class Hit:
    """A zone that lists the queried item, with the reply codes and TXT text."""

    zone: str
    codes: tuple[str, ...]
    text: str | None = None
    source: str | None = None  # "mirror" when a local copy of the list answered (wire: "from")

    def to_wire(self) -> dict:
        if self.source is not None:
            return {"zone": self.zone, "codes": list(self.codes), "text": self.text, "from": self.source}
        return {"zone": self.zone, "codes": list(self.codes), "text": self.text}


@dataclass(frozen=True, slots=True)
class Unknown:
    """A zone that could not answer: timeout, servfail, list_error, disabled..."""

    zone: str
    status: str

    def to_wire(self) -> dict:
        return {"zone": self.zone, "status": self.status}


@dataclass(frozen=True, slots=True)
class Listing:
    """The DNSBL/RHSBL result for one IP or domain over a set of zones."""

    hits: tuple[Hit, ...] = ()
    unknown: tuple[Unknown, ...] = ()
    mirrored: tuple[str, ...] = ()  # zones answered from a local copy (wire: "mirror", only when any)

    @property
    def listed(self) -> bool:
        return bool(self.hits)

    def to_wire(self) -> dict:
        out = {
            "listed": bool(self.hits),
            "hits": [h.to_wire() for h in self.hits],
            "unknown": [u.to_wire() for u in self.unknown],
        }
        if self.mirrored:
            out["mirror"] = list(self.mirrored)
        return out


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason behind a verdict: which check, which zone, what it saw."""

    check: str
    zone: str | None
    detail: str

    def to_wire(self) -> dict:
        return {"check": self.check, "zone": self.zone, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an MTA should do with a connection, and why."""

    action: str  # accept | reject | defer
    smtp_code: int | None = None
    text: str = ""
    score: float = 0.0
    reasons: tuple[Reason, ...] = ()
    fail_open: bool = False
    elapsed_ms: float = 0.0
    tag: bool = False  # accept with reasons for a header (policy action "tag")

    def to_wire(self) -> dict:
        out = {
            "action": self.action,
            "smtp_code": self.smtp_code,
            "text": self.text,
            "score": self.score,
            "reasons": [r.to_wire() for r in self.reasons],
            "fail_open": self.fail_open,
            "elapsed_ms": self.elapsed_ms,
        }
        if self.tag:
            out["tag"] = True
        return out
