"""Judging one check's answer against the workload's truth, the same way for every contender.

A contender reduces what it got to *facts* -- the PTR names, the FCrDNS
result, the listing zones with their reply text for the DNSBL and RHSBL
sides -- and ``judge`` compares them, all of them, with what the workload
put in the servers. A part that could not be answered (a zone in
``unknown``, a ``timeout``/``servfail`` status, ``temperror``) raises
``Unknown``: it is reported in its own column and counted as a failure,
never as a success; a part that disagrees raises ``WrongAnswer``.

The service contenders (floor, fastlookup) go through ``service_facts``,
which reads the wire shapes of ``docs/protocol.md``.
"""

from __future__ import annotations

from typing import Any

from .base import Unknown, WrongAnswer
from ..workload import Host, Workload

__all__ = ["Facts", "expected_facts", "judge", "service_facts", "INCOMPLETE_STATUSES"]

#: Answer statuses that are not an answer (protocol.md "Answer").
INCOMPLETE_STATUSES = frozenset({"timeout", "servfail", "refused", "error"})

Facts = dict[str, Any]  # {"ptr": tuple[str, ...], "fcrdns": str, "dnsbl": {zone: text}, "rhsbl": {zone: text}}


def _name(text: str) -> str:
    return text.rstrip(".").lower()


def expected_facts(workload: Workload, host: Host) -> Facts:
    """What a correct, complete check of ``host`` finds."""
    exp = workload.expected(host)
    return {
        "ptr": tuple(sorted(_name(n) for n in exp["ptr"]["records"])),
        "fcrdns": exp["fcrdns"]["result"],
        "dnsbl": {h["zone"]: h["text"] for h in exp["dnsbl"]["hits"]},
        "rhsbl": {h["zone"]: h["text"] for h in exp["rhsbl"]["hits"]},
    }


def judge(workload: Workload, host: Host, got: Facts) -> None:
    """Raise ``WrongAnswer`` naming the first part of ``got`` that differs from the truth."""
    want = expected_facts(workload, host)
    for part in ("ptr", "fcrdns", "dnsbl", "rhsbl"):
        if got[part] != want[part]:
            raise WrongAnswer(f"{part} of {host.ip}: got {got[part]!r}, the workload says {want[part]!r}")


def _listing(part: str, listing: Any) -> dict[str, str]:
    if listing["unknown"]:
        raise Unknown(f"{part}: zones could not answer: {listing['unknown']}")
    hits = {h["zone"]: h["text"] for h in listing["hits"]}
    if bool(listing["listed"]) != bool(hits):
        raise WrongAnswer(f"{part}: listed={listing['listed']} but hits {hits}")
    return hits


def service_facts(ptr: Any, fcrdns: Any, dnsbl: Any, rhsbl: Any) -> Facts:
    """Facts from the four wire results of a service (raises ``Unknown`` for an incomplete one)."""
    if ptr["status"] in INCOMPLETE_STATUSES:
        raise Unknown(f"ptr: status {ptr['status']}")
    if fcrdns["result"] == "temperror":
        raise Unknown("fcrdns: temperror")
    names = tuple(sorted(_name(n) for n in ptr["records"])) if ptr["status"] == "ok" else ()
    return {
        "ptr": names,
        "fcrdns": fcrdns["result"],
        "dnsbl": _listing("dnsbl", dnsbl),
        "rhsbl": _listing("rhsbl", rhsbl),
    }
