"""Talking to DNS servers: the only part of fastlookup that speaks DNS on the wire.

``UpstreamPool`` asks a list of ``Server``\\ s and returns ``model.Answer``
values; DNS outcomes (NXDOMAIN, SERVFAIL, timeouts...) are statuses, and no
``dns.*`` or socket exception leaves this package. The resolver depends only
on the ``Upstream`` protocol, so its tests can use an in-memory double.

Modules, one job each: ``servers`` (addresses, resolv.conf), ``codec``
(bytes <-> Answer, the RFC 5452 reply gate), ``udp`` (exchanges on
connected sockets reused for a bounded number of queries) and ``tcp`` (one
exchange each), ``exchange`` (one try's query and reply on one server:
EDNS fallback, TCP on truncation), ``health`` (per-server RTT, backoff and
order), ``state`` (each server's slots, sockets and health; a try on it,
background probes, gauges and logs), ``pool`` (server choice, retries,
hedging, exploration, deadlines), ``memory`` (an in-memory ``Upstream``
double for the resolver's unit tests). Imports flow one way: ``pool`` ->
``state`` -> ``exchange`` -> ``udp``/``tcp``/``codec``.
"""

from __future__ import annotations

from .pool import Upstream, UpstreamPool
from .servers import Server, servers_from_resolv_conf

__all__ = ["Server", "Upstream", "UpstreamPool", "servers_from_resolv_conf"]
