"""pydnsbl (PyPI), the existing Python DNSBL checker, through the local unbound.

pydnsbl checks an IP on DNSBL zones (``DNSBLIpChecker``) and a domain on
RHSBL zones (``DNSBLDomainChecker``) with aiodns (c-ares). It has no
setting for the name server, so its checkers get an ``aiodns.DNSResolver``
pointed at unbound's address and port (``udp_port``/``tcp_port`` go to
pycares' ``Channel``). It does neither PTR nor FCrDNS nor TXT: those are
asked with the same aiodns resolver, as a pydnsbl user would, so a check
does the same work as every other row (the TXT of every zone that lists the
IP or the domain, for the reply text).

It asks an unbound of its own, warmed in ``prepare`` by one unmeasured pass
over every host (it does not lean on another contender's warm-up).

**Its in-process cache is on and labelled**: c-ares keeps its own answer
cache (on by default since c-ares 1.23, and pycares 4.11 has no option to
turn it off), so after the first sight of a name inside one cell, pydnsbl
answers from its own process without asking unbound. That is what its users
get; the row's ``note`` says so, and ``cpu_s`` includes the checking process.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import TYPE_CHECKING

from .base import Contender, Unknown, WrongAnswer
from .verify import judge

if TYPE_CHECKING:
    from ..runner import Run

__all__ = ["PydnsblContender"]

_ENODATA, _ENOTFOUND = 1, 4  # c-ares status codes: no such record / no such name


class PydnsblContender(Contender):
    name = "pydnsbl"
    mode = "async"
    note = ("pydnsbl checkers through an unbound of its own (warmed first); PTR, A and TXT of hits via "
            "aiodns; IN-PROCESS c-ares ANSWER CACHE ON (cannot be turned off in pycares 4.11)")
    cpu_of = "client + every server process"

    def prepare(self, run: "Run") -> str | None:
        if importlib.util.find_spec("pydnsbl") is None:
            return "pydnsbl is not installed (pip install 'fastlookup[bench]')"
        self.run = run
        self.timeout_s = run.client_timeout_s
        self.unbound = run.world.new_unbound("unbound-for-pydnsbl")
        run.warm_async(self, self.name)
        return None

    def finish(self, run: "Run") -> None:
        if getattr(self, "unbound", None) is not None:
            run.world.drop_unbound(self.unbound)
            self.unbound = None

    async def aworker(self):
        import aiodns
        from pydnsbl.checker import DNSBLDomainChecker, DNSBLIpChecker
        from pydnsbl.providers import Provider

        loop = asyncio.get_running_loop()
        host, port = self.unbound.address
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

        async def text(name: str) -> str:
            try:
                answer = await resolver.query(name, "TXT")
            except aiodns.error.DNSError as exc:
                if exc.args[0] in (_ENODATA, _ENOTFOUND):
                    return ""
                raise
            return " ".join(a.text if isinstance(a.text, str) else a.text.decode() for a in answer)

        async def check(h) -> None:
            try:
                try:
                    ptr = await resolver.query(h.reverse_name, "PTR")
                    names = [ptr.name]
                except aiodns.error.DNSError as exc:
                    if exc.args[0] not in (_ENODATA, _ENOTFOUND):
                        raise
                    names = []
                ip_result, domain_result, *confirmed = await asyncio.gather(
                    ip_checker.check_async(h.ip),
                    domain_checker.check_async(h.domain),
                    *[forward(n, h.ip) for n in names],
                )
                if ip_result.failed_providers or domain_result.failed_providers:
                    raise Unknown(f"pydnsbl {h.ip}: failed providers "
                                  f"{ip_result.failed_providers + domain_result.failed_providers}")
                dnsbl_zones = sorted(ip_result.detected_by)
                rhsbl_zones = sorted(domain_result.detected_by)
                texts = await asyncio.gather(
                    *[text(h.rev + "." + z) for z in dnsbl_zones],
                    *[text(h.domain + "." + z) for z in rhsbl_zones],
                )
            except aiodns.error.DNSError as exc:  # timeout, SERVFAIL, refused: no answer
                raise Unknown(f"aiodns: {exc}") from None
            if ip_result.blacklisted != bool(dnsbl_zones):
                raise WrongAnswer(f"pydnsbl {h.ip}: blacklisted={ip_result.blacklisted}, zones {dnsbl_zones}")
            judge(workload, h, {
                "ptr": tuple(n.lower() for n in names),
                "fcrdns": "none" if not names else "pass" if any(confirmed) else "fail",
                "dnsbl": dict(zip(dnsbl_zones, texts[: len(dnsbl_zones)])),
                "rhsbl": dict(zip(rhsbl_zones, texts[len(dnsbl_zones):])),
            })

        async def close() -> None:
            await resolver.close()

        return check, close
