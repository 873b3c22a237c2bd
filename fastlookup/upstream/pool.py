"""``UpstreamPool``: ask a list of DNS servers, with retries, bounds and deadlines.

One query is a few *tries*. Try ``i`` goes to ``servers[(start + i) % n]``
and ``start`` advances with every query, which spreads load and moves past a
dead server on the next try (RFC 1035 §7.2). A try is bounded by
``timeout_s`` and the whole query by the caller's absolute ``deadline``;
waiting for a free slot on a server counts against the try, so a saturated
server is passed over like a slow one. SERVFAIL, REFUSED and other errors
move on to the next server too; when every try fails the status is the last
such failure, else ``timeout``. Outcomes are returned as ``Answer`` values;
no ``dns.*`` or socket exception leaves this package.

Per server, at most ``max_in_flight`` queries are outstanding (rbldnsd drops
queries past ~256 outstanding from one client, see ``perf-facts.md``); the
rest wait on an ``asyncio.Semaphore``.

A try goes out over UDP from a fresh connected socket with a random ID
(``secrets.randbits(16)``, RFC 5452 §9.2); replies that are not the answer
are dropped and counted while the try keeps waiting (RFC 5452 §9.1). A
truncated answer is asked again over TCP (RFC 7766 §5), with a fresh
``timeout_s`` still bounded by the deadline; a server that answers FORMERR
without OPT is asked again without EDNS, and remembered as such (RFC 6891 §7).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from ..model import Answer
from ..stats import Stats
from . import codec, tcp, udp
from .oserrors import note_os_error
from .servers import Server

__all__ = ["Upstream", "UpstreamPool"]

_TIMEOUT = Answer("timeout")
_ERROR = Answer("error")
_FAILED = frozenset({"servfail", "refused", "error"})


def _nothing() -> None:
    pass


class Upstream(Protocol):
    """What the resolver needs from upstream; ``UpstreamPool`` is the real one."""

    async def query(self, name: str, rdtype: str, deadline: float) -> Answer:
        """Answer ``name``/``rdtype`` by ``deadline`` (a ``clock()`` time); never raise for DNS outcomes."""
        ...

    async def close(self) -> None:
        """Stop: end queries in flight and refuse new ones."""
        ...


class _ServerState:
    """One server's address, bound, EDNS support and metric label."""

    __slots__ = ("address", "edns", "family", "label", "labels", "on_drop", "server", "slots")

    def __init__(self, server: Server, max_in_flight: int, stats: Stats | None) -> None:
        self.server = server
        self.label = server.label
        self.labels = (self.label,)
        self.family = server.family
        self.address = (server.host, server.port)
        self.slots = asyncio.Semaphore(max_in_flight)
        self.edns = True
        self.on_drop: Callable[[], None] = _nothing
        if stats is not None:
            labels = self.labels

            def dropped() -> None:
                stats.inc("upstream_dropped", labels)

            self.on_drop = dropped


class UpstreamPool:
    """Queries a fixed list of DNS servers over UDP (TCP on truncation).

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
        self.servers = tuple(servers)
        self._states = [_ServerState(s, max_in_flight, stats) for s in servers]
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._stats = stats
        self._clock = clock
        self._next = 0
        self._live: set = set()  # open UDP exchanges and TCP transports, each with close()
        self._closed = False
        if stats is not None:
            for counter in ("upstream_queries", "upstream_timeouts", "upstream_dropped", "upstream_tcp_retries"):
                stats.declare(counter, "server")
            stats.declare("upstream_errors", "server", "status")
            stats.declare("upstream_latency_seconds", "server")

    async def query(self, name: str, rdtype: str, deadline: float) -> Answer:
        """Answer ``name``/``rdtype`` by ``deadline``: ok, nxdomain, nodata or a failure status."""
        if self._closed:
            raise RuntimeError("UpstreamPool.query() called after close()")
        states = self._states
        n = len(states)
        start = self._next
        self._next = (start + 1) % n
        failure: Answer | None = None
        for i in range(self._attempts):
            budget = min(self._timeout_s, deadline - self._clock())
            if budget <= 0:
                break
            answer = await self._try(states[(start + i) % n], name, rdtype, budget, deadline)
            if answer is None:
                continue
            if answer.status in _FAILED:
                failure = answer
                continue
            return answer
        return failure or _TIMEOUT

    async def _try(self, st: _ServerState, name: str, rdtype: str, budget: float, deadline: float) -> Answer | None:
        """One try on one server; ``None`` means it timed out."""
        clock = self._clock
        stats = self._stats
        t0 = clock()
        slots = st.slots
        if slots.locked():
            try:
                async with asyncio.timeout(budget):
                    await slots.acquire()
            except TimeoutError:
                if stats is not None:
                    stats.inc("upstream_timeouts", st.labels)
                return None
        else:
            await slots.acquire()  # free slot: returns without suspending
        try:
            sent = clock()
            left = budget - (sent - t0)
            if left <= 0:  # the whole try went to waiting for a slot
                if stats is not None:
                    stats.inc("upstream_timeouts", st.labels)
                return None
            if stats is not None:
                stats.inc("upstream_queries", st.labels)
            answer = await self._exchange(st, name, rdtype, left, deadline)
            if stats is not None:
                if answer is None:
                    stats.inc("upstream_timeouts", st.labels)
                else:
                    stats.observe("upstream_latency_seconds", clock() - sent, st.labels)
                    if answer.status in _FAILED:
                        stats.inc("upstream_errors", (st.label, answer.status))
            return answer
        finally:
            slots.release()

    async def _exchange(
        self, st: _ServerState, name: str, rdtype: str, budget: float, deadline: float
    ) -> Answer | None:
        """UDP, then TCP on truncation or UDP without EDNS on FORMERR; ``None`` on timeout."""
        end = self._clock() + budget
        while True:
            qid = secrets.randbits(16)
            edns = st.edns
            wire = codec.build_query(name, rdtype, qid, edns=edns)

            def accept(reply: bytes, qid: int = qid) -> Answer | codec.Retry | None:
                return codec.parse_answer(reply, name, rdtype, qid)

            try:
                result = await udp.exchange(
                    st.family, st.address, wire, accept, end - self._clock(), st.on_drop, self._live
                )
                if result is codec.NO_EDNS and edns:
                    st.edns = False  # RFC 6891 §7: this server does not speak EDNS; ask plainly
                    if end - self._clock() > 0:
                        continue
                    return None
                if result is codec.TRUNCATED:
                    if self._stats is not None:
                        self._stats.inc("upstream_tcp_retries", st.labels)
                    remaining = min(self._timeout_s, deadline - self._clock())
                    if remaining <= 0:
                        return None
                    result = await tcp.exchange(
                        st.server.host, st.server.port, wire, accept, remaining, st.on_drop, self._live
                    )
            except OSError as exc:
                # ICMP unreachable, no route, connection reset, shutdown: this server failed now.
                note_os_error(self._stats, exc)  # out of fds is this process's fault: counted, logged once per interval
                return _ERROR
            if result is None or isinstance(result, Answer):
                return result
            return _ERROR  # a Retry where none is allowed: TC over TCP, or FORMERR without EDNS

    @property
    def in_flight(self) -> int:
        """Sockets open to upstream servers right now (queued queries not included)."""
        return len(self._live)

    async def close(self) -> None:
        """Refuse new queries and close every socket in flight; their queries end as ``error``."""
        self._closed = True
        for transport in list(self._live):
            transport.close()
        self._live.clear()
        await asyncio.sleep(0)  # let connection_lost callbacks run
