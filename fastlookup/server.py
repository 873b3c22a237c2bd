"""The unix-socket MessagePack-RPC server, as an ``asyncio.Protocol``.

A connection is a small object with ``__slots__`` and no task of its own;
it holds a decoder only while a frame is incomplete (idle decoders are
pooled: msgpack's Unpacker costs ~44 KiB each).
Per read (``data_received``) every complete frame is decoded; the calls that
memory can answer are answered at once, inside the callback, with no task
and no future (house rule 7), and all the answers of one read leave in one
``transport.write``. A call that misses memory starts one task, whose answer
is written when ready; answers may leave out of order (the client matches
them by msgid, ``../shared/protocol.md``).

Errors: a frame that is a msgpack value but not a valid request is answered
with ``bad_request``/``too_large`` (msgid nil when none could be read);
bytes that are not msgpack, or a frame too big to buffer, close that one
connection; a bug in a method answers ``internal`` and is logged; the
service keeps serving.

Bounds: a client that does not read its answers is paused (``pause_writing``
-> ``pause_reading``) instead of being buffered without limit; a connection
with ``MAX_PENDING`` calls in flight stops being read until some finish; the
whole server has ``max_in_flight`` miss tasks at most and answers
``overloaded`` past that (memory hits are still answered).

Stop (uvicorn's stages): stop accepting and remove the socket file, stop
reading, let calls in flight finish within ``grace_s``, cancel the rest,
flush and close every connection.
"""

from __future__ import annotations

import asyncio
import logging
import os

from typing import Any

from . import rpc
from .errors import FastlookupError, Overloaded, RpcError
from .lookup import MISSING, Lookup, run, try_sync
from .resolver import Resolver
from .sockperm import access_error, apply_socket_access, claim_socket_path
from .stats import Stats
from .wire import DEFAULT_MAX_FRAME, Decoder, FramingError, encode_error, encode_response, parse_request_tuple

__all__ = ["Server", "Connection", "SocketBusy", "MAX_PENDING", "check_socket_path"]

log = logging.getLogger("fastlookup.server")

#: Calls in flight on one connection before it stops being read.
MAX_PENDING = 1024

_WRITE, _PENDING, _DRAIN = 1, 2, 4  # why a connection is not being read
#: Idle decoders kept for reuse; one that decoded a larger frame (its buffer grew) is dropped.
_POOL_SIZE, _POOLED_FRAME = 64, 1 << 16


class SocketBusy(FastlookupError):
    """The socket path is in use by a live service, or is not a socket at all."""


def check_socket_path(path: str) -> None:
    """Claim ``server.socket``: stale files go, a live instance's socket is refused (SocketBusy)."""
    claim_socket_path(path, "server.socket", SocketBusy, "fastlookup instance", "stop it first or choose another --socket")


