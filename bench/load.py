"""The load loops: N connections in flight, bounded in count and in time.

A *cell* is one contender at one concurrency level: ``concurrency`` workers
take the next connection of the shared Zipf stream, time one full check,
and stop when ``max_checks`` connections were started or ``max_s`` passed,
whichever comes first. Sync contenders run as threads, each with its own
client (one MTA process, one connection); async contenders run as tasks on
one uvloop event loop, the way an asyncio hook runs. Every call is itself
bounded by its client's timeout, and a worker gives up after ``MAX_ERRORS``
failures, so a cell always ends.

Every started check ends as one of: a success (its latency is kept), an
*unknown* (the answer was incomplete: a zone could not answer, a lookup timed
out -- ``base.Unknown``), an *error* (a wrong answer or an exception), or,
for the Redis-only rows, *excluded* (answered from the memory tier, so not a
measurement of the Redis tier). Unknowns and errors are failures: their
latency enters the percentiles at ``fail_s`` (the client timeout) or at what
they took when that was longer, so a contender that times out never looks
better in the tail.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

__all__ = ["Cell", "run_threads", "run_async", "MAX_ERRORS", "EXCLUDE"]

MAX_ERRORS = 20
#: Extra time a cell may take past ``max_s`` for checks in flight to end.
GRACE_S = 15.0

Check = Callable[[Any], Any]


@dataclass
class Cell:
    """What one cell measured."""

    latencies_s: list[float] = field(default_factory=list)  # successes only
    failed_s: list[float] = field(default_factory=list)  # failures, at fail_s or longer
    errors: int = 0
    unknown: int = 0  # incomplete answers (unknown zone, timeout, temperror)
    excluded: int = 0  # checks the contender said not to count (memory-tier answers in a Redis row)
    first_error: str | None = None
    first_unknown: str | None = None
    wall_s: float = 0.0
    started: int = 0  # connections taken from the stream (a prefix of it)
    incomplete: bool = False  # a worker was still busy after max_s + GRACE_S

    @property
    def checks(self) -> int:
        return len(self.latencies_s)


class _Shared:
    def __init__(self, stream: list, max_checks: int, max_s: float) -> None:
        self.stream = stream
        self.limit = min(max_checks, len(stream))
        self.max_s = max_s
        self.counter = itertools.count()
        self.deadline = float("inf")
        self.lock = threading.Lock()
        self.errors = 0
        self.unknown = 0
        self.excluded = 0
        self.first_error: str | None = None
        self.first_unknown: str | None = None

    def next(self) -> Any:
        """The next connection, or None when the cell's count or time is used up."""
        i = next(self.counter)  # atomic under the GIL
        if i >= self.limit or time.perf_counter() >= self.deadline:
            return None
        return self.stream[i]

    def error(self, exc: BaseException) -> None:
        with self.lock:
            if _is_unknown(exc):
                self.unknown += 1
                if self.first_unknown is None:
                    self.first_unknown = f"{type(exc).__name__}: {exc}"[:300]
                return
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {exc}"[:300]

    def exclude(self) -> None:
        with self.lock:
            self.excluded += 1

    def fill(self, cell: "Cell") -> None:
        cell.errors, cell.first_error = self.errors, self.first_error
        cell.unknown, cell.first_unknown = self.unknown, self.first_unknown
        cell.excluded = self.excluded
        cell.started = cell.checks + cell.errors + cell.unknown + cell.excluded


#: What a check returns to say "answered, but do not count me" (see ``Cell.excluded``).
EXCLUDE = "exclude"


def _is_unknown(exc: BaseException) -> bool:
    """An incomplete answer or a timeout (its own column), as opposed to a wrong answer or a bug."""
    from .contenders.base import Unknown

    return isinstance(exc, (Unknown, TimeoutError)) or type(exc).__name__ in ("ServiceUnavailable", "Timeout")


