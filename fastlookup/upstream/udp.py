"""DNS exchanges over UDP on connected sockets, each reused for a bounded number of queries.

Why connected sockets: ``connect()`` on a new socket makes Linux pick a
random ephemeral port (RFC 6056), and a connected socket makes the kernel
drop datagrams from any other address or port, so only replies from the
server asked are read. The ID and question are then checked by the caller's
``accept`` (``codec.parse_answer``, RFC 5452 §9.1).

Why reuse: a fresh socket per query (socket, connect, add_reader,
remove_reader, close) cost ~50 µs of client CPU a query, more than the
codec once ``fastcodec`` replaced dnspython's. ``Sockets`` keeps one current
socket per server and sends up to ``uses`` queries from it, then opens a
new one (a new random source port) and closes the old one when its last
reply is in. So a source port serves at most ``uses`` queries (RFC 5452
§9.2 wants ports as unpredictable as IDs; an off-path attacker must still
guess the port of the current socket and the 16-bit ID of a query in
flight), and every reply is still checked for server and port (the
kernel, by ``connect``), ID (the socket's table of queries in flight) and
question (``accept``). Two queries in flight with the same ID never share a
socket: the second gets a socket of its own. At most ``PENDING_MAX``
queries are in flight on one socket (its receive buffer holds their
replies); past that a new one is opened. ``uses=1`` is the old
one-socket-per-query behaviour.

An ICMP error on a socket (port unreachable) fails every query in flight on
it — they all went to the same server — and retires it.

Why ``loop.add_reader`` on a plain socket rather than a datagram endpoint:
``create_datagram_endpoint`` costs ~33 µs on uvloop and ~62 µs on asyncio
plus a loop turn before the send. ``add_reader`` is implemented by uvloop
and asyncio's selector loops; no task is created per query, only one
future and one timer.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["SOCKET_USES", "Sockets"]

#: Queries sent from one source port before a new socket (port) is opened.
SOCKET_USES = 100
#: Queries in flight on one socket at most: its receive buffer (net.core.rmem_default,
#: ~200 KB) must hold their replies when the loop is late to read them.
PENDING_MAX = 64

_TIMEOUT = object()
_MAX_DATAGRAM = 65535


class _Socket:
    """One connected UDP socket and the exchanges in flight on it, by query ID."""

    __slots__ = ("fd", "loop", "on_drop", "pending", "retired", "sock", "uses")

    def __init__(self, loop: asyncio.AbstractEventLoop, family: int, address: tuple, on_drop: Callable[[], None]) -> None:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(address)  # no packet for UDP: binds a random port and filters peers
            loop.add_reader(sock.fileno(), self.readable)
        except BaseException:
            sock.close()
            raise
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.pending: dict[int, _Exchange] = {}
        self.uses = 0
        self.retired = False
        self.on_drop = on_drop

    def readable(self) -> None:
        """Hand every waiting datagram to the exchange with its ID; the rest are dropped."""
        sock = self.sock
        pending = self.pending
        while pending:
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error (port unreachable...) on the connected socket
                self.fail(exc)
                return
            ex = pending.get(int.from_bytes(data[:2], "big")) if len(data) >= 2 else None
            result = None if ex is None else ex.accept(data)
            if result is None:
                (self.on_drop if ex is None else ex.on_drop)()  # RFC 5452 §9.1: not an answer; keep waiting
            else:
                ex.finish(result)
        # Nothing in flight: read and drop what is left so the reader does not spin.
        try:
            while True:
                sock.recv(_MAX_DATAGRAM)
                self.on_drop()
        except OSError:
            pass
        if self.retired:
            self.close()

    def fail(self, exc: BaseException) -> None:
        """Fail every exchange on this socket and close it."""
        self.retired = True
        for ex in list(self.pending.values()):
            ex.fail(exc)
        self.close()

    def done(self, qid: int) -> None:
        self.pending.pop(qid, None)
        if self.retired and not self.pending:
            self.close()

    def close(self) -> None:
        self.retired = True
        if self.fd >= 0:
            try:
                self.loop.remove_reader(self.fd)
            except Exception:  # noqa: BLE001 - the loop that owned it is closed: nothing to remove
                pass
            self.fd = -1
            self.sock.close()


class _Exchange:
    """One query in flight on a ``_Socket``; ``close()`` ends it early (shutdown)."""

    __slots__ = ("accept", "fut", "home", "on_drop", "qid", "timer")

    def __init__(self, home: _Socket, qid: int, accept: Callable[[bytes], Any], on_drop: Callable[[], None]) -> None:
        self.home = home
        self.qid = qid
        self.accept = accept
        self.on_drop = on_drop
        self.fut: asyncio.Future = home.loop.create_future()
        self.timer: asyncio.TimerHandle | None = None

    def finish(self, result: Any) -> None:
        if not self.fut.done():
            self.fut.set_result(result)
        self._end()

    def fail(self, exc: BaseException) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)
        self._end()

    def expire(self) -> None:
        self.finish(_TIMEOUT)

    def close(self) -> None:
        self.fail(ConnectionAbortedError("upstream closed"))

    def _end(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.home.done(self.qid)


class Sockets:
    """The UDP sockets to one server: the current one, and retired ones still draining."""

    __slots__ = ("address", "current", "family", "uses")

    def __init__(self, family: int, address: tuple, uses: int = SOCKET_USES) -> None:
        self.family = family
        self.address = address
        self.uses = uses
        self.current: _Socket | None = None

    async def exchange(
        self,
        wire: bytes,
        accept: Callable[[bytes], Any],
        timeout: float,
        on_drop: Callable[[], None] = lambda: None,
        live: set | None = None,
    ) -> Any:
        """Send ``wire``; return ``accept(reply)`` of the first accepted reply with its ID.

        Returns ``None`` when ``timeout`` seconds pass first. Raises ``OSError``
        when the socket cannot be made, the kernel reports an ICMP error, or the
        exchange is closed early: it is kept in ``live`` meanwhile, so that a
        shutdown can close it.
        """
        loop = asyncio.get_running_loop()
        qid = int.from_bytes(wire[:2], "big")
        home = self.current
        if home is not None and (home.loop is not loop or home.fd < 0):
            home.close()  # made on another (finished) event loop, or broken
            home = self.current = None
        if home is not None and len(home.pending) >= PENDING_MAX:
            home.retired = True  # full: a new socket (and port) for the next queries
            home = self.current = None
        if home is None or qid in home.pending:
            if home is not None:  # the ID is in flight on the current socket: a socket of its own
                home = _Socket(loop, self.family, self.address, on_drop)
                home.retired = True
            else:
                home = self.current = _Socket(loop, self.family, self.address, on_drop)
        home.uses += 1
        if home.uses >= self.uses and home is self.current:
            home.retired = True  # the next query opens a new socket: a new random port
            self.current = None
        ex = _Exchange(home, qid, accept, on_drop)
        home.pending[qid] = ex
        if live is not None:
            live.add(ex)
        ex.timer = loop.call_later(timeout, ex.expire)
        try:
            try:
                home.sock.send(wire)  # a datagram socket never blocks on send
            except OSError as exc:
                home.fail(exc)  # fails ``ex`` too: its future is read here, so asyncio does not report it as lost
                if ex.fut.done() and not ex.fut.cancelled():
                    ex.fut.exception()
                if self.current is home:
                    self.current = None
                raise
            result = await ex.fut
        except BaseException:
            ex.finish(_TIMEOUT)  # cancelled or failed: leave the socket's table
            raise
        finally:
            if live is not None:
                live.discard(ex)
        return None if result is _TIMEOUT else result

    def close(self) -> None:
        """Close the current socket (its exchanges end with ``ConnectionAbortedError``)."""
        if self.current is not None:
            for ex in list(self.current.pending.values()):
                ex.close()
            self.current.close()
            self.current = None
