"""``redis.url`` → a redis-py asyncio client (no I/O: redis-py connects lazily).

Supported forms (user and password are optional everywhere; ``%``-escape
special characters in them; query options of redis-py URLs such as
``ssl_ca_certs=``, ``ssl_cert_reqs=`` or ``db=`` pass through):

==================================================  =====================
``redis://[user:pass@]host:6379/0``                 one server
``rediss://[user:pass@]host:6380/0?ssl_ca_certs=…``  one server over TLS
``unix:///run/redis/redis.sock?db=0``               one server, unix socket
``redis+sentinel://[user:pass@]h1:26379,h2:26379/mymaster[/db]``
                                                    the master of a Sentinel
                                                    service (``rediss+sentinel``:
                                                    TLS to the master;
                                                    ``?sentinel_password=`` if the
                                                    sentinels need one)
``redis+cluster://[user:pass@]h1:7000,h2:7001``     Redis Cluster (also
                                                    ``rediss+cluster``, any
                                                    ``redis://`` URL with several
                                                    hosts, or several URLs
                                                    separated by commas)
==================================================  =====================

Every client gets ``timeout_s`` as its connect and read timeout, RESP2 (a
connect is one TCP handshake, plus AUTH/SELECT only when the URL asks), and
**no retries**: the tier is a cache, so a failed round trip is a miss, not a
reason to wait longer, and its breaker (not redis-py) decides when to try
again. redis-py reconnects by itself on the next command after a failure.
Passwords never leave this module except inside the client; ``describe``
gives a masked form for logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

__all__ = ["Connection", "connect", "parse_targets", "describe"]

_SINGLE = ("redis", "rediss", "unix")
_CLUSTER = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_SENTINEL = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}


@dataclass
class Connection:
    """A client, what kind of deployment it talks to, and what to close at the end."""

    client: Any  # redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster
    kind: str  # "single" | "sentinel" | "cluster"
    closers: list = field(default_factory=list)  # extra objects with aclose() (sentinel clients)

    async def aclose(self) -> None:
        for obj in [self.client, *self.closers]:
            try:
                await obj.aclose()
            except Exception:  # closing a dead connection may fail; nothing to do
                pass


def describe(url: str | Sequence[str]) -> str:
    """``url`` with passwords masked, for logs and errors."""
    from ..config import mask_url

    return mask_url(url if isinstance(url, str) else ",".join(url))


def _split_hosts(netloc: str) -> tuple[str, list[str]]:
    """``user:pass@h1:p1,h2:p2`` → (``user:pass@``, [``h1:p1``, ``h2:p2``])."""
    auth, at, hosts = netloc.rpartition("@")
    return (auth + at), [h.strip() for h in hosts.split(",") if h.strip()]


def parse_targets(url: str | Sequence[str]) -> tuple[str, list[dict], dict]:
    """``(kind, per-host kwargs, options)`` for a URL (see the module docstring).

    For ``single`` the list holds one kwargs dict from redis-py's own URL
    parser; for ``cluster`` one per startup node; for ``sentinel`` one per
    sentinel, with ``options["service_name"]`` and the master's kwargs in
    ``options["master"]``. Raises ``ValueError`` naming the problem.
    """
    from redis.asyncio.connection import SSLConnection, parse_url

    urls = [url] if isinstance(url, str) else list(url)
    urls = [u.strip() for text in urls for u in _split_urls(text)]
    if not urls:
        raise ValueError("redis.url: empty")
    if len(urls) > 1:  # several URLs: the nodes of a cluster
        targets: list[dict] = []
        for u in urls:
            kind, more, _ = parse_targets(u)
            if kind == "sentinel":
                raise ValueError(f"redis.url: {describe(u)!r}: a sentinel URL cannot be one of several URLs")
            targets.extend(more)
        return "cluster", targets, {}
    text = urls[0]
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _SINGLE and scheme not in _CLUSTER and scheme not in _SENTINEL:
        raise ValueError(
            f"redis.url: {describe(text)!r}: scheme {scheme!r} is not one of redis, rediss, unix, "
            "redis+sentinel, rediss+sentinel, redis+cluster, rediss+cluster"
        )
    auth, hosts = _split_hosts(parts.netloc)
    query = ("?" + parts.query) if parts.query else ""

    def one(base: str, host: str, path: str = "") -> dict:
        kwargs = dict(parse_url(f"{base}://{auth}{host}{path}{query}"))
        if kwargs.pop("connection_class", None) is SSLConnection:
            kwargs["ssl"] = True
        return kwargs

    if scheme == "unix":
        return "single", [dict(parse_url(text))], {}
    if scheme in _SENTINEL:
        segments = [unquote(s) for s in parts.path.split("/") if s]
        if not hosts or not segments:
            raise ValueError(
                f"redis.url: {describe(text)!r}: expected redis+sentinel://host:port[,host:port...]/service_name[/db]"
            )
        service = segments[0]
        master = one(_SENTINEL[scheme], hosts[0], "/" + segments[1] if len(segments) > 1 else "")
        master.pop("host", None)
        master.pop("port", None)
        sentinel_password = master.pop("sentinel_password", None)
        sentinels = []
        for h in hosts:
            kw = one("redis", h)
            sentinels.append({"host": kw.get("host", "localhost"), "port": kw.get("port", 26379)})
        return "sentinel", sentinels, {"service_name": service, "master": master, "sentinel_password": sentinel_password}
    if not hosts:
        raise ValueError(f"redis.url: {describe(text)!r}: no host")
    if scheme in _CLUSTER or len(hosts) > 1:
        base = _CLUSTER.get(scheme, scheme)
        return "cluster", [one(base, h) for h in hosts], {}
    return "single", [dict(parse_url(text))], {}


def _split_urls(text: str) -> list[str]:
    """``"redis://a:1,redis://b:2"`` → two URLs; ``"redis://a:1,b:2"`` stays one."""
    pieces = [p for p in (s.strip() for s in text.replace("\n", ",").split(",")) if p]
    if sum("://" in p for p in pieces) <= 1:
        return [text.strip()] if text.strip() else []
    return pieces


def _common(timeout_s: float) -> dict:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
        # A (re)connect costs no extra round trip: RESP2 needs no HELLO (nor
        # the CLIENT MAINT_NOTIFICATIONS that redis-py 8 sends with RESP3), and
        # no CLIENT SETNAME/SETINFO. Only AUTH and SELECT when the URL asks.
        "protocol": 2,
        "driver_info": None,
    }


def connect(url: str | Sequence[str], *, timeout_s: float, max_connections: int = 256) -> Connection:
    """A client for ``url``; raises ``ValueError`` for a URL it cannot use."""
    kind, targets, options = parse_targets(url)
    common = _common(timeout_s)
    if kind == "single":
        from redis.asyncio import ConnectionPool, Redis

        kwargs = {**targets[0], **common}
        kwargs.setdefault("max_connections", max_connections)
        if kwargs.pop("ssl", False):
            from redis.asyncio.connection import SSLConnection

            kwargs["connection_class"] = SSLConnection
        return Connection(Redis(connection_pool=ConnectionPool(**kwargs)), kind)
    if kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        first = targets[0]
        nodes = [ClusterNode(t.get("host", "localhost"), t.get("port", 6379)) for t in targets]
        extra = {k: v for k, v in first.items() if k not in ("host", "port", "db")}
        if first.get("db"):
            raise ValueError(f"redis.url: {describe(url)!r}: Redis Cluster has no databases but db 0")
        client = RedisCluster(
            startup_nodes=nodes,
            require_full_coverage=False,
            max_connections=max_connections,
            **{**extra, **common},
        )
        return Connection(client, kind)
    from redis.asyncio.sentinel import Sentinel

    sentinel_kwargs = dict(common)
    if options["sentinel_password"]:
        sentinel_kwargs["password"] = options["sentinel_password"]
    sentinel = Sentinel(
        [(t["host"], t["port"]) for t in targets],
        sentinel_kwargs=sentinel_kwargs,
    )
    master_kwargs = {**options["master"], **common}
    if master_kwargs.pop("ssl", False):
        from redis.asyncio.sentinel import SentinelManagedSSLConnection

        master_kwargs["connection_class"] = SentinelManagedSSLConnection
    client = sentinel.master_for(options["service_name"], **master_kwargs)
    return Connection(client, kind, [sentinel])
