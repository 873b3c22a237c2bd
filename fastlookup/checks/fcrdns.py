"""Forward-confirmed reverse DNS: PTR names, then A/AAAA of each, bounded fan-out.

``pass`` when one PTR name resolves back to the IP; ``none`` when there is
no PTR; ``fail`` when names exist but none resolves back; ``temperror``
when upstream could not answer in time (the PTR, or a forward lookup that
might have matched). At most ``MAX_NAMES`` PTR names are followed, as a
PTR set with hundreds of names is an attack on the checker, not a host.
"""

from __future__ import annotations

from ..errors import InvalidArgument
from ..lookup import Get
from ..model import Confirmation
from ..names import IPAddress, normalize_domain, reverse_name

__all__ = ["fcrdns", "MAX_NAMES"]

MAX_NAMES = 10


def fcrdns(get: Get, ip: IPAddress) -> Confirmation | None:
    """The Confirmation of ``ip``, or None while answers are still missing."""
    ptr = get(reverse_name(ip), "PTR")
    if ptr is None:
        return None
    if ptr.status in ("nxdomain", "nodata") or (ptr.status == "ok" and not ptr.records):
        return Confirmation("none")
    if ptr.status != "ok":
        return Confirmation("temperror")
    names: list[str] = []
    for record in ptr.records:
        try:
            names.append(normalize_domain(record, "ptr"))
        except InvalidArgument:
            continue  # a PTR that is not a host name cannot confirm anything
        if len(names) == MAX_NAMES:
            break
    rdtype = "A" if ip.version == 4 else "AAAA"
    want = str(ip)
    pending = False
    temp = False
    for name in names:
        answer = get(name, rdtype)
        if answer is None:
            pending = True
        elif answer.status == "ok" and want in answer.records:
            return Confirmation("pass", tuple(names), name)
        elif answer.failed:
            temp = True
    if pending:
        return None
    return Confirmation("temperror" if temp else "fail", tuple(names))
