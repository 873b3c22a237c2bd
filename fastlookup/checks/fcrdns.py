"""Forward-confirmed reverse DNS: PTR names, then A/AAAA of each, bounded fan-out.

``pass`` when one PTR name resolves back to the IP; ``none`` when there is
no PTR; ``fail`` when names exist but none resolves back; ``temperror``
when upstream could not answer in time (the PTR, or a forward lookup that
might have matched). At most ``MAX_NAMES`` PTR names are followed, as a
PTR set with hundreds of names is an attack on the checker, not a host.

``ip`` may be a ``names.ClientIP``, whose PTR name and text are built once
per address rather than on every pass (the ``fcrdns`` method's hot path).
"""

from __future__ import annotations

from ..errors import InvalidArgument
from ..lookup import Get
from ..model import Confirmation
from ..names import ClientIP, IPAddress, normalize_domain, reverse_name

__all__ = ["fcrdns", "fcrdns_wire", "MAX_NAMES"]

MAX_NAMES = 10


def fcrdns(get: Get, ip: IPAddress | ClientIP) -> Confirmation | None:
    """The Confirmation of ``ip``, or None while answers are still missing."""
    found = _confirm(get, ip)
    return None if found is None else Confirmation(*found)


def fcrdns_wire(get: Get, ip: IPAddress | ClientIP) -> dict | None:
    """``fcrdns(...).to_wire()`` without building the Confirmation first (the ``fcrdns`` method)."""
    found = _confirm(get, ip)
    if found is None:
        return None
    result, names, confirmed = found
    return {"result": result, "names": list(names), "confirmed": confirmed}


_NONE = ("none", (), None)
_TEMPERROR = ("temperror", (), None)


def _confirm(get: Get, ip: IPAddress | ClientIP) -> tuple[str, tuple[str, ...], str | None] | None:
    """``(result, names, confirmed)``, the fields of the Confirmation, or None while answers are missing."""
    client = ip if type(ip) is ClientIP else None
    if client is not None:
        ip = client.ip
    ptr = get(reverse_name(ip) if client is None else client.ptr, "PTR")
    if ptr is None:
        return None
    if ptr.status in ("nxdomain", "nodata") or (ptr.status == "ok" and not ptr.records):
        return _NONE
    if ptr.status != "ok":
        return _TEMPERROR
    names: list[str] = []
    for record in ptr.records:
        try:
            names.append(normalize_domain(record, "ptr"))
        except InvalidArgument:
            continue  # a PTR that is not a host name cannot confirm anything
        if len(names) == MAX_NAMES:
            break
    rdtype = "A" if ip.version == 4 else "AAAA"
    want = str(ip) if client is None else client.text
    pending = False
    temp = False
    for name in names:
        answer = get(name, rdtype)
        if answer is None:
            pending = True
        elif answer.status == "ok" and want in answer.records:
            return "pass", tuple(names), name
        elif answer.failed:
            temp = True
    if pending:
        return None
    return "temperror" if temp else "fail", tuple(names), None
