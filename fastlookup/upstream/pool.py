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

A try goes out over UDP (``udp``: a connected socket reused for a bounded
number of queries) with a random ID (``secrets.randbits(16)``, RFC 5452
§9.2); replies that are not the answer are dropped and counted while the try
keeps waiting (RFC 5452 §9.1). A truncated answer is asked again over TCP
(RFC 7766 §5), with a fresh ``timeout_s`` still bounded by the deadline; a
server that answers FORMERR without OPT is asked again without EDNS, and
remembered as such (RFC 6891 §7).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from ..model import Answer
from ..stats import Stats
from . import codec, tcp, udp
from .health import DOWN, UP, ServerHealth
from .oserrors import note_os_error
from .servers import Server

__all__ = ["Upstream", "UpstreamPool"]

log = logging.getLogger("fastlookup.upstream")

_TIMEOUT = Answer("timeout")
_NEVER = float("inf")
_ERROR = Answer("error")
_GARBAGE = Answer("error")  # ours (server, port, ID, question) but unparseable: counted as "garbage"
_UNREACHABLE = Answer("error")  # no reply: ICMP error, connection reset, shutdown
_LOCAL_ERROR = Answer("error")  # this process could not ask (out of fds): no verdict on the server
_FAILED = frozenset({"servfail", "refused", "error"})
_OPT_LEN = 11  # the OPT record build_query appends with EDNS: root name, type, class, TTL, RDLEN 0


def _nothing() -> None:
    pass


def _ours(reply: bytes, query: bytes, edns: bool) -> bool:
    """Whether ``reply`` claims to answer ``query``: a QUERY response with its ID and its one
    question, byte for byte (case aside). Only read for a reply the codec rejected."""
    if len(reply) < 12 or reply[:2] != query[:2] or not reply[2] & 0x80 or reply[2] & 0x78 or reply[4:6] != b"\x00\x01":
        return False
    end = len(query) - (_OPT_LEN if edns else 0)
    return reply[12:end].lower() == query[12:end].lower()


class Upstream(Protocol):
    """What the resolver needs from upstream; ``UpstreamPool`` is the real one."""

    async def query(self, name: str, rdtype: str, deadline: float) -> Answer:
        """Answer ``name``/``rdtype`` by ``deadline`` (a ``clock()`` time); never raise for DNS outcomes."""
        ...

    async def close(self) -> None:
        """Stop: end queries in flight and refuse new ones."""
        ...


class _ServerState:
    """One server's address, bound, EDNS support, health, sockets and metric label."""

    __slots__ = (
        "address", "edns", "family", "health", "label", "labels", "on_drop", "probe", "server", "shown", "slots", "sockets",
    )

    def __init__(self, server: Server, max_in_flight: int, stats: Stats | None, health: ServerHealth, socket_uses: int) -> None:
        self.server = server
        self.label = server.label
        self.labels = (self.label,)
        self.family = server.family
        self.address = (server.host, server.port)
        self.slots = asyncio.Semaphore(max_in_flight)
        self.edns = True
        self.health = health
        self.shown = health.state  # the state last published
        self.probe: asyncio.TimerHandle | asyncio.Task | None = None
        self.sockets = udp.Sockets(self.family, self.address, socket_uses)
        self.on_drop: Callable[[], None] = _nothing
        if stats is not None:
            labels = self.labels

            def dropped() -> None:
                stats.inc("upstream_dropped", labels)

            self.on_drop = dropped


