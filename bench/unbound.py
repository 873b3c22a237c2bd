"""A local unbound (the Debian package) as a caching resolver for the test zones.

The configuration is ``fastlookup.testing.unbound.unbound_config`` (shared
with the end-to-end tests); this class runs it as a benchmark ``Child``.

The reference contender ("run a caching resolver") and the resolver the
fastlookup services sit in front of. It sends the DNSBL/RHSBL zones to
rbldnsd and everything else under ``.test`` and the 198.18/15 reverse zone to
the test authoritative server, as stub zones. Settings that matter
(``perf-facts.md``): ``qname-minimisation: no`` (else one PTR miss is three
upstream queries), ``do-not-query-localhost: no`` (our servers are on
127.0.0.1), no chroot, no user switch, no remote control, one thread.
Readiness: unbound answers ``version.server CH TXT`` itself once it serves.
"""

from __future__ import annotations

import os

import dns.exception
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype

from fastlookup.testing._proc import find_binary, wait_until
from fastlookup.testing.ports import free_port
from fastlookup.testing.unbound import unbound_config

from .procs import Child, RunsChild

__all__ = ["Unbound"]


def _config(port: int, workdir: str, stubs: dict[str, tuple[str, int]]) -> str:
    return unbound_config(port, workdir, stubs)  # one unbound.conf for the tests and the benchmark


class Unbound(RunsChild):
    """One unbound process on 127.0.0.1 with a fresh (empty) cache."""

    def __init__(self, workdir: str, stubs: dict[str, tuple[str, int]], name: str = "unbound") -> None:
        self.workdir = workdir
        self.stubs = dict(stubs)
        self.name = name
        self.port = 0
        self.child: Child | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _answers(self) -> bool:
        query = dns.message.make_query("version.server.", dns.rdatatype.TXT, dns.rdataclass.CH)
        try:
            dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
        except (OSError, dns.exception.DNSException):
            return False
        return True

    def start(self, timeout_s: float = 10.0) -> "Unbound":
        binary = find_binary("unbound")
        for attempt in range(3):
            self.port = free_port("udp+tcp")
            path = os.path.join(self.workdir, f"{self.name}-{self.port}.conf")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(_config(self.port, self.workdir, self.stubs))
            self.child = Child(self.name, [binary, "-d", "-c", path])
            try:
                wait_until(self._answers, timeout_s=timeout_s, what=f"{self.name} on 127.0.0.1@{self.port}",
                           proc=self.child.proc, output=self.child.output.tail)
                return self
            except Exception:
                in_use = "address already in use" in self.child.output.tail().lower()
                self.child.stop()
                self.child = None
                if not in_use or attempt == 2:
                    raise
        raise AssertionError("unreachable")
