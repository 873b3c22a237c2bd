"""Testing helpers that start real servers on loopback, shipped for tests and ``bench/``.

- ``DnsServer``: our own authoritative DNS server in a thread, with faults and
  query counters; ``DnsServerProcess`` runs it as a child process
  (``python -m fastlookup.testing.dnsserver``).
- ``Rbldnsd``: a real rbldnsd with zone data given as text (``rfc5782_*``
  build RFC 5782 test data).
- ``RedisServer`` / ``RedisCluster``: real redis-server processes.

Every controller binds 127.0.0.1 (or ::1) only, returns from ``start()`` after
a real request was answered, and stops what it started by pid.

Names are imported lazily from the explicit table below: ``python -m
fastlookup.testing.dnsserver`` must not find its own module already imported
by this package, and ``ports``/``redis`` users need not load dnspython.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastlookup.testing._proc import ServerNotFound, ServerStartError
    from fastlookup.testing.dnscontrol import query_count, reset_count
    from fastlookup.testing.dnsfaults import Faults
    from fastlookup.testing.dnsprocess import DnsServerProcess
    from fastlookup.testing.dnsserver import DnsServer
    from fastlookup.testing.dnszone import Soa, Zone
    from fastlookup.testing.ports import free_port
    from fastlookup.testing.rbldata import (
        everything_ip4set,
        everything_ip6trie,
        rfc5782_dnset,
        rfc5782_ip4set,
        rfc5782_ip6trie,
        soa_line,
    )
    from fastlookup.testing.rbldnsd import Rbldnsd
    from fastlookup.testing.redis import RedisCluster, RedisServer

_EXPORTS: dict[str, str] = {
    "DnsServer": "dnsserver",
    "DnsServerProcess": "dnsprocess",
    "Faults": "dnsfaults",
    "Rbldnsd": "rbldnsd",
    "RedisCluster": "redis",
    "RedisServer": "redis",
    "ServerNotFound": "_proc",
    "ServerStartError": "_proc",
    "Soa": "dnszone",
    "Zone": "dnszone",
    "everything_ip4set": "rbldata",
    "everything_ip6trie": "rbldata",
    "free_port": "ports",
    "query_count": "dnscontrol",
    "reset_count": "dnscontrol",
    "rfc5782_dnset": "rbldata",
    "rfc5782_ip4set": "rbldata",
    "rfc5782_ip6trie": "rbldata",
    "soa_line": "rbldata",
}

__all__ = [
    "DnsServer",
    "DnsServerProcess",
    "Faults",
    "Rbldnsd",
    "RedisCluster",
    "RedisServer",
    "ServerNotFound",
    "ServerStartError",
    "Soa",
    "Zone",
    "everything_ip4set",
    "everything_ip6trie",
    "free_port",
    "query_count",
    "reset_count",
    "rfc5782_dnset",
    "rfc5782_ip4set",
    "rfc5782_ip6trie",
    "soa_line",
]


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastlookup.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fastlookup.testing.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