class _Try:
    """One try in flight: its server, its task, when it was sent, whether its rto passed."""

    __slots__ = ("late", "sent", "st", "task")

    def __init__(self, st: _ServerState, task: asyncio.Task, sent: float) -> None:
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

        def health() -> ServerHealth:
            return ServerHealth(
                ceiling_s=timeout_s, floor_s=rtt_floor_ms / 1000, probe_min_s=probe_min_s, probe_max_s=probe_max_s
            )

        self._states = [_ServerState(s, max_in_flight, stats, health(), socket_uses) for s in servers]
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._explore = explore_share if len(servers) > 1 else 0.0
        self._hedge = hedge
        self._stats = stats
        self._clock = clock
        self._next = 0
        self._live: set = set()  # open UDP exchanges and TCP transports, each with close()
        self._closed = False
        self._background: set[asyncio.Task] = set()  # exploring tries, off the callers' path
        self._last_ok: tuple[str, str] | None = None  # a question some server answered: what probes ask
        #: Called with (server, "up" | "down") when a server goes down or comes back (logs, tests).
        self.on_state: Callable[[Server, str], None] | None = None
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
                self._publish(st)

    # --- one query ---------------------------------------------------------------

    async def query(self, name: str, rdtype: str, deadline: float) -> Answer:
        """Answer ``name``/``rdtype`` by ``deadline``: ok, nxdomain, nodata or a failure status."""
        if self._closed:
            raise RuntimeError("UpstreamPool.query() called after close()")
        clock = self._clock
        n = len(self._states)
        start = self._next
        self._next = (start + 1) % n
        max_tries = max(self._attempts, n)
        loop = asyncio.get_running_loop()
        tried: list[_ServerState] = []
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
                    task = loop.create_task(self._try(st, name, rdtype, min(self._timeout_s, left), deadline))
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
                    if result is None or result.status in _FAILED:
                        if result is None and not t.late:
                            self._count_late(t, hedged=False)
                        elif result is not None:
                            failure = result
                        if result is not None or t is current:
                            next_at = clock()  # a failed reply, or the latest try ended: the next one starts now
                        continue
                    self._last_ok = (name, rdtype)
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
        self, tried: list[_ServerState], start: int, now: float, *, name: str | None, rdtype: str
    ) -> _ServerState:
        """The best server not yet tried in this query (all tried: the best one again).

        For a query's first try (``name`` given), an ``explore_share`` of the time
        the same question also goes to another live server in the background, off
        the caller's path: its reply (or silence) keeps that server's RTT known.
        """
        states = self._states
        n = len(states)
        best: _ServerState | None = None
        best_key: tuple | None = None
        others: list[_ServerState] = []
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
            task = asyncio.get_running_loop().create_task(self._try(other, name, rdtype, self._timeout_s, self._clock() + self._timeout_s))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            if self._stats is not None:
                self._stats.inc("upstream_explores", other.labels)
        return best

    def _count_late(self, t: _Try, *, hedged: bool) -> None:
        """``t`` got no reply within its try timeout (``rto``; ``hedged``: within its usual RTT
        band). Counted here; its server's health learns from the try itself, which keeps
        listening until ``timeout_s`` (``_try``)."""
        t.late = True
        if self._stats is not None:
            self._stats.inc("upstream_hedges" if hedged else "upstream_timeouts", t.st.labels)

    def _failed(self, st: _ServerState, name: str, rdtype: str) -> None:
        """``st`` did not answer (timeout, ICMP unreachable): back it off, probe it later."""
        now = self._clock()
        st.health.timed_out(now)
        self._publish(st)
        if st.probe is None:
            self._schedule_probe(st, name, rdtype, now)

    # --- background probes ----------------------------------------------------------

    def _schedule_probe(self, st: _ServerState, name: str, rdtype: str, now: float) -> None:
        """Ask a down server a real question once its backoff is over: the last one any server
        answered, else ``name``. Only with other servers to fall back on: a lone server gets
        every query anyway."""
        if len(self._states) < 2 or self._closed:
            return
        loop = asyncio.get_running_loop()
        delay = max(st.health.down_until - now, 0.0)
        st.probe = loop.call_later(delay, self._start_probe, st, name, rdtype)

    def _start_probe(self, st: _ServerState, name: str, rdtype: str) -> None:
        if self._closed:
            st.probe = None
            return
        if self._last_ok is not None:
            # A question another server answered: the one that timed out may be broken
            # everywhere (a dead delegation behind a resolver), which says nothing of this server.
            name, rdtype = self._last_ok
        st.probe = asyncio.get_running_loop().create_task(self._probe(st, name, rdtype))

    async def _probe(self, st: _ServerState, name: str, rdtype: str) -> None:
        """One probe: a reply brings the server back, silence backs it off further."""
        now = self._clock()
        if st.health.state != DOWN:  # a query's answer brought it back meanwhile
            st.probe = None
            return
        answer = await self._try(st, name, rdtype, self._timeout_s, now + self._timeout_s)
        st.probe = None
        alive = answer is not None and answer is not _UNREACHABLE
        if self._stats is not None:
            self._stats.inc("upstream_probes", (st.label, "up" if alive else "down"))
        if not alive and st.health.state == DOWN and st.probe is None and not self._closed:
            self._schedule_probe(st, name, rdtype, self._clock())  # _try backed it off further

    def _publish(self, st: _ServerState) -> None:
        """Report ``st``'s health: gauges, a log line and ``on_state`` when it went down or came back."""
        state = st.health.state
        if state != st.shown:
            if state == DOWN:
                log.warning("upstream %s: no reply in time; asked last, probed again in %.1fs", st.label, st.health.down_until - self._clock())
            elif st.shown == DOWN:
                log.info("upstream %s: answers again (rtt %.1f ms)", st.label, st.health.srtt * 1000)
            st.shown = state
            if self.on_state is not None:
                self.on_state(st.server, state)
        stats = self._stats
        if stats is not None:
            h = st.health
            stats.set("upstream_srtt_seconds", h.srtt, st.labels)
            stats.set("upstream_rto_seconds", h.rto(), st.labels)
            stats.set("upstream_server_up", 0 if h.state == DOWN else 1, st.labels)

    def inherit(self, old: object) -> None:
        """Take the RTT estimates and EDNS support ``old`` (the pool this one replaces on a
        reload) learned of the servers both have; down states are learned again."""
        states = {st.server: st for st in getattr(old, "_states", ())}
        for st in self._states:
            prev = states.get(st.server)
            if prev is not None and prev.health.measured:
                h, p = st.health, prev.health
                h.srtt, h.rttvar, h.measured, h.state = p.srtt, p.rttvar, True, UP
                st.edns = prev.edns
                self._publish(st)

    def health(self) -> dict[str, dict]:
        """Per server (``host:port``): state, srtt_s, rttvar_s, rto_s, failures."""
        return {st.label: st.health.snapshot() for st in self._states}

    # --- one try ----------------------------------------------------------------------

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
                return None
        else:
            await slots.acquire()  # free slot: returns without suspending
        try:
            sent = clock()
            rto = st.health.rto()
            left = budget - (sent - t0)
            if left <= 0:  # the whole try went to waiting for a slot
                return None
            if stats is not None:
                stats.inc("upstream_queries", st.labels)
            answer = await self._exchange(st, name, rdtype, left, deadline)
            rtt = clock() - sent
            if self._closed:
                return answer
            if answer is _UNREACHABLE or answer is None and rtt >= rto:
                self._failed(st, name, rdtype)  # no reply at all: back the server off
            elif answer is not None and answer is not _LOCAL_ERROR:
                st.health.sample(rtt)
                st.health.replied(answer.status not in _FAILED)
                self._publish(st)
                if stats is not None:
                    stats.observe("upstream_latency_seconds", rtt, st.labels)
            if stats is not None and answer is not None and answer.status in _FAILED:
                stats.inc("upstream_errors", (st.label, "garbage" if answer is _GARBAGE else answer.status))
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

            def accept(reply: bytes, qid: int = qid, wire: bytes = wire, edns: bool = edns) -> Answer | codec.Retry | None:
                result = codec.parse_answer(reply, name, rdtype, qid)
                if result is None and _ours(reply, wire, edns):
                    return _GARBAGE  # our server's answer to our question, unreadable: a failure, next try now
                return result

            try:
                result = await st.sockets.exchange(wire, accept, end - self._clock(), st.on_drop, self._live)
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
                if note_os_error(self._stats, exc):  # out of fds is this process's fault: counted, logged once per interval
                    return _LOCAL_ERROR
                return _UNREACHABLE
            if result is None or isinstance(result, Answer):
                return result
            return _ERROR  # a Retry where none is allowed: TC over TCP, or FORMERR without EDNS

    @property
    def in_flight(self) -> int:
        """UDP exchanges and TCP connections open to upstream servers now (queued queries not included)."""
        return len(self._live)

    async def close(self) -> None:
        """Refuse new queries, stop probes and close every socket in flight; their queries end as ``error``."""
        self._closed = True
        for task in list(self._background):
            task.cancel()
        for st in self._states:
            if st.probe is not None:
                st.probe.cancel()
                st.probe = None
        for transport in list(self._live):
            transport.close()
        self._live.clear()
        for st in self._states:
            st.sockets.close()
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
