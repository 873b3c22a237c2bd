"""pydnsbl (PyPI), the existing Python DNSBL checker, through the local unbound.

pydnsbl checks an IP on DNSBL zones (``DNSBLIpChecker``) and a domain on
RHSBL zones (``DNSBLDomainChecker``) with aiodns (c-ares). It has no
setting for the name server, so its checkers get an ``aiodns.DNSResolver``
pointed at unbound's address and port (``udp_port``/``tcp_port`` go to
pycares' ``Channel``). It does neither PTR nor FCrDNS: those are asked with
the same aiodns resolver, as a pydnsbl user would. It does not fetch TXT.
c-ares keeps its own answer cache (on by default since c-ares 1.23), so
after the first sight of an IP pydnsbl barely reaches unbound; that is what
its users get, and the upstream count shows it.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import TYPE_CHECKING

from .base import Contender, WrongAnswer

if TYPE_CHECKING:
    from ..runner import Run

__all__ = ["PydnsblContender"]

_ENODATA, _ENOTFOUND = 1, 4  # c-ares status codes: no such record / no such name


class PydnsblContender(Contender):
    name = "pydnsbl"
    mode = "async"
    note = "pydnsbl checkers (aiodns/c-ares, its own answer cache on) through the local unbound; PTR/A via aiodns"
    cpu_of = "the unbound process"

    def prepare(self, run: "Run") -> str | None:
        if importlib.util.find_spec("pydnsbl") is None:
            return "pydnsbl is not installed (pip install 'fastlookup[bench]')"
        self.run = run
        self.timeout_s = run.client_timeout_s
        return None

    async def aworker(self):
        import aiodns
        from pydnsbl.checker import DNSBLDomainChecker, DNSBLIpChecker
        from pydnsbl.providers import Provider

        loop = asyncio.get_running_loop()
        host, port = self.run.world.unbound.address
        resolver = aiodns.DNSResolver(
            nameservers=[host], loop=loop, udp_port=port, tcp_port=port, timeout=self.timeout_s / 2, tries=2
        )
        workload = self.run.workload
        ip_checker = DNSBLIpChecker(providers=[Provider(z) for z in workload.zones], loop=loop)
        domain_checker = DNSBLDomainChecker(providers=[Provider(workload.rhsbl_zone)], loop=loop)
        for checker in (ip_checker, domain_checker):
            await checker._resolver.close()
            checker._resolver = resolver  # pydnsbl has no name-server setting of its own

        async def forward(name: str, ip: str) -> bool:
            try:
                answer = await resolver.query(name, "A")
            except aiodns.error.DNSError as exc:
                if exc.args[0] in (_ENODATA, _ENOTFOUND):
                    return False
                raise
            return any(a.host == ip for a in answer)

        async def check(h) -> None:
            try:
                ptr = await resolver.query(h.reverse_name, "PTR")
                names = [ptr.name]
            except aiodns.error.DNSError as exc:
                if exc.args[0] not in (_ENODATA, _ENOTFOUND):
                    raise
                names = []
            results = await asyncio.gather(
                ip_checker.check_async(h.ip),
                domain_checker.check_async(h.domain),
                *[forward(n, h.ip) for n in names],
            )
            if results[0].failed_providers:
                raise WrongAnswer(f"pydnsbl {h.ip}: failed providers {results[0].failed_providers}")
            if results[0].blacklisted != bool(h.zones):
                raise WrongAnswer(f"pydnsbl {h.ip}: blacklisted={results[0].blacklisted}, listed in {h.zones}")

        async def close() -> None:
            await resolver.close()

        return check, close

    def cpu_seconds(self) -> float:
        return self.run.world.unbound.cpu_seconds()
