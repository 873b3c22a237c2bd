"""What the pool knows of each server and how it learns it: tries, backoff probes, publishing.

Why a module of its own: the pool (``pool``) decides which server a query
asks and when; everything about one server lives here — its bound on
queries in flight, EDNS support, sockets, health (``health.ServerHealth``)
and metric label (``ServerState``), and the ``Roster`` of them all, which
runs one try on a server (a free slot, the exchange, ``exchange``) and
learns from it: a reply is an RTT sample, silence or an ICMP error backs the
server off, and a down server gets one background probe (a real question,
off the callers' path) once its backoff is over. Each change is published:
gauges, a log line when a server goes down or comes back, and ``on_state``.

Only with other servers to fall back on is a down server probed: a lone
server gets every query anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from ..model import Answer
from ..stats import Stats
from . import udp
from .exchange import FAILED, GARBAGE, LOCAL_ERROR, UNREACHABLE, exchange
from .health import DOWN, UP, ServerHealth
from .servers import Server

__all__ = ["Roster", "ServerState"]

log = logging.getLogger("fastlookup.upstream")


def _nothing() -> None:
    pass


class ServerState:
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


class Roster:
    """The pool's servers (``states``, in configured order), the tries on them and their probes.

    ``closed`` is set by the pool's ``close()``; ``last_ok`` by the pool when a
    query was answered (what probes ask); ``live`` holds the open UDP exchanges
    and TCP transports, each with ``close()``.
    """

    def __init__(
        self,
        servers: list[Server],
        *,
        max_in_flight: int,
        socket_uses: int,
        timeout_s: float,
        rtt_floor_ms: float,
        probe_min_s: float,
        probe_max_s: float,
        stats: Stats | None,
        clock: Callable[[], float],
    ) -> None:
        def health() -> ServerHealth:
            return ServerHealth(
                ceiling_s=timeout_s, floor_s=rtt_floor_ms / 1000, probe_min_s=probe_min_s, probe_max_s=probe_max_s
            )

        self.states = [ServerState(s, max_in_flight, stats, health(), socket_uses) for s in servers]
        self._timeout_s = timeout_s
        self._stats = stats
        self._clock = clock
        self.live: set = set()  # open UDP exchanges and TCP transports, each with close()
        self.closed = False
        self.last_ok: tuple[str, str] | None = None  # a question some server answered: what probes ask
        #: Called with (server, "up" | "down") when a server goes down or comes back (logs, tests).
        self.on_state: Callable[[Server, str], None] | None = None

    # --- one try ----------------------------------------------------------------------

    async def attempt(self, st: ServerState, name: str, rdtype: str, budget: float, deadline: float) -> Answer | None:
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
            answer = await exchange(
                st, name, rdtype, left, deadline, clock=clock, stats=stats, timeout_s=self._timeout_s, live=self.live
            )
            rtt = clock() - sent
            if self.closed:
                return answer
            if answer is UNREACHABLE or answer is None and rtt >= rto:
                self._failed(st, name, rdtype)  # no reply at all: back the server off
            elif answer is not None and answer is not LOCAL_ERROR:
                st.health.sample(rtt)
                st.health.replied(answer.status not in FAILED)
                self.publish(st)
                if stats is not None:
                    stats.observe("upstream_latency_seconds", rtt, st.labels)
            if stats is not None and answer is not None and answer.status in FAILED:
                stats.inc("upstream_errors", (st.label, "garbage" if answer is GARBAGE else answer.status))
            return answer
        finally:
            slots.release()

    def _failed(self, st: ServerState, name: str, rdtype: str) -> None:
        """``st`` did not answer (timeout, ICMP unreachable): back it off, probe it later."""
        now = self._clock()
        st.health.timed_out(now)
        self.publish(st)
        if st.probe is None:
            self._schedule_probe(st, name, rdtype, now)

    # --- background probes ----------------------------------------------------------

    def _schedule_probe(self, st: ServerState, name: str, rdtype: str, now: float) -> None:
        """Ask a down server a real question once its backoff is over: the last one any server
        answered, else ``name``. Only with other servers to fall back on: a lone server gets
        every query anyway."""
        if len(self.states) < 2 or self.closed:
            return
        loop = asyncio.get_running_loop()
        delay = max(st.health.down_until - now, 0.0)
        st.probe = loop.call_later(delay, self._start_probe, st, name, rdtype)

    def _start_probe(self, st: ServerState, name: str, rdtype: str) -> None:
        if self.closed:
            st.probe = None
            return
        if self.last_ok is not None:
            # A question another server answered: the one that timed out may be broken
            # everywhere (a dead delegation behind a resolver), which says nothing of this server.
            name, rdtype = self.last_ok
        st.probe = asyncio.get_running_loop().create_task(self._probe(st, name, rdtype))

    async def _probe(self, st: ServerState, name: str, rdtype: str) -> None:
        """One probe: a reply brings the server back, silence backs it off further."""
        now = self._clock()
        if st.health.state != DOWN:  # a query's answer brought it back meanwhile
            st.probe = None
            return
        answer = await self.attempt(st, name, rdtype, self._timeout_s, now + self._timeout_s)
        st.probe = None
        alive = answer is not None and answer is not UNREACHABLE
        if self._stats is not None:
            self._stats.inc("upstream_probes", (st.label, "up" if alive else "down"))
        if not alive and st.health.state == DOWN and st.probe is None and not self.closed:
            self._schedule_probe(st, name, rdtype, self._clock())  # attempt backed it off further

    def publish(self, st: ServerState) -> None:
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

    def inherit(self, old: Iterable[ServerState]) -> None:
        """Take the RTT estimates and EDNS support the ``old`` states (of the pool this one
        replaces on a reload) learned of the servers both have; down states are learned again."""
        states = {st.server: st for st in old}
        for st in self.states:
            prev = states.get(st.server)
            if prev is not None and prev.health.measured:
                h, p = st.health, prev.health
                h.srtt, h.rttvar, h.measured, h.state = p.srtt, p.rttvar, True, UP
                st.edns = prev.edns
                self.publish(st)

    def health(self) -> dict[str, dict]:
        """Per server (``host:port``): state, srtt_s, rttvar_s, rto_s, failures."""
        return {st.label: st.health.snapshot() for st in self.states}

    def close(self) -> None:
        """Stop probes and close every socket in flight; their tries end as ``error``."""
        self.closed = True
        for st in self.states:
            if st.probe is not None:
                st.probe.cancel()
                st.probe = None
        for transport in list(self.live):
            transport.close()
        self.live.clear()
        for st in self.states:
            st.sockets.close()
