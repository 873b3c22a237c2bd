"""A local unbound (the Debian package) as a caching resolver for the test zones.

This is ``fastlookup.testing.unbound.Unbound`` (one configuration and one
start/readiness/stop for the tests and the benchmark) with the two things a
benchmark run adds: a name for its results and its CPU seconds.

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

from fastlookup.testing.unbound import Unbound as _Unbound

from .procs import cpu_seconds

__all__ = ["Unbound"]


class Unbound(_Unbound):
    """One unbound process on 127.0.0.1 with a fresh (empty) cache, named for the run's results."""

    def __init__(self, stubs: dict[str, tuple[str, int]], name: str = "unbound") -> None:
        super().__init__(stubs)
        self.name = name

    @property
    def running(self) -> bool:
        return self.port != 0

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid) if self.running else 0.0
