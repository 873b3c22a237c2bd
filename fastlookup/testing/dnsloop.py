"""The socket side of the test DNS server: one thread, a selector, a timer heap.

``Loop.run`` owns every socket. UDP datagrams are drained into a queue and the
sockets are drained again between every two answers, which keeps the kernel
receive buffer near empty when hundreds of queries arrive at once. A delayed
reply is an entry in a heap of due times, so a slow answer never holds up the
others. TCP uses RFC 1035 section 4.2.2 framing. Protocol decisions are the
``Engine``'s; this module only moves bytes and keeps time.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import selectors
import socket
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from fastlookup.testing.dnsengine import Engine, Reply

__all__ = ["Loop"]

_BATCH = 1024  # datagrams pulled per drain, answers per loop turn, accepts per wakeup
_SEND_RETRIES = 100  # 1 ms apart, when a UDP send buffer is full


class TcpConn:
    """One TCP client: RFC 1035 section 4.2.2 two-byte length framing both ways."""

    def __init__(self, loop: Loop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.writing = False
        self.closed = False

    def on_event(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.flush()
        if mask & selectors.EVENT_READ and not self.closed:
            self.on_read()

    def on_read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        self.inbuf += data
        while len(self.inbuf) >= 2:
            size = int.from_bytes(self.inbuf[:2], "big")
            if len(self.inbuf) < 2 + size:
                break
            wire = bytes(self.inbuf[2 : 2 + size])
            del self.inbuf[: 2 + size]
            self.loop.answer(wire, self, None)

    def send(self, wires: Iterable[bytes]) -> None:
        if self.closed:
            return
        for wire in wires:
            self.outbuf += len(wire).to_bytes(2, "big") + wire
        self.flush()

    def flush(self) -> None:
        if self.closed:
            return
        try:
            sent = self.sock.send(self.outbuf) if self.outbuf else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        del self.outbuf[:sent]
        if self.writing != bool(self.outbuf):  # watch for writability only while output waits
            self.writing = bool(self.outbuf)
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.writing else 0)
            self.loop.selector.modify(self.sock, events, self.on_event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.selector.unregister(self.sock)
            self.loop.conns.discard(self)
            self.sock.close()


class Loop:
    """The serving thread's state: selector, UDP queue, TCP clients, timer heap."""

    def __init__(self, engine: Engine, udp: list[socket.socket], tcp: list[socket.socket]) -> None:
        self.engine = engine
        self.udp = udp
        self.selector = selectors.DefaultSelector()
        self.conns: set[TcpConn] = set()
        self.pending: collections.deque[tuple[socket.socket, bytes, Any]] = collections.deque()
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.stopping = False
        self.errors: list[BaseException] = []
        for sock in udp:
            self.selector.register(sock, selectors.EVENT_READ, lambda _m, s=sock: self.drain(s))
        for sock in tcp:
            self.selector.register(sock, selectors.EVENT_READ, lambda _m, s=sock: self.accept(s))
        self.selector.register(self._wake_r, selectors.EVENT_READ, lambda _m: self._drain_wake())

    def wake(self) -> None:
        """Interrupt ``select`` from another thread (used by ``stop``)."""
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def run(self) -> None:
        """Serve until ``stopping`` is set and ``wake`` called; then close the clients and the selector."""
        try:
            while not self.stopping:
                if self.pending:
                    timeout: float | None = 0.0
                elif self.timers:
                    timeout = max(0.0, self.timers[0][0] - time.monotonic())
                else:
                    timeout = None
                for key, mask in self.selector.select(timeout):
                    key.data(mask)
                if self.stopping:
                    break
                self.answer_udp()
                self.run_timers()
        finally:
            for conn in list(self.conns):
                conn.close()
            self.selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _drain_wake(self) -> None:
        """Empty the wake-up socket so ``select`` blocks again."""
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass

    def drain(self, sock: socket.socket) -> None:
        """Move every datagram waiting in the kernel into ``pending`` (bounded per call)."""
        for _ in range(_BATCH):
            try:
                wire, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. an ICMP error reported on a UDP socket
            self.pending.append((sock, wire, addr))

    def answer_udp(self) -> None:
        """Answer queued datagrams, pulling new arrivals in between two answers."""
        for _ in range(_BATCH):
            if not self.pending:
                return
            sock, wire, addr = self.pending.popleft()
            self.answer(wire, sock, addr)
            for s in self.udp:
                self.drain(s)

    def accept(self, listener: socket.socket) -> None:
        """Accept every waiting TCP client (bounded per call)."""
        for _ in range(_BATCH):
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            conn = TcpConn(self, sock)
            self.conns.add(conn)
            self.selector.register(sock, selectors.EVENT_READ, conn.on_event)

    def answer(self, wire: bytes, target: socket.socket | TcpConn, addr: Any) -> None:
        """Handle one query; a bug in the engine is kept in ``errors`` and leaves the query unanswered."""
        try:
            reply = self.engine.handle(wire, tcp=isinstance(target, TcpConn))
        except Exception as exc:  # noqa: BLE001 - the serving thread must survive to report it
            self.errors.append(exc)
            traceback.print_exc()
            return
        self.dispatch(reply, target, addr)

    def dispatch(self, reply: Reply | None, target: socket.socket | TcpConn, addr: Any) -> None:
        """Send ``reply`` now, or schedule it ``reply.delay_s`` from now."""
        if reply is None:
            return

        if isinstance(target, TcpConn):
            self.later(reply.delay_s, lambda: target.send(reply.wires))
        else:
            self.later(reply.delay_s, lambda: self.send_udp(target, addr, list(reply.wires), _SEND_RETRIES))

    def send_udp(self, sock: socket.socket, addr: Any, wires: list[bytes], retries: int) -> None:
        """Send datagrams in order; if the send buffer is full, try the rest again in 1 ms."""
        while wires:
            try:
                sock.sendto(wires[0], addr)
            except BlockingIOError:
                if retries > 0:
                    self.later(0.001, lambda: self.send_udp(sock, addr, wires, retries - 1))
                return
            except OSError:
                return  # the client went away (ICMP unreachable): nothing to do
            wires.pop(0)

    def later(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run ``action`` now (delay 0) or from the timer heap after ``delay_s``."""
        if delay_s <= 0:
            action()
        else:
            heapq.heappush(self.timers, (time.monotonic() + delay_s, next(self._seq), action))

    def run_timers(self) -> None:
        """Run every timer action that is due."""
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _due, _seq, send = heapq.heappop(self.timers)
            send()
