"""``UpstreamPool``: ask a list of DNS servers, best first, with retries, bounds and deadlines.

One query is a few *tries*, each on the best server not yet tried in this
query (``health``: measured servers by smoothed RTT, unknown ones first so
they get measured, servers that timed out last until a background probe
brings them back; for a small ``explore_share`` of queries the question
also goes to another live server in the background, so its RTT stays known
at no cost to the caller: ``upstream_explores``). A try's timeout is its server's
``rto`` (from the RTT, at least ``rtt_floor_ms``, at most ``timeout_s``):
when it passes, the next try starts on another server, while the earlier
ones keep listening until ``timeout_s`` after they were sent (even after
the query returned: their replies, or their silence, are what the server's
health learns from), so a slow server's answer still wins if it comes
first and only silence takes a server down. With no other server left, the
next try waits for the last one to end (no early resend to a server already
asked). With ``hedge``, the next try already starts when the reply is later
than the server's usual RTT band (``upstream_hedges``).

A query makes ``max(attempts, servers)`` tries at most, all within the
caller's absolute ``deadline``; waiting for a free slot on a server counts
against the try. SERVFAIL, REFUSED, other errors and a reply that is ours
(server, port, ID, question) but does not parse move on to the next server
at once; when every try fails the status is the last such failure, else
``timeout``. Outcomes are ``Answer`` values; no ``dns.*`` or socket
exception leaves this package.

Per server, at most ``max_in_flight`` queries are outstanding (rbldnsd drops
queries past ~256 outstanding from one client, see ``perf-facts.md``); the
rest wait on an ``asyncio.Semaphore``.

One try on one server (a free slot, the exchange, what its server's health
learns from it, background probes of a down server) is ``state.Roster``'s;
what goes on the wire and which reply answers it (a random ID, RFC 5452
§9.2; a reply gate, §9.1; TCP on truncation, RFC 7766 §5, with a fresh
``timeout_s`` still bounded by the deadline; plain DNS after FORMERR without
OPT, RFC 6891 §7) is ``exchange``'s. This module chooses the server and the
moment of each try.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Protocol

from ..model import Answer
from ..stats import Stats
from . import udp
from .exchange import FAILED
from .health import DOWN, UP
from .servers import Server
from .state import Roster, ServerState

__all__ = ["Upstream", "UpstreamPool"]

_TIMEOUT = Answer("timeout")
_NEVER = float("inf")


class Upstream(Protocol):
    """What the resolver needs from upstream; ``UpstreamPool`` is the real one."""

    async def query(self, name: str, rdtype: str, deadline: float) -> Answer:
        """Answer ``name``/``rdtype`` by ``deadline`` (a ``clock()`` time); never raise for DNS outcomes."""
        ...

    async def close(self) -> None:
        """Stop: end queries in flight and refuse new ones."""
        ...


class _Try:
    """One try in flight: its server, its task, when it was sent, whether its rto passed."""

    __slots__ = ("late", "sent", "st", "task")

    def __init__(self, st: ServerState, task: asyncio.Task, sent: float) -> None:
        self.st = st
        self.task = task
        self.sent = sent
        self.late = False


class UpstreamPool:
    """Queries a fixed list of DNS servers over UDP (TCP on truncation), best server first.

    ``deadline`` is read on ``clock``, which must tick like the event loop's
    clock (``time.monotonic``, also uvloop's): the waits themselves run on
    loop timers. A fake clock only moves the deadline, which is all the
    tests of deadline arithmetic need.
    """

    def __init__(
        self,
        servers: list[Server],
        *,
        timeout_s: float = 0.8,
        attempts: int = 2,
        max_in_flight: int = 64,
        rtt_floor_ms: float = 50.0,
        probe_min_s: float = 1.0,
        probe_max_s: float = 60.0,
        explore_share: float = 0.02,
        hedge: bool = False,
        socket_uses: int = udp.SOCKET_USES,
        stats: Stats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not servers:
            raise ValueError("UpstreamPool needs at least one server, e.g. [Server.parse('127.0.0.1:53')]")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout_s!r}")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, not {attempts!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight!r}")
        if not 0 <= explore_share <= 1:
            raise ValueError(f"explore_share must be in 0..1, not {explore_share!r}")
        if socket_uses < 1:
            raise ValueError(f"socket_uses must be >= 1, not {socket_uses!r}")
        self.servers = tuple(servers)
        self._roster = roster = Roster(
            servers, max_in_flight=max_in_flight, socket_uses=socket_uses, timeout_s=timeout_s,
            rtt_floor_ms=rtt_floor_ms, probe_min_s=probe_min_s, probe_max_s=probe_max_s, stats=stats, clock=clock,
        )
        self._states = roster.states  # the same list: read by the query loop, _pick and a successor's inherit()
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._explore = explore_share if len(servers) > 1 else 0.0
        self._hedge = hedge
        self._stats = stats
        self._clock = clock
        self._next = 0
        self._background: set[asyncio.Task] = set()  # exploring tries, off the callers' path
        if stats is not None:
            for counter in (
                "upstream_queries", "upstream_timeouts", "upstream_dropped", "upstream_tcp_retries", "upstream_hedges",
                "upstream_explores",
            ):
                stats.declare(counter, "server")
            stats.declare("upstream_errors", "server", "status")
            stats.declare("upstream_probes", "server", "result")
            stats.declare("upstream_latency_seconds", "server")
            for gauge in ("upstream_srtt_seconds", "upstream_rto_seconds", "upstream_server_up"):
                stats.declare(gauge, "server")
            for st in self._states:
                roster.publish(st)

    # --- one query ---------------------------------------------------------------

    async def query(self, name: str, rdtype: str, deadline: float) -> Answer:
        """Answer ``name``/``rdtype`` by ``deadline``: ok, nxdomain, nodata or a failure status."""
        if self._roster.closed:
            raise RuntimeError("UpstreamPool.query() called after close()")
        clock = self._clock
        n = len(self._states)
        start = self._next
        self._next = (start + 1) % n
        max_tries = max(self._attempts, n)
        loop = asyncio.get_running_loop()
        tried: list[ServerState] = []
        live: list[_Try] = []
        current: _Try | None = None
        failure: Answer | None = None
        next_at = clock()  # when the next try starts if no answer came
        late_at = _NEVER  # when the latest try passes its try timeout (rto), or its RTT band with hedging
        try:
            while True:
                now = clock()
                left = deadline - now
                if left <= 0:
                    break
                if len(tried) < max_tries and now >= next_at:
                    st = self._pick(tried, start, now, name=name if not tried else None, rdtype=rdtype)
                    tried.append(st)
                    task = loop.create_task(self._roster.attempt(st, name, rdtype, min(self._timeout_s, left), deadline))
                    current = _Try(st, task, now)
                    live.append(current)
                    if len(tried) < n:  # another server is left: move on to it after this one's rto
                        h = st.health
                        next_at = now + (h.hedge_after() if self._hedge else h.rto())
                    else:  # only servers already asked: ask again once this try has ended
                        next_at = _NEVER
                    late_at = next_at
                if not live:
                    if len(tried) >= max_tries:
                        break
                    next_at = now
                    continue
                wait = left if len(tried) >= max_tries else min(left, next_at - now)
                if len(live) == 1:
                    await _first_done_one(live[0].task, wait)
                else:
                    await _first_done([t.task for t in live], wait)
                for t in list(live):
                    if not t.task.done():
                        continue
                    live.remove(t)
                    result = t.task.result()
                    if result is None or result.status in FAILED:
                        if result is None and not t.late:
                            self._count_late(t, hedged=False)
                        elif result is not None:
                            failure = result
                        if result is not None or t is current:
                            next_at = clock()  # a failed reply, or the latest try ended: the next one starts now
                        continue
                    self._roster.last_ok = (name, rdtype)
                    live.clear()  # the others run on to their end in the background: health learns from them
                    return result
                if current is not None and not current.late and not current.task.done() and clock() >= late_at:
                    self._count_late(current, hedged=self._hedge and clock() - current.sent < current.st.health.rto())
            return failure or _TIMEOUT
        finally:
            for t in live:
                if not t.late and not t.task.done():  # cut off by the deadline
                    self._count_late(t, hedged=False)

    def _pick(
        self, tried: list[ServerState], start: int, now: float, *, name: str | None, rdtype: str
    ) -> ServerState:
        """The best server not yet tried in this query (all tried: the best one again).

        For a query's first try (``name`` given), an ``explore_share`` of the time
        the same question also goes to another live server in the background, off
        the caller's path: its reply (or silence) keeps that server's RTT known.
        """
        states = self._states
        n = len(states)
        best: ServerState | None = None
        best_key: tuple | None = None
        others: list[ServerState] = []
        for i in range(n):
            st = states[(start + i) % n]
            if st in tried and len(tried) < n:
                continue
            key = st.health.rank(now)
            if best_key is None or key < best_key:
                if best is not None and best.health.state != DOWN:
                    others.append(best)
                best, best_key = st, key
            elif st.health.state != DOWN:
                others.append(st)
        assert best is not None
        if name is not None and others and best.health.state == UP and self._explore and random.random() < self._explore:
            other = random.choice(others)
            task = asyncio.get_running_loop().create_task(self._roster.attempt(other, name, rdtype, self._timeout_s, self._clock() + self._timeout_s))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            if self._stats is not None:
                self._stats.inc("upstream_explores", other.labels)
        return best

    def _count_late(self, t: _Try, *, hedged: bool) -> None:
        """``t`` got no reply within its try timeout (``rto``; ``hedged``: within its usual RTT
        band). Counted here; its server's health learns from the try itself, which keeps
        listening until ``timeout_s`` (``Roster.attempt``)."""
        t.late = True
        if self._stats is not None:
            self._stats.inc("upstream_hedges" if hedged else "upstream_timeouts", t.st.labels)

    @property
    def on_state(self) -> Callable[[Server, str], None] | None:
        """Called with (server, "up" | "down") when a server goes down or comes back (logs, tests)."""
        return self._roster.on_state

    @on_state.setter
    def on_state(self, callback: Callable[[Server, str], None] | None) -> None:
        self._roster.on_state = callback

    def inherit(self, old: object) -> None:
        """Take the RTT estimates and EDNS support ``old`` (the pool this one replaces on a
        reload) learned of the servers both have; down states are learned again."""
        self._roster.inherit(getattr(old, "_states", ()))

    def health(self) -> dict[str, dict]:
        """Per server (``host:port``): state, srtt_s, rttvar_s, rto_s, failures."""
        return self._roster.health()

    @property
    def in_flight(self) -> int:
        """UDP exchanges and TCP connections open to upstream servers now (queued queries not included)."""
        return len(self._roster.live)

    async def close(self) -> None:
        """Refuse new queries, stop probes and close every socket in flight; their queries end as ``error``."""
        roster = self._roster
        roster.closed = True
        for task in list(self._background):
            task.cancel()
        roster.close()
        await asyncio.sleep(0)  # let connection_lost callbacks run


async def _first_done(tasks: list[asyncio.Task], timeout: float) -> None:
    """Wait until one of ``tasks`` is done or ``timeout`` passed, never cancelling them."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(max(timeout, 0.0), wake)
    for task in tasks:
        task.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        for task in tasks:
            task.remove_done_callback(wake)


async def _first_done_one(task: asyncio.Task, timeout: float) -> None:
    """``_first_done`` for one task (the common case): ``asyncio.wait_for`` would cancel it."""
    if task.done():
        return
    await _first_done([task], timeout)
