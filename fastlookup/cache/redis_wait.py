"""Waiting for another instance's answer: one poller per tier, not one per waiter.

Why: a loser of the fleet lock must wait as long as the winner may take (its
whole upstream budget: a 700 ms blocklist is normal) and still learn of the
answer within ~20 ms of it landing. A waiter polling on its own timer would
cost one wake-up and one Redis key per waiter per poll; during a cold start
thousands of names wait at once. Here waiters register a future per Redis
key, and one task reads every waited-for key in one ``MGET`` (through the
``Batcher``) every ``POLL_S`` while anyone waits, then wakes the waiters whose
answer arrived. The extra delay after the answer lands is at most one poll
interval plus one round trip; the cost is one round trip per interval per
instance, whatever the number of waiters.

Winner death or failure: each poll also reads the waited-for locks. A lock
that is gone while its answer is not there means the winner will not write
one: it died (the lock expired) or its answer was a failure, which is not
shared (it deleted its lock). The waiter then claims the lock again:
``SET NX`` lets exactly one instance of the fleet win and ask upstream (a
takeover); the others wait on the new lock. A waiter that reaches the end
of the lock it lost (its whole life after losing it: the lock was set no
earlier) without news does the same, in case the polls could not tell.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from .entry import Entry

__all__ = ["LOCK_GONE", "POLL_S", "Poller"]

#: What a waiter's future gets when its lock is gone and no answer is there.
LOCK_GONE = object()

#: Interval between two reads of the waited-for keys.
POLL_S = 0.005


class Poller:
    """Reads the keys waiters wait on, every ``poll_s``, while there are waiters."""

    def __init__(
        self,
        read_many: Callable[..., list[asyncio.Future]],
        poll_s: float = POLL_S,
        on_poll: Callable[[], None] = lambda: None,
        give_up: Callable[[], bool] = lambda: False,
    ) -> None:
        self._read_many = read_many  # (keys, raw=False): queue reads in this turn's batch; their futures
        self.poll_s = poll_s
        self.on_poll = on_poll
        self.give_up = give_up  # True when Redis is not to be asked (breaker open, closing): wake everyone
        self.waiting: dict[str, list[asyncio.Future]] = {}
        self.locks: dict[str, str] = {}  # value key -> its lock key
        self._task: asyncio.Task | None = None
        self.polls = 0

    def register(self, rkey: str, lock_key: str) -> asyncio.Future:
        """A future that gets the entry at ``rkey`` once a poll finds one, or ``LOCK_GONE``
        once ``lock_key`` is gone without it; ``unregister`` it after."""
        fut = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(rkey, []).append(fut)
        self.locks[rkey] = lock_key
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return fut

    def unregister(self, rkey: str, fut: asyncio.Future) -> None:
        futs = self.waiting.get(rkey)
        if futs is not None:
            if fut in futs:
                futs.remove(fut)
            if not futs:
                del self.waiting[rkey]
                self.locks.pop(rkey, None)

    async def _run(self) -> None:
        while self.waiting:
            await asyncio.sleep(self.poll_s)
            keys = list(self.waiting)
            if not keys:
                break
            if self.give_up():
                self._wake_all()
                break
            self.polls += 1
            self.on_poll()
            reads = self._read_many(keys)
            locks = self._read_many([self.locks[k] for k in keys], raw=True)  # the same batch, one MGET
            for rkey, read, lock in zip(keys, reads, locks):
                entry: Any = await read  # one batch: every future is answered by the same round trip
                held = await lock
                if entry is None:
                    if held is not None:  # held (bytes), or Redis could not tell (UNKNOWN): wait on
                        continue
                    entry = LOCK_GONE
                self.locks.pop(rkey, None)
                for fut in self.waiting.pop(rkey, ()):
                    if not fut.done():
                        fut.set_result(entry)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._wake_all()

    def _wake_all(self) -> None:
        """Answer every waiter None (each then sees why and stops waiting)."""
        for futs in self.waiting.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)
        self.waiting.clear()
        self.locks.clear()


async def wait_for(fut: asyncio.Future, timeout: float) -> Entry | None:
    """``fut``'s entry, or None after ``timeout`` (``fut`` is never cancelled: the poller owns it)."""
    if fut.done():
        return fut.result()
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(max(timeout, 0.0), wake)
    fut.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        fut.remove_done_callback(wake)
    return fut.result() if fut.done() else None
