"""The base protocol of the in-service fronts: bounded, ordered, failing open.

Every front (Postfix policy, socketmap, Exim) is a subclass that only says
how to cut requests out of the byte stream (``parse``), how to answer one
(``respond``) and what to answer when that fails (``fallback``). The base
class keeps each client in its lane:

* Input is bounded: more than ``max_buffer`` unparsed bytes (a 1 MB line, a
  line that never ends) or a ``Violation`` from the parser cuts that one
  connection off; nothing else is affected.
* Requests are answered one at a time, in order, by one task per busy
  connection; a client that pipelines more than ``max_queued`` requests is
  no longer read until the queue drains.
* A connection idle for ``idle_timeout_s`` is closed (between requests:
  Postfix keeps its policy connection open up to 300 s). A request that has
  begun (bytes in the buffer) must be complete within the service's
  ``server.request_timeout_s``, counted from its first byte: a client that
  trickles one byte a second is cut off, not kept for an hour.
* The service's global ``server.max_in_flight`` holds for the fronts too:
  past it a request is answered ``fallback`` at once (DUNNO, ``accept``...),
  counted as ``overloaded``.
* ``respond`` failing in any way (a bug, an RPC error, the service stopping)
  sends ``fallback``: the MTA gets a "no opinion" answer, never its own
  temporary-failure default.
* ``shutdown()`` (the service stopping) lets the request in progress finish.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Iterable

__all__ = ["FrontConnection", "Violation", "LogOnce"]

log = logging.getLogger("fastlookup.adapters")


class Violation(Exception):
    """The peer broke the protocol or a limit: its connection is cut off."""


class LogOnce:
    """Log a warning at most once per ``interval_s`` per key (one bad client must not flood the log)."""

    def __init__(self, interval_s: float = 60.0, clock=time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[Any, float] = {}
        self._suppressed: collections.Counter = collections.Counter()

    def __call__(self, key: Any, message: str, *args: Any) -> None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] += 1
            return
        if len(self._last) > 1024:
            self._last.clear()
        self._last[key] = now
        extra = self._suppressed.pop(key, 0)
        if extra:
            message += " (%d more like this since the last report)"
            args = (*args, extra)
        log.warning(message, *args)


WARN = LogOnce()


class FrontConnection(asyncio.Protocol):
    """One client of a front; subclasses define ``parse``, ``respond`` and ``fallback``."""

    front = "front"  # name in logs and counters
    max_buffer = 64 * 1024
    max_queued = 32
    idle_timeout_s = 300.0
    close_after_answer = False  # one request per connection (Exim)

    def __init__(self, listener: Any, service: Any) -> None:
        self.listener = listener
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.buffer = bytearray()
        self.queue: collections.deque = collections.deque()
        self.task: asyncio.Task | None = None
        self.closed: asyncio.Future = self.loop.create_future()
        self.closing = False
        self.at_eof = False
        self.paused = False
        self.last = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self.request_started: float | None = None  # loop time of the first byte of an incomplete request
        server_cfg = getattr(getattr(service, "config", None), "server", None)
        self.request_timeout_s = float(getattr(server_cfg, "request_timeout_s", 10.0))

    # --- subclass hooks -------------------------------------------------------------

    def parse(self) -> Iterable[Any]:
        """Cut complete requests out of ``self.buffer`` (consuming them); raise Violation."""
        raise NotImplementedError

    def in_request(self) -> bool:
        """Whether a request has begun and is not complete (a front holding parsed lines says so too)."""
        return bool(self.buffer)

    def parse_eof(self) -> Iterable[Any]:
        """Requests left in the buffer when the peer half-closed (default: none)."""
        return ()

    async def respond(self, request: Any) -> bytes:
        raise NotImplementedError

    def fallback(self, request: Any) -> bytes:
        """The fail-open answer when ``respond`` failed."""
        raise NotImplementedError

    # --- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.listener.connections.add(self)
        self._arm()
        if getattr(self.listener, "_closing", False):
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.at_eof:
            return
        self.last = self.loop.time()
        self.buffer += data
        try:
            self.queue.extend(self.parse())
            if len(self.buffer) > self.max_buffer:
                raise Violation(f"more than {self.max_buffer} bytes without a complete request")
        except Violation as exc:
            self.cut_off(str(exc))
            return
        if not self.in_request():
            self.request_started = None
        elif self.request_started is None:
            # A request began: it has request_timeout_s from now, whatever trickles in.
            self.request_started = self.last
            due = self.last + self.request_timeout_s
            if self._timer is not None and self._timer.when() > due:
                self._timer.cancel()
                self._timer = self.loop.call_at(due, self._idle)
        self._kick()

    def eof_received(self) -> bool:
        self.at_eof = True
        try:
            self.queue.extend(self.parse_eof())
        except Violation as exc:
            self.cut_off(str(exc))
            return False
        if not self.queue and self.task is None:
            return False  # nothing to answer: let the transport close
        self._kick()
        return True  # keep the write side open for the answers

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.queue.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    # --- flow ------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self.queue and self.task is None:
            self.task = self.loop.create_task(self._work())
        if len(self.queue) >= self.max_queued and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    async def _work(self) -> None:
        transport = self.transport
        try:
            while self.queue:
                request = self.queue.popleft()
                if self.paused and len(self.queue) < self.max_queued // 2:
                    self.paused = False
                    transport.resume_reading()
                server = getattr(self.service, "server", None)
                if server is not None and server.in_flight >= server.max_in_flight:
                    # The global limit holds for the fronts too: the safe default, at once.
                    self.service.stats.inc("overloaded")
                    WARN((self.front, "overloaded"), "%s: answering %s: %d calls in flight, the limit is %d",
                         self.front, self.fallback(request).strip().decode("ascii", "replace")[:40],
                         server.in_flight, server.max_in_flight)
                    reply = self.fallback(request)
                else:
                    if server is not None:
                        server.in_flight += 1
                    try:
                        reply = await self.respond(request)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # fail open: a "no opinion" answer, never the MTA's 451
                        WARN((self.front, type(exc).__name__), "%s: answering %s because the check failed: %s",
                             self.front, self.fallback(request).strip().decode("ascii", "replace")[:40], str(exc)[:200])
                        reply = self.fallback(request)
                    finally:
                        if server is not None:
                            server.in_flight -= 1
                if transport.is_closing():
                    return
                transport.write(reply)
                self.last = self.loop.time()
                if self.close_after_answer:
                    transport.close()
                    return
        finally:
            self.task = None
            if (self.closing or self.at_eof) and not self.queue and not transport.is_closing():
                transport.close()

    def _arm(self) -> None:
        when = self.last + self.idle_timeout_s
        if self.request_started is not None and self.in_request():
            when = min(when, self.request_started + self.request_timeout_s)
        else:
            self.request_started = None  # consumed another way (end of input): no deadline to keep
        self._timer = self.loop.call_at(when, self._idle)

    def _idle(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        started = self.request_started
        if started is not None and self.in_request() and self.loop.time() - started >= self.request_timeout_s:
            stats = getattr(self.service, "stats", None)
            if stats is not None:
                stats.inc("request_timeouts")
            self.cut_off(f"a request begun {self.request_timeout_s:g}s ago is not complete (server.request_timeout_s)")
            return
        if self.task is None and self.loop.time() - self.last >= self.idle_timeout_s:
            self.transport.close()
            return
        if self.task is not None:
            self.last = self.loop.time()  # busy answering is not idle
        self._arm()

    def cut_off(self, why: str) -> None:
        """Drop an abusive or broken client at once (its other requests are not answered)."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        WARN((self.front, "cut off"), "%s: cutting off a client%s: %s", self.front, f" ({peer})" if peer else "", why)
        stats = getattr(self.service, "stats", None)
        if stats is not None:
            stats.inc("front_cut_off", (self.front,))
        self.buffer.clear()
        self.queue.clear()
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """Finish the request in progress, then close."""
        self.closing = True
        self.queue.clear()
        if self.task is None and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
