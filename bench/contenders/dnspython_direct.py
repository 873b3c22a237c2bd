"""dnspython's async resolver making the check itself: straight at upstream, or through unbound.

What a hook written with dnspython does: PTR, then at once the A of each
PTR name (FCrDNS), the IP on every DNSBL zone and the domain on the RHSBL
zone, then the TXT of every zone that listed. No cache (``cache=None``, the
default), so every check asks every question.

* ``dnspython-direct``: PTR/A go to the test DNS server and DNSBL/RHSBL to
  rbldnsd, directly -- no resolver in between.
* ``unbound``: the same code asking the local unbound, warmed by one pass
  over every host first (the common advice: "run a caching resolver").
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.resolver

from ..procs import cpu_seconds
from .base import Contender, Unknown
from .verify import judge

if TYPE_CHECKING:
    from ..runner import Run

__all__ = ["DnspythonContender", "dnspython_check"]

_NOT_LISTED = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)
#: No answer in time, or SERVFAIL from every server: an incomplete check (the Unknown column).
_INCOMPLETE = (dns.exception.Timeout, dns.resolver.NoNameservers)


def _resolver(address: tuple[str, int], timeout_s: float) -> dns.asyncresolver.Resolver:
    r = dns.asyncresolver.Resolver(configure=False)
    r.nameservers = [address[0]]
    r.port = address[1]
    r.lifetime = timeout_s
    r.timeout = timeout_s / 2
    r.cache = None
    return r


def dnspython_check(names_r: dns.asyncresolver.Resolver, lists_r: dns.asyncresolver.Resolver, workload):
    """An ``async check(host)`` over two resolvers (PTR/A, and the lists), judged against ``workload``."""
    zones, rhsbl_zone = workload.zones, workload.rhsbl_zone

    async def listed(name: str) -> str | None:
        """The reply text when listed (A, then TXT as fastlookup fetches it), None when not."""
        try:
            await lists_r.resolve(name, "A")
        except _NOT_LISTED:
            return None
        try:
            answer = await lists_r.resolve(name, "TXT")
        except _NOT_LISTED:
            return ""
        return " ".join(b"".join(rd.strings).decode("utf-8", "replace") for rd in answer)

    async def forward(name: str, ip: str) -> bool:
        try:
            answer = await names_r.resolve(name, "A")
        except _NOT_LISTED:
            return False
        return any(rd.address == ip for rd in answer)

    async def check(host) -> None:
        try:
            try:
                ptr = await names_r.resolve(host.reverse_name, "PTR")
                names = [rd.target.to_text(omit_final_dot=True) for rd in ptr]
            except _NOT_LISTED:
                names = []
            jobs = [forward(n, host.ip) for n in names]
            jobs += [listed(host.rev + "." + z) for z in zones]
            jobs.append(listed(host.domain + "." + rhsbl_zone))
            results = await asyncio.gather(*jobs)
        except _INCOMPLETE as exc:
            raise Unknown(f"{type(exc).__name__}: {exc}") from None
        confirmed = results[: len(names)]
        dnsbl = results[len(names) : len(names) + len(zones)]
        rhsbl = results[-1]
        judge(workload, host, {
            "ptr": tuple(sorted(n.lower() for n in names)),
            "fcrdns": "none" if not names else "pass" if any(confirmed) else "fail",
            "dnsbl": {z: t for z, t in zip(zones, dnsbl) if t is not None},
            "rhsbl": {} if rhsbl is None else {rhsbl_zone: rhsbl},
        })

    return check


class DnspythonContender(Contender):
    mode = "async"

    def __init__(self, name: str) -> None:
        self.name = name
        self.via_unbound = name == "unbound"
        if self.via_unbound:
            self.note = "dnspython async resolver (no cache of its own) through the local unbound, warmed first"
            self.cpu_of = "client + every server process"
        else:
            self.note = "dnspython async resolver straight at the authoritative servers, no cache"
            self.cpu_of = "client + every server process"

    def prepare(self, run: "Run") -> str | None:
        world = run.world
        self.run = run
        self.timeout_s = run.client_timeout_s
        if self.via_unbound:
            self.names_at = self.lists_at = world.unbound.address
            run.warm_async(self, "unbound")
        else:
            self.names_at = world.names_address
            self.lists_at = world.lists_address
        return None

    async def aworker(self):
        names_r = _resolver(self.names_at, self.timeout_s)
        lists_r = _resolver(self.lists_at, self.timeout_s)

        async def close() -> None:
            pass

        return dnspython_check(names_r, lists_r, self.run.workload), close

    def cpu_seconds(self) -> float:
        if self.via_unbound:
            return self.run.world.unbound.cpu_seconds()
        return cpu_seconds()