def run_threads(
    make_worker: Callable[[], tuple[Check, Callable[[], None]]],
    stream: list,
    concurrency: int,
    max_checks: int,
    max_s: float,
    tick: Callable[[int], None] = lambda n: None,
    *,
    fail_s: float = 0.0,
) -> Cell:
    """Run ``concurrency`` threads; ``make_worker()`` (called in each thread) gives ``(check, close)``.

    A failed check enters the percentiles at ``fail_s`` (or what it took, if longer).
    """
    shared = _Shared(stream, max_checks, max_s)
    samples: list[list[float]] = [[] for _ in range(concurrency)]
    failed: list[list[float]] = [[] for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)
    setup_errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            check, close = make_worker()
        except BaseException as exc:  # reported as the cell's failure
            setup_errors.append(exc)
            ready.abort()
            return
        try:
            ready.wait(30)
        except threading.BrokenBarrierError:
            close()
            return
        out = samples[slot]
        bad = failed[slot]
        perf = time.perf_counter
        failures = 0
        try:
            while True:
                item = shared.next()
                if item is None:
                    break
                t0 = perf()
                try:
                    tag = check(item)
                except Exception as exc:  # counted, and the worker moves on
                    bad.append(max(perf() - t0, fail_s))
                    shared.error(exc)
                    failures += 1
                    if failures >= MAX_ERRORS:
                        break
                    continue
                if tag == EXCLUDE:
                    shared.exclude()
                    continue
                out.append(perf() - t0)
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(i,), name=f"bench-{i}", daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    try:
        ready.wait(60)
    except threading.BrokenBarrierError:
        for t in threads:
            t.join(5)
        if setup_errors:
            raise setup_errors[0] from None
        raise RuntimeError("workers did not get ready within 60 s") from None
    t0 = time.perf_counter()
    shared.deadline = t0 + max_s
    hard_end = t0 + max_s + GRACE_S
    for t in threads:
        while t.is_alive() and time.perf_counter() < hard_end:
            t.join(0.1)
            tick(sum(len(s) for s in samples))
    cell = Cell(wall_s=time.perf_counter() - t0)
    cell.incomplete = any(t.is_alive() for t in threads)
    for s in samples:
        cell.latencies_s.extend(s)
    for s in failed:
        cell.failed_s.extend(s)
    shared.fill(cell)
    return cell


def run_async(
    make_worker: Callable[[], Awaitable[tuple[Callable[[Any], Awaitable[Any]], Callable[[], Awaitable[None]]]]],
    stream: list,
    concurrency: int,
    max_checks: int,
    max_s: float,
    tick: Callable[[int], None] = lambda n: None,
    *,
    check_timeout_s: float = 5.0,
    fail_s: float = 0.0,
) -> Cell:
    """Run ``concurrency`` tasks on a fresh uvloop loop; ``await make_worker()`` gives ``(check, close)``."""
    import uvloop

    async def main() -> Cell:
        shared = _Shared(stream, max_checks, max_s)
        check, close = await make_worker()
        samples: list[float] = []
        failed: list[float] = []
        perf = time.perf_counter

        async def task() -> None:
            failures = 0
            while True:
                item = shared.next()
                if item is None:
                    return
                t0 = perf()
                try:
                    async with asyncio.timeout(check_timeout_s):
                        tag = await check(item)
                except Exception as exc:  # TimeoutError included: counted, the task moves on
                    failed.append(max(perf() - t0, fail_s))
                    shared.error(exc)
                    failures += 1
                    if failures >= MAX_ERRORS:
                        return
                    continue
                if tag == EXCLUDE:
                    shared.exclude()
                    continue
                samples.append(perf() - t0)

        t0 = perf()
        shared.deadline = t0 + max_s
        tasks = [asyncio.create_task(task()) for _ in range(concurrency)]
        incomplete = False
        end = t0
        try:
            while True:
                done, pending = await asyncio.wait(tasks, timeout=0.1)
                tick(len(samples))
                if not pending:
                    break
                if perf() > t0 + max_s + GRACE_S:
                    incomplete = True
                    for t in pending:
                        t.cancel()
                    await asyncio.wait(pending, timeout=5)
                    break
            end = perf()
        finally:
            await close()
        cell = Cell(latencies_s=samples, failed_s=failed, wall_s=end - t0, incomplete=incomplete)
        shared.fill(cell)
        return cell

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())
