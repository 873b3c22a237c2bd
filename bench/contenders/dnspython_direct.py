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
import dns.resolver

from ..procs import cpu_seconds
from .base import Contender, WrongAnswer

if TYPE_CHECKING:
    from ..runner import Run

__all__ = ["DnspythonContender", "dnspython_check"]

_NOT_LISTED = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)


def _resolver(address: tuple[str, int], timeout_s: float) -> dns.asyncresolver.Resolver:
    r = dns.asyncresolver.Resolver(configure=False)
    r.nameservers = [address[0]]
    r.port = address[1]
    r.lifetime = timeout_s
    r.timeout = timeout_s / 2
    r.cache = None
    return r


def dnspython_check(names_r: dns.asyncresolver.Resolver, lists_r: dns.asyncresolver.Resolver, zones, rhsbl_zone):
    """An ``async check(host)`` over two resolvers (PTR/A, and the lists)."""

    async def listed(name: str) -> bool:
        try:
            await lists_r.resolve(name, "A")
        except _NOT_LISTED:
            return False
        try:
            await lists_r.resolve(name, "TXT")  # the reply text, as fastlookup fetches it
        except _NOT_LISTED:
            pass
        return True

    async def forward(name: str, ip: str) -> bool:
        try:
            answer = await names_r.resolve(name, "A")
        except _NOT_LISTED:
            return False
        return any(rd.address == ip for rd in answer)

    async def check(host) -> None:
        try:
            ptr = await names_r.resolve(host.reverse_name, "PTR")
            names = [rd.target.to_text(omit_final_dot=True) for rd in ptr]
        except _NOT_LISTED:
            names = []
        jobs = [forward(n, host.ip) for n in names]
        jobs += [listed(host.rev + "." + z) for z in zones]
        jobs.append(listed(host.domain + "." + rhsbl_zone))
        results = await asyncio.gather(*jobs)
        dnsbl = results[len(names) : len(names) + len(zones)]
        if any(dnsbl) != bool(host.zones):
            raise WrongAnswer(f"dnsbl {host.ip}: listed={any(dnsbl)}, the zones list it in {host.zones}")

    return check


class DnspythonContender(Contender):
    mode = "async"

    def __init__(self, name: str) -> None:
        self.name = name
        self.via_unbound = name == "unbound"
        if self.via_unbound:
            self.note = "dnspython async resolver (no cache of its own) through the local unbound, warmed first"
            self.cpu_of = "the unbound process"
        else:
            self.note = "dnspython async resolver straight at the authoritative servers, no cache"
            self.cpu_of = "the checking process itself (the lookups are made in-process)"

    def prepare(self, run: "Run") -> str | None:
        world = run.world
        self.run = run
        self.timeout_s = run.client_timeout_s
        if self.via_unbound:
            self.names_at = self.lists_at = world.unbound.address
            run.warm_async(self, "unbound")
        else:
            self.names_at = world.dns.address
            self.lists_at = world.rbl.address
        return None

    async def aworker(self):
        names_r = _resolver(self.names_at, self.timeout_s)
        lists_r = _resolver(self.lists_at, self.timeout_s)

        async def close() -> None:
            pass

        workload = self.run.workload
        return dnspython_check(names_r, lists_r, workload.zones, workload.rhsbl_zone), close

    def cpu_seconds(self) -> float:
        if self.via_unbound:
            return self.run.world.unbound.cpu_seconds()
        return cpu_seconds()
