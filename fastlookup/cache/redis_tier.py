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
    <lock life>``. The lock lives as long as the winner may take to fetch: its
    whole upstream budget (``budget_s``: ``upstream.timeout_s x attempts +
    0.1 s``) plus 200 ms, or ``lock_ms`` when set. The winner asks upstream
    and ``put``\\ s the answer; the others ``wait`` (``redis_wait``): one
    poller per tier reads every waited-for key each 5 ms, so a waiter learns
    of the answer within ~5 ms + two round trips. A waiter that reaches the end
    of the lock it lost without an answer (the winner died, or its answer
    was a failure, which is not shared) claims again: one instance wins and
    asks upstream (``fleet_takeovers``), the others wait on. The poller also
    reads the waited-for locks: a winner whose answer is a failure deletes
    its lock (``release``), and a lock gone without an answer (released, or
    expired after the winner died) makes the waiters claim at once. A wait lasts at
    most two lock lives (``wait_ms`` caps it when set). The lock is never
    released by hand: it expires.

Counters (``Stats``): ``redis_hits``, ``redis_misses``, ``redis_corrupt``,
``redis_errors/<kind>``, ``redis_skipped``, ``redis_keys_rejected``,
``redis_round_trips``, ``redis_keys_read``, ``redis_writes``,
``fleet_lock_won``, ``fleet_lock_lost``, ``fleet_wait_hits``,
``fleet_wait_misses``, ``fleet_takeovers``, ``fleet_polls``; histogram ``redis_round_trip_seconds``; gauge
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
from .redis_wait import LOCK_GONE, Poller, wait_for

__all__ = ["RedisTier"]

log = logging.getLogger("fastlookup.redis")

#: The winner's upstream budget assumed until the service says (timeout_s 0.8 x attempts 2 + 0.1).
DEFAULT_BUDGET_S = 1.7
#: Lock life beyond the winner's budget: its write's round trip and clock differences.
LOCK_MARGIN_S = 0.2
#: Bound on the locks remembered as held (one per fetch in flight).
_HELD_MAX = 100_000


class RedisTier:
    """``SharedTier`` on Redis (single server, Sentinel or Cluster); every method fails soft."""

    def __init__(
        self,
        connection: Connection,
        *,
        key_prefix: str = "fl:1:",
        timeout_s: float = 0.05,
        lock_ms: int = 0,
        wait_ms: int = 0,
        budget_s: float = DEFAULT_BUDGET_S,
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
        self.lock_ms = lock_ms
        self.stats = stats if stats is not None else Stats()
        self.clock = clock
        self.name = name
        self.breaker = Breaker(breaker_failures, breaker_reset_s, on_change=self._breaker_changed)
        self.batcher = Batcher(
            connection.client,
            cluster=connection.kind == "cluster",
            timeout_s=timeout_s,
            lock_ms=lock_ms or 1,
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
        self.budget_s = budget_s  # sets the batcher's lock life
        self.poller = Poller(
            self.batcher.read_many,
            on_poll=lambda: self.stats.inc("fleet_polls"),
            give_up=lambda: self._closed or self.breaker.is_open,
        )
        self._held: set[str] = set()  # keys whose fleet lock this instance won and still holds
        self.stats.set("redis_breaker_open", 0)
        self.stats.declare("redis_errors", "kind")

    @classmethod
    def from_config(
        cls, cfg: Any, stats: Stats | None = None, clock: Callable[[], float] = time.monotonic,
        budget_s: float = DEFAULT_BUDGET_S,
    ) -> "RedisTier":
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
            budget_s=budget_s,
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
    def budget_s(self) -> float:
        """The winner's whole upstream budget (seconds): the fleet lock lives this + 200 ms
        unless ``lock_ms`` is set. The service sets it from ``[upstream]``."""
        return self._budget_s

    @budget_s.setter
    def budget_s(self, budget_s: float) -> None:
        self._budget_s = budget_s
        self.batcher.lock_ms = self.lock_ms or int((budget_s + LOCK_MARGIN_S) * 1000)

    @property
    def lock_s(self) -> float:
        """The fleet lock's life in seconds."""
        return self.batcher.lock_ms / 1000

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
        self._held.discard(key)
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
        if won:
            self._hold(key)
        return won

    def release(self, key: str) -> None:
        """The fetch of ``key`` this instance won ended without an answer to share (a
        failure): delete the lock, so the waiting instances take over now, not at its end."""
        if key in self._held:
            self._held.discard(key)
            rkey = self._usable(self.keys.lock(key))
            if rkey is not None:
                self.batcher.delete(rkey)

    def _hold(self, key: str) -> None:
        if len(self._held) >= _HELD_MAX:  # a fetch that never ended (a bug): forget, the locks expire
            self._held.clear()
        self._held.add(key)

    async def wait(self, key: str, timeout_s: float) -> Entry | None:
        """Another instance's answer for ``key``, or None when this instance should ask upstream:
        it won the lock back (the winner died or failed), or the wait ran out.

        Waits at most ``timeout_s`` (the resolver passes twice the lock life: the
        winner's budget and one takeover), capped by ``wait_ms`` when set.
        """
        rkey = self._usable(self.keys.value(key))
        lock_key = self.keys.lock(key)
        if rkey is None or lock_key is None:
            return None
        loop = asyncio.get_running_loop()
        now = loop.time()
        end = now + (min(timeout_s, self.wait_ms / 1000) if self.wait_ms else timeout_s)
        lock_end = now + self.lock_s  # the lock we lost was set no earlier than now
        fut = self.poller.register(rkey, lock_key)
        try:
            while True:
                now = loop.time()
                if now >= end or self._closed or self.breaker.is_open:
                    break
                entry = await wait_for(fut, min(end, lock_end) - now)
                if entry is not None and entry is not LOCK_GONE:
                    self.stats.inc("fleet_wait_hits")
                    return entry
                if self._closed:
                    break
                if entry is LOCK_GONE or loop.time() >= lock_end:
                    if entry is None:  # the lock's end, no news from the polls: the answer may be in now
                        entry = await self._read(key)
                        if entry is not None:
                            self.stats.inc("fleet_wait_hits")
                            return entry
                    won = await self.batcher.claim(lock_key)
                    if won is None or won:
                        self.stats.inc("fleet_takeovers")
                        if won:
                            self._hold(key)
                        return None
                    lock_end = loop.time() + self.lock_s  # another waiter took over: wait on its lock
                if fut.done():
                    self.poller.unregister(rkey, fut)
                    fut = self.poller.register(rkey, lock_key)
        finally:
            self.poller.unregister(rkey, fut)
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
        self.poller.close()
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
