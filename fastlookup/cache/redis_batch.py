"""One Redis round trip per event-loop turn: the Redis tier's batching and deadlines.

``read``, ``claim`` and ``write`` only queue a Redis key in the current batch.
While the lean read connection (``redis_fastread``) is open, the first call
of a turn schedules a ``call_soon`` callback that sends the batch at the end
of the turn: reads alone are written to that connection at once and
answered from its ``data_received`` (no task, no extra turn; a timer
enforces the deadline). Otherwise (no lean connection yet, Redis Cluster)
the first caller leads: it yields once (``sleep(0)``) so every call of the
same turn joins, then sends the batch from its own task. A batch with
claims or writes goes out as a pipeline from a task; a write never delays
its caller.

A batch goes out as

* reads alone: one ``MGET k1 k2 …`` (on a single server or Sentinel through
  ``redis_fastread``: a dedicated connection parsed by hiredis);
* otherwise one non-transactional pipeline: ``MGET`` + ``SET lock v NX PX``
  per claim + ``SET key value PX`` per write;
* on Redis Cluster a cluster pipeline of single-key commands, which redis-py
  groups by node and sends to the nodes in parallel (the keys of one batch
  live on different slots).

Every batch must be answered by ``timeout_s`` after its first call joined:
its round trip runs under ``asyncio.timeout_at`` of that deadline. At most
``max_in_flight`` round trips are out at once; meanwhile calls keep joining
the next batch (bigger batches rather than more connections under load).

Any failure is soft: reads answer None, claims None ("cannot tell"), writes
are dropped; the round trip counts in ``redis_errors/<kind>`` and as one
failure for the circuit breaker, which ``allow()``\\ s each round trip.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from ..stats import Stats
from .breaker import Breaker
from .entry import Entry, TtlPolicy
from .redis_codec import Decoded, decode

__all__ = ["Batcher", "MAX_IN_FLIGHT", "UNKNOWN", "error_kind"]

#: What a raw read answers when Redis did not (error, timeout, breaker open).
UNKNOWN = object()

#: Round trips in flight at once per tier.
MAX_IN_FLIGHT = 8


def error_kind(exc: BaseException) -> str:
    """``timeout``, ``connection`` or ``reply``: the label of a failed round trip."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, (TimeoutError, RedisTimeoutError)):
        return "timeout"
    if isinstance(exc, (RedisConnectionError, OSError)):
        return "connection"
    return "reply"


class _Batch:
    """What one loop turn asked of Redis: reads, claims and writes, by Redis key.

    ``deadline`` (loop time) is ``timeout_s`` after the first call joined it:
    a batch that waited for a free round-trip slot has only the rest.
    """

    __slots__ = ("reads", "raw", "claims", "writes", "deletes", "deadline")

    def __init__(self) -> None:
        self.reads: dict[str, list[asyncio.Future]] = {}
        self.raw: dict[str, list[asyncio.Future]] = {}  # keys read as bytes (fleet locks), not entries
        self.deletes: set[str] = set()
        self.claims: dict[str, list[asyncio.Future]] = {}
        self.writes: dict[str, tuple[bytes, int]] = {}
        self.deadline = 0.0

    def __bool__(self) -> bool:
        return bool(self.reads or self.raw or self.claims or self.writes or self.deletes)

    def size(self) -> int:
        return len(self.reads) + len(self.raw) + len(self.claims) + len(self.writes) + len(self.deletes)

    def read_keys(self) -> list[str]:
        """The keys of the batch's ``MGET``: entries, then raw values."""
        return [*self.reads, *self.raw] if self.raw else list(self.reads)