class Connection(asyncio.Protocol):
    """One client connection: a decoder, a count of calls in flight, pause reasons."""

    __slots__ = ("server", "transport", "decoder", "pending", "paused", "outbuf", "timer", "started", "partial_at")

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.transport: Any = None
        self.decoder: Decoder | None = None  # held only while a frame is incomplete (else pooled)
        self.pending = 0
        self.paused = 0
        self.outbuf: list[bytes] | None = None
        # The request timeout: when the frame in progress began (loop time), the stream
        # offset it began at, and the timer that closes the connection if it never ends.
        self.timer: asyncio.TimerHandle | None = None
        self.started = 0.0
        self.partial_at = -1

    # --- asyncio callbacks --------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self.server
        server.connections.add(self)
        server.stats.inc("connections_accepted")
        if server.closing:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.outbuf = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        server = self.server
        server.connections.discard(self)
        if not server.connections and server._all_closed is not None and not server._all_closed.done():
            server._all_closed.set_result(None)

    def pause_writing(self) -> None:
        self._pause(_WRITE)

    def resume_writing(self) -> None:
        self._resume(_WRITE)

    def data_received(self, data: bytes) -> None:
        server = self.server
        decoder = self.decoder
        if decoder is None:
            pool = server.decoders
            decoder = self.decoder = pool.pop() if pool else Decoder(server.max_frame, max_array_len=server.max_array_len)
        out: list[bytes] = []
        try:
            decoder.feed(data)
            for obj, size in decoder:
                self._handle(obj, size, out)
        except FramingError as exc:
            server.stats.inc("framing_errors")
            log.info("closing a connection: %s", exc, extra={"_rate_limit": True})  # a flood logs once per interval
            if out:
                self.transport.write(b"".join(out))
            self.transport.close()
            return
        except Exception as exc:  # a bug in the loop above: drop this connection, keep serving
            log.exception("closing a connection after an internal error: %s", type(exc).__name__)
            self.transport.close()
            return
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if decoder.idle:
            # No partial frame held: give the decoder back, so an idle connection costs no decoder.
            self.decoder = None
            if decoder.largest <= _POOLED_FRAME and len(server.decoders) < _POOL_SIZE:
                server.decoders.append(decoder)
            self.partial_at = -1  # offsets count per decoder: the next one starts afresh
        elif decoder.completed != self.partial_at:
            # A new frame began in this read: it must be complete within request_timeout_s
            # (a slow sender holds a decoder and its buffer), however its bytes trickle in.
            self.partial_at = decoder.completed
            self.started = server.loop.time()
            if self.timer is None:
                self.timer = server.loop.call_at(self.started + server.request_timeout_s, self._request_timeout)

    def _request_timeout(self) -> None:
        self.timer = None
        server = self.server
        decoder = self.decoder
        if self.transport is None or self.transport.is_closing() or decoder is None or decoder.idle:
            return
        due = self.started + server.request_timeout_s
        if server.loop.time() < due:  # the frame that timer was armed for ended; a later one began
            self.timer = server.loop.call_at(due, self._request_timeout)
            return
        server.stats.inc("request_timeouts")
        log.info(
            "closing a connection: a frame begun %.1fs ago is not complete (server.request_timeout_s)",
            server.request_timeout_s,
            extra={"_rate_limit": True},
        )
        self.decoder = None
        self.transport.abort()

    def eof_received(self) -> bool:
        # The client closed its sending side: answer what is in flight, then close.
        if self.pending:
            self.paused |= _DRAIN
            return True
        return False

    # --- calls ----------------------------------------------------------------

    def _handle(self, obj: Any, size: int, out: list[bytes]) -> None:
        server = self.server
        try:
            msgid, method, args = parse_request_tuple(obj, size, server.max_frame)
        except RpcError as exc:
            server.stats.inc("rpc_errors", (exc.code,))
            out.append(encode_error(getattr(exc, "msgid", None), exc.code, exc.message))
            return
        try:
            prepared = rpc.prepare(server.ctx, method, args)
            if type(prepared) is rpc.Ready:
                result = prepared.value
            else:
                resolver = server.resolver
                result, lookup = try_sync(resolver, prepared)
                if result is MISSING:
                    self._start(msgid, prepared, lookup, resolver)
                    return
            if msgid is not None:
                out.append(encode_response(msgid, result))
        except RpcError as exc:
            server.stats.inc("rpc_errors", (exc.code,))
            if msgid is not None:
                out.append(encode_error(msgid, exc.code, exc.message))
        except Exception as exc:
            server.stats.inc("rpc_errors", ("internal",))
            log.exception("internal error in %s: %s", method[:64], type(exc).__name__)  # the text is in the traceback
            if msgid is not None:
                out.append(encode_error(msgid, "internal", f"internal error in {method[:64]}: {type(exc).__name__}"))

    def _start(self, msgid: int | None, evaluate: Any, lookup: Lookup, resolver: Resolver) -> None:
        server = self.server
        if server.in_flight >= server.max_in_flight:
            server.stats.inc("overloaded")
            raise Overloaded(f"{server.in_flight} calls in flight, the limit is {server.max_in_flight}")
        deadline = resolver.clock() + getattr(evaluate, "deadline_s", server.deadline_s)
        server.in_flight += 1
        self.pending += 1
        if self.pending >= MAX_PENDING:
            self._pause(_PENDING)
        task = server.loop.create_task(self._miss(msgid, evaluate, lookup, resolver, deadline))
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    async def _miss(self, msgid: int | None, evaluate: Any, lookup: Lookup, resolver: Resolver, deadline: float) -> None:
        server = self.server
        try:
            result = await run(resolver, evaluate, deadline, lookup)
            data = None if msgid is None else encode_response(msgid, result)
        except RpcError as exc:
            server.stats.inc("rpc_errors", (exc.code,))
            data = None if msgid is None else encode_error(msgid, exc.code, exc.message)
        except Exception as exc:
            server.stats.inc("rpc_errors", ("internal",))
            log.exception("internal error in a lookup: %s", type(exc).__name__)
            data = None if msgid is None else encode_error(msgid, "internal", f"internal error: {type(exc).__name__}")
        finally:
            server.in_flight -= 1
            self.pending -= 1
            if self.paused & _PENDING and self.pending < MAX_PENDING // 2:
                self._resume(_PENDING)
        if data is not None and self.transport is not None:
            self._queue(data)
        elif self.pending == 0 and self.paused & _DRAIN and self.outbuf is None and self.transport is not None:
            self.transport.close()

    # --- writing and pausing ---------------------------------------------------

    def _queue(self, data: bytes) -> None:
        """Answers finished in one loop turn leave in one write."""
        if self.outbuf is None:
            self.outbuf = [data]
            self.server.loop.call_soon(self._flush)
        else:
            self.outbuf.append(data)

    def _flush(self) -> None:
        buf, self.outbuf = self.outbuf, None
        transport = self.transport
        if buf and transport is not None and not transport.is_closing():
            transport.write(buf[0] if len(buf) == 1 else b"".join(buf))
            if self.pending == 0 and self.paused & _DRAIN:
                transport.close()

    def _pause(self, why: int) -> None:
        was = self.paused
        self.paused |= why
        if not was and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume(self, why: int) -> None:
        self.paused &= ~why
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def drain(self) -> None:
        """Stop reading (the service is stopping); close now if nothing is in flight."""
        self._pause(_DRAIN)
        if self.pending == 0 and self.outbuf is None and self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.outbuf:
            self._flush()
        if self.transport is not None:
            self.transport.close()


