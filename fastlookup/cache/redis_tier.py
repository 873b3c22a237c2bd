"""The fleet-wide shared tier on Redis: the ``SharedTier`` the resolver reads
after memory and before upstream.

Modules: ``redis_codec`` (keys and values), ``redis_connect`` (URL →
client), ``redis_batch`` (one round trip per loop turn, deadlines),
``redis_fastread`` (the lean ``MGET`` path),
``breaker`` (circuit breaker); this one holds the ``SharedTier`` semantics.
``docs/redis.md`` is the operator's view.

Fail soft, within ``timeout_s``
    On any error reads are misses, claims are won (the caller asks upstream
    itself) and writes are dropped, each round trip counted in
    ``redis_errors`` (labelled ``timeout``, ``connection`` or ``reply``).
    ``breaker_failures`` consecutive failed round trips open the circuit
    breaker: for ``breaker_reset_s`` calls skip Redis without trying (gauge
    ``redis_breaker_open``, counter ``redis_skipped``), then one round trip
    probes it. redis-py opens a fresh connection on the next command, so a
    restarted Redis is used again as soon as a probe succeeds.

Fleet-wide coalescing
    After a miss the resolver calls ``claim``: ``SET <prefix>lock:<key> NX PX
    lock_ms``. The winner asks upstream and ``put``\\ s the answer; the others
    ``wait``, polling the value with a 5→40 ms backoff for at most
    ``min(timeout, wait_ms)``, then ask upstream themselves. The lock is never
    released by hand: it expires after ``lock_ms``.

Counters (``Stats``): ``redis_hits``, ``redis_misses``, ``redis_corrupt``,
``redis_errors/<kind>``, ``redis_skipped``, ``redis_keys_rejected``,
``redis_round_trips``, ``redis_keys_read``, ``redis_writes``,
``fleet_lock_won``, ``fleet_lock_lost``, ``fleet_wait_hits``,
``fleet_wait_misses``; histogram ``redis_round_trip_seconds``; gauge
``redis_breaker_open``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any, Callable

from ..stats import Stats
from .breaker import Breaker
from .entry import Entry
from .redis_batch import MAX_IN_FLIGHT, Batcher
from .redis_codec import KeySchema, encode
from .redis_connect import Connection, connect, describe
from .redis_fastread import FastReader

__all__ = ["RedisTier"]

log = logging.getLogger("fastlookup.redis")

_WAIT_FIRST_S = 0.005
_WAIT_MAX_S = 0.04


class RedisTier:
    """``SharedTier`` on Redis (single server, Sentinel or Cluster); every method fails soft."""

    def __init__(
        self,
        connection: Connection,
        *,
        key_prefix: str = "fl:1:",
        timeout_s: float = 0.05,
        lock_ms: int = 500,
        wait_ms: int = 300,
        breaker_failures: int = 3,
        breaker_reset_s: float = 2.0,
        stats: Stats | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        name: str = "redis",
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.connection = connection
        self.keys = KeySchema(key_prefix)
        self.timeout_s = timeout_s
        self.wait_ms = wait_ms
        self.stats = stats if stats is not None else Stats()
        self.clock = clock
        self.name = name
        self.breaker = Breaker(breaker_failures, breaker_reset_s, on_change=self._breaker_changed)
        self.batcher = Batcher(
            connection.client,
            cluster=connection.kind == "cluster",
            timeout_s=timeout_s,
            lock_ms=lock_ms,
            owner=f"{socket.gethostname()}:{os.getpid()}".encode(),
            breaker=self.breaker,
            stats=self.stats,
            clock=clock,
            wall=wall,
            max_in_flight=max_in_flight,
            fast=None if connection.kind == "cluster" else FastReader(connection.client),
        )
        self.batcher.type_at = len(self.keys.value_prefix)  # values are checked against their key's record type
        self._closed = False
        self.stats.set("redis_breaker_open", 0)
        self.stats.declare("redis_errors", "kind")

    @classmethod
    def from_config(cls, cfg: Any, stats: Stats | None = None, clock: Callable[[], float] = time.monotonic) -> "RedisTier":
        """A tier for ``[redis]`` config ``cfg``; raises ``ConfigError`` for a URL or prefix it cannot use."""
        from ..errors import ConfigError

        try:
            connection = connect(cfg.url, timeout_s=cfg.timeout_s)
            KeySchema(cfg.key_prefix)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            connection,
            key_prefix=cfg.key_prefix,
            timeout_s=cfg.timeout_s,
            lock_ms=cfg.lock_ms,
            wait_ms=cfg.wait_ms,
            breaker_failures=cfg.breaker_failures,
            breaker_reset_s=cfg.breaker_reset_s,
            stats=stats,
            clock=clock,
            name="redis " + describe(cfg.url),
        )

    def set_ttl_policy(self, policy: Any) -> None:
        """This instance's ``TtlPolicy``: values read from Redis are clamped by it (redis_codec.decode)."""
        self.batcher.ttl_policy = policy

    @property
    def wall(self) -> Callable[[], float]:
        """The wall clock stored times are read against (``time.time``; tests set it)."""
        return self.batcher.wall

    @wall.setter
    def wall(self, wall: Callable[[], float]) -> None:
        self.batcher.wall = wall

    # --- SharedTier -------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """The entry for ``key`` on ``clock`` (remaining TTL kept), or None (miss, error, breaker open)."""
        entry = await self._read(key)
        self.stats.inc("redis_misses" if entry is None else "redis_hits")
        return entry

    def put(self, key: str, entry: Entry) -> None:
        """Queue ``entry`` for this turn's round trip; Redis expires it when its stale window ends."""
        rkey = self._usable(self.keys.value(key))
        if rkey is None:
            return
        encoded = encode(entry, self.clock(), self.batcher.wall())
        if encoded is not None:
            self.batcher.write(rkey, *encoded)

    async def claim(self, key: str) -> bool:
        """True when this instance should ask upstream: it won ``SET NX PX`` or Redis cannot tell."""
        rkey = self._usable(self.keys.lock(key))
        if rkey is None:
            return True
        won = await self.batcher.claim(rkey)
        if won is None:  # Redis could not tell (error, breaker): ask upstream, count no lock
            return True
        self.stats.inc("fleet_lock_won" if won else "fleet_lock_lost")
        return won

    async def wait(self, key: str, timeout_s: float) -> Entry | None:
        """Poll for another instance's answer for at most ``min(timeout_s, wait_ms)``; None if none came."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout_s, self.wait_ms / 1000)
        delay = _WAIT_FIRST_S
        while True:
            left = deadline - loop.time()
            if left <= 0 or self._closed or self.breaker.is_open:
                break
            await asyncio.sleep(min(delay, left))  # backoff between polls of the winner's answer
            entry = await self._read(key)
            if entry is not None:
                self.stats.inc("fleet_wait_hits")
                return entry
            delay = min(delay * 2, _WAIT_MAX_S)
        self.stats.inc("fleet_wait_misses")
        return None

    async def drain(self, timeout_s: float | None = None) -> None:
        """Send what is queued now and wait (at most ``timeout_s``, default ``2 x timeout_s``)
        for the writes in flight. ``put`` needs no drain; for tests and benchmarks."""
        await self.batcher.drain(timeout_s)

    async def close(self) -> None:
        """Send what is queued, wait for round trips in flight (bounded by ``timeout_s``), close the client."""
        if self._closed:
            return
        self._closed = True
        await self.batcher.close()
        if self.batcher.fast is not None:
            await self.batcher.fast.aclose()
        try:
            async with asyncio.timeout(max(self.timeout_s * 4, 0.5)):
                await self.connection.aclose()
        except Exception:  # TimeoutError included: a hung Redis must not hold up the stop
            pass

    # --- helpers ---------------------------------------------------------------

    async def _read(self, key: str) -> Entry | None:
        rkey = self._usable(self.keys.value(key))
        return None if rkey is None else await self.batcher.read(rkey)

    def _usable(self, rkey: str | None) -> str | None:
        """``rkey`` if Redis is to be asked now; None for an unsafe key, a closed tier or an open breaker."""
        if rkey is None:
            self.stats.inc("redis_keys_rejected")
            return None
        if self._closed or self.breaker.is_open:
            self.stats.inc("redis_skipped")
            return None
        return rkey

    def _breaker_changed(self, opened: bool) -> None:
        self.stats.set("redis_breaker_open", 1 if opened else 0)
        if opened:
            log.warning(
                "%s: circuit breaker open after %d failed round trips (last: %s); skipping Redis for %.1fs",
                self.name,
                self.breaker.failures,
                self.batcher.last_error,
                self.breaker.reset_s,
            )
        else:
            log.info("%s: circuit breaker closed, Redis answers again", self.name)