class Batcher:
    """Queues the Redis work of each loop turn and sends it as one round trip."""

    def __init__(
        self,
        client: Any,
        *,
        cluster: bool,
        timeout_s: float,
        lock_ms: int,
        owner: bytes,
        breaker: Breaker,
        stats: Stats,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_in_flight: int = MAX_IN_FLIGHT,
        fast: Any = None,
    ) -> None:
        self.client = client
        self.fast = fast  # a FastReader for batches of reads alone (single server, Sentinel), or None
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.lock_ms = lock_ms
        self.owner = owner
        self.breaker = breaker
        self.stats = stats
        self.clock = clock
        self.wall = wall
        self.max_in_flight = max_in_flight
        self.closed = False
        self.last_error = ""
        self._batch = _Batch()
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()  # round trips of writes and of batches that waited
        self._in_flight = 0
        # Read validation (redis_codec.decode): this instance's TTL policy (the service sets it) and
        # where a Redis key's record type starts (the tier sets it: len of its value prefix).
        self.ttl_policy: Any = None
        self.type_at = 0

    # --- queueing -----------------------------------------------------------------

    async def read(self, rkey: str) -> Entry | None:
        """The entry stored at ``rkey`` (fresh, on ``clock``), or None (absent, expired, corrupt, error)."""
        fut = asyncio.get_running_loop().create_future()
        self._batch.reads.setdefault(rkey, []).append(fut)
        return await self._join(fut)

    def read_many(self, rkeys: list[str], *, raw: bool = False) -> list[asyncio.Future]:
        """Queue reads of ``rkeys`` in this turn's batch without waiting: their futures
        (entry or None; with ``raw`` the stored bytes, None when absent, or ``UNKNOWN``
        when Redis did not answer), all answered by one round trip (the fleet-wait poller's read)."""
        loop = asyncio.get_running_loop()
        futs = []
        reads = self._batch.raw if raw else self._batch.reads
        for rkey in rkeys:
            fut = loop.create_future()
            reads.setdefault(rkey, []).append(fut)
            futs.append(fut)
        if futs and not self._scheduled:
            self._schedule()
        return futs

    async def claim(self, rkey: str) -> bool | None:
        """``SET rkey owner NX PX lock_ms``: True if set, False if held, None when Redis could not tell."""
        fut = asyncio.get_running_loop().create_future()
        self._batch.claims.setdefault(rkey, []).append(fut)
        return await self._join(fut)

    def delete(self, rkey: str) -> None:
        """Queue the end of ``rkey`` for this turn's round trip (a fleet lock released):
        ``SET rkey "" PX 1``, so an ACL user needs no ``+del``."""
        self._batch.deletes.add(rkey)
        if not self._scheduled:
            self._schedule()

    def write(self, rkey: str, value: bytes, px: int) -> None:
        """Queue ``SET rkey value PX px`` for this turn's round trip."""
        self._batch.writes[rkey] = (value, px)
        if not self._scheduled:
            self._schedule()

    async def drain(self, timeout_s: float | None = None) -> None:
        """Send what is queued and wait (at most ``timeout_s``) for the round trips of writes."""
        await asyncio.sleep(0)  # a flush scheduled in this turn goes out first
        if not self._scheduled:
            self._flush()
        loop = asyncio.get_running_loop()
        end = loop.time() + (self.timeout_s * 2 if timeout_s is None else timeout_s)
        while self._tasks and loop.time() < end:
            await asyncio.wait(list(self._tasks), timeout=end - loop.time())

    async def close(self) -> None:
        """Send what is queued, wait ``2 x timeout_s`` for round trips in flight, cancel the rest."""
        self.closed = True
        self._flush()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.timeout_s * 2)
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=1.0)

    async def _join(self, fut: asyncio.Future) -> Any:
        """Wait for ``fut``, queued in this turn's batch; the turn's first caller sends the batch."""
        if self._scheduled:
            return await fut
        if self.fast is not None and self.fast.ready:
            # The lean path: a callback at the end of this turn writes the batch, and the
            # reply is delivered from the connection's callback (no task, no extra turn).
            self._schedule()
            return await fut
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if not self._batch.deadline:
            self._batch.deadline = loop.time() + self.timeout_s
        try:
            await asyncio.sleep(0)  # one loop turn: the rest of this turn's calls join the batch
        except asyncio.CancelledError:
            loop.call_soon(self._flush)  # the others still need their round trip
            raise
        batch = self._take()
        if batch is not None:
            await self._round_trip(batch)
        return await fut

    def _schedule(self) -> None:
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if not self._batch.deadline:
            self._batch.deadline = loop.time() + self.timeout_s
        loop.call_soon(self._flush)

    def _take(self) -> _Batch | None:
        """The queued batch if it may go out now; None when empty, answered soft, or waiting.

        With ``max_in_flight`` round trips out the batch stays queued (and
        keeps growing) until one of them ends, by its deadline at the latest.
        """
        self._scheduled = False
        batch = self._batch
        if not batch:
            return None
        if self._in_flight >= self.max_in_flight and not self.closed:
            return None  # the end of a round trip in flight sends it
        self._batch = _Batch()
        if asyncio.get_running_loop().time() >= batch.deadline:
            self.stats.inc("redis_errors", ("timeout",))
            _answer_soft(batch)
            return None
        if not self.breaker.allow():
            self.stats.inc("redis_skipped", (), batch.size())
            _answer_soft(batch)
            return None
        return batch

    def _flush(self) -> None:
        """Send the queued batch: reads alone on the lean connection by callback, else from a
        task of its own (writes, claims, cluster, a connection to open)."""
        batch = self._take()
        if batch is not None:
            fast = self.fast
            if fast is not None and not batch.claims and not batch.writes and not batch.deletes and fast.ready:
                self._send_reads(batch, fast)
                return
            task = asyncio.get_running_loop().create_task(self._round_trip(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- the round trip -----------------------------------------------------------

    def _send_reads(self, batch: _Batch, fast: Any) -> None:
        """A batch of reads alone as one ``MGET`` on the lean connection, answered by callback.

        The same guarantees as ``_round_trip``: answered by ``batch.deadline`` (a
        timer; the connection is then closed and reopened on the next read),
        counted for the breaker, every waiter answered whatever happens.
        """
        read_keys = batch.read_keys()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._in_flight += 1
        timer: asyncio.TimerHandle | None = None
        finished = False

        def done(values: Any, error: BaseException | None) -> None:
            nonlocal finished
            if finished:
                return  # a reply after the deadline, or the connection's end after it
            finished = True
            if timer is not None:
                timer.cancel()
            self._in_flight -= 1
            try:
                if error is None:
                    self.breaker.success()
                else:
                    self.breaker.failure()
                    kind = error_kind(error)
                    if kind != "reply":
                        fast.reset()
                    self.stats.inc("redis_errors", (kind,))
                    self.last_error = f"{kind}: {type(error).__name__}"
                if self._batch and not self._scheduled:
                    self._schedule()  # a batch that waited for this slot
                if error is None:
                    self._deliver(batch, read_keys, values, [], 0, time.perf_counter() - started)
            finally:
                _answer_soft(batch)

        try:
            fast.send(read_keys, done)
        except Exception as exc:  # the transport broke under us: the same as a failed round trip
            done(None, exc)
            return
        if not finished:
            timer = loop.call_at(batch.deadline, done, None, TimeoutError())

    async def _round_trip(self, batch: _Batch) -> None:
        read_keys = batch.read_keys()
        ok = False
        started = time.perf_counter()
        self._in_flight += 1
        try:
            async with asyncio.timeout_at(batch.deadline):
                values, claimed, failed = await self._execute(read_keys, list(batch.claims), batch.writes, batch.deletes)
            ok = True
        except asyncio.CancelledError:
            _answer_soft(batch)
            raise
        except Exception as exc:  # any failure of the round trip: fail soft, counted
            kind = error_kind(exc)
            if kind == "reply" and not read_keys:
                # Redis answered, refusing writes/claims (OOM under maxmemory + noeviction): it is
                # alive, and reads must keep working (docs/redis.md), so this does not trip the breaker.
                ok = True
            if self.fast is not None and kind != "reply" and not self.cluster and not batch.claims and not batch.writes and not batch.deletes:
                self.fast.reset()  # the lean connection timed out or broke: reopened on the next read
            self.stats.inc("redis_errors", (kind,))
            self.last_error = f"{kind}: {type(exc).__name__}"
            _answer_soft(batch)
            return
        finally:
            if ok:
                self.breaker.success()
            else:
                self.breaker.failure()
            self._in_flight -= 1
            if self._batch and not self._scheduled:
                self._schedule()  # a batch that waited for this slot
        try:
            self._deliver(batch, read_keys, values, claimed, failed, time.perf_counter() - started)
        finally:
            _answer_soft(batch)  # nobody is left waiting, whatever happened above

    async def _execute(
        self, read_keys: list[str], claim_keys: list[str], writes: dict[str, tuple[bytes, int]], deletes: set[str] = frozenset()
    ) -> tuple[list, list[bool | None], int]:
        """One round trip: (values of ``read_keys``, claim outcomes — None when the
        command failed —, count of per-command errors)."""
        client = self.client
        if not self.cluster and not claim_keys and not writes and not deletes:
            if self.fast is not None:
                return await self.fast.mget(read_keys), [], 0
            return await client.execute_command("MGET", *read_keys), [], 0
        pipe = client.pipeline(transaction=False)
        if self.cluster:
            for rkey in read_keys:
                pipe.get(rkey)
        elif read_keys:
            pipe.execute_command("MGET", *read_keys)
        for rkey in claim_keys:
            pipe.set(rkey, self.owner, nx=True, px=self.lock_ms)
        for rkey, (value, px) in writes.items():
            pipe.set(rkey, value, px=px)
        for rkey in deletes:
            pipe.set(rkey, b"", px=1)  # gone within 1 ms: a delete with the ACL's +set alone
        results = await pipe.execute(raise_on_error=False)
        failed = sum(isinstance(r, Exception) for r in results)
        if failed == len(results):
            raise next(r for r in results if isinstance(r, Exception))
        if self.cluster:
            values, rest = results[: len(read_keys)], results[len(read_keys) :]
        elif read_keys:
            values, rest = results[0], results[1:]
            if isinstance(values, Exception):
                values = [UNKNOWN] * len(read_keys)
        else:
            values, rest = [], results
        claimed = [None if isinstance(r, Exception) else r is True for r in rest[: len(claim_keys)]]
        return values, claimed, failed

    def _deliver(self, batch: _Batch, read_keys: list[str], values: list, claimed: list, failed: int, took: float) -> None:
        """Hand a round trip's replies to the callers waiting on them."""
        stats = self.stats
        stats.inc("redis_round_trips")
        stats.observe("redis_round_trip_seconds", took)
        if failed:
            stats.inc("redis_errors", ("reply",), failed)
        if read_keys:
            stats.inc("redis_keys_read", (), len(read_keys))
            now_mono, now_wall = self.clock(), self.wall()
            raw_futs = batch.raw
            policy, type_at = self.ttl_policy or TtlPolicy(), self.type_at
            for rkey, raw in zip(read_keys, values):
                if rkey in raw_futs:
                    for fut in raw_futs[rkey]:
                        if not fut.done():
                            fut.set_result(raw if isinstance(raw, bytes) else None if raw is None else UNKNOWN)
                    if rkey not in batch.reads:
                        continue
                rdtype = rkey[type_at : rkey.find(":", type_at)] if type_at else None
                entry = decode(raw, now_mono, now_wall, policy, rdtype) if isinstance(raw, bytes) else None
                if entry is Decoded.CORRUPT:
                    stats.inc("redis_corrupt")
                    entry = None
                elif entry is Decoded.EXPIRED:
                    entry = None
                for fut in batch.reads[rkey]:
                    if not fut.done():
                        fut.set_result(entry)
        for futs, won in zip(batch.claims.values(), claimed):
            for i, fut in enumerate(futs):
                if not fut.done():
                    fut.set_result(won if i == 0 or won is None else False)  # one winner per key and turn
        if batch.writes:
            stats.inc("redis_writes", (), len(batch.writes))


def _answer_soft(batch: _Batch) -> None:
    """Answer what a batch asked without Redis: reads None, raw reads ``UNKNOWN``, claims None (cannot tell)."""
    for futs in batch.raw.values():
        for fut in futs:
            if not fut.done():
                fut.set_result(UNKNOWN)
    for futs in (*batch.reads.values(), *batch.claims.values()):
        for fut in futs:
            if not fut.done():
                fut.set_result(None)