class Server:
    """Serves ``ctx``'s methods on a unix socket; ``ctx`` and ``resolver`` may be swapped live."""

    def __init__(
        self,
        path: str,
        ctx: rpc.Context,
        resolver: Resolver,
        *,
        stats: Stats | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_batch: int = 1000,
        max_in_flight: int = 10000,
        deadline_s: float = 2.0,
        socket_mode: int = 0o660,
        socket_group: str = "",
        grace_s: float = 5.0,
        request_timeout_s: float = 10.0,
    ) -> None:
        self.path = path
        self.ctx = ctx
        self.resolver = resolver
        self.stats = stats if stats is not None else ctx.stats
        self.stats.declare("rpc_errors", "code")
        self.max_frame = max_frame
        # A request never holds a longer array than a batch's list of calls;
        # a bound keeps a hostile frame of nested array headers from making
        # the decoder preallocate huge lists.
        self.max_array_len = max(max_batch, 1024)
        self.max_in_flight = max_in_flight
        self.deadline_s = deadline_s
        self.socket_mode = socket_mode
        self.socket_group = socket_group
        self.grace_s = grace_s
        self.request_timeout_s = request_timeout_s
        self.connections: set[Connection] = set()
        self.decoders: list[Decoder] = []  # idle decoders (see Connection.data_received)
        self.tasks: set[asyncio.Task] = set()
        self.in_flight = 0
        self.closing = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._all_closed: asyncio.Future | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None and not self.closing

    async def start(self) -> None:
        """Bind the socket (after checking no live instance holds it), set its mode and group."""
        self.loop = asyncio.get_running_loop()
        path = self.path
        check_socket_path(path)
        self._server = await self.loop.create_unix_server(lambda: Connection(self), path=path, backlog=1024)
        try:
            apply_socket_access(path, self.socket_mode, self.socket_group)
        except (OSError, LookupError) as exc:
            self._server.close()
            self._unlink_own(force=True)
            raise SocketBusy(
                "server.socket_group/socket_mode: "
                + access_error(path, self.socket_mode, self.socket_group, exc, "server.socket_group")
            ) from None
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)
        log.info("serving on %s (mode %o%s)", path, self.socket_mode, f", group {self.socket_group}" if self.socket_group else "")

    def snapshot(self) -> dict:
        """Gauges for the ``stats`` method."""
        return {"connections": len(self.connections), "in_flight": self.in_flight}

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting, drain within ``grace_s``, cancel the rest, close every connection."""
        if self._server is None or self.closing:
            return
        self.closing = True
        grace = self.grace_s if grace_s is None else grace_s
        self._server.close()
        self._unlink_own()
        for conn in list(self.connections):
            conn.drain()
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            if pending:
                log.warning("cancelling %d calls still in flight after %.1fs", len(pending), grace)
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=1.0)
        if self.connections:
            self._all_closed = self.loop.create_future()
            for conn in list(self.connections):
                conn.close()
            # Let the transports flush their last answers and report closed.
            await asyncio.wait([self._all_closed], timeout=1.0)
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.abort()
        log.info("stopped serving on %s", self.path)

    def _unlink_own(self, force: bool = False) -> None:
        """Remove the socket file, unless another instance has since replaced it."""
        try:
            st = os.stat(self.path)
            if force or (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
