"""The Redis tier's read path on one server: ``MGET`` on a dedicated connection, parsed by hiredis.

Why: a batch of reads alone is the hot path of a Redis hit, and redis-py's
``execute_command`` costs ~115 µs of Python per round trip on the project's
VM (pool lock, connection checks, ``StreamReader``), against ~30 µs for
writing the same ``MGET`` to a transport and parsing the reply with a
``hiredis.Reader`` in ``data_received`` (``bench/redis_tier.py`` part (b)).

How: redis-py still opens the connection (``pool.make_connection()`` then
``connect()``), so TCP, unix sockets, TLS, ``AUTH``/``SELECT`` and Sentinel's
master discovery stay redis-py's; then the transport is handed to this small
RESP protocol (``transport.set_protocol``). The connection is ours alone
(never returned to the pool). Round trips in flight on it are answered in
order (RESP replies are FIFO); ``send`` takes a callback, so the batcher's hot path
needs no task: the reply is delivered from ``data_received``. Any failure — connection lost, a timeout
(``reset``), a protocol error — closes it, and the next read opens a new one
under the caller's deadline. Redis Cluster keeps the cluster pipeline.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable

__all__ = ["FastReader", "pack_mget"]


def pack_mget(keys: list[str]) -> bytes:
    """The RESP2 frame of ``MGET keys...`` (keys are the tier's validated ASCII keys)."""
    parts = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
    for key in keys:
        raw = key.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class _Resp(asyncio.Protocol):
    """RESP replies of one connection, matched to waiters in order."""

    __slots__ = ("transport", "reader", "waiters", "closed", "streams", "_errors")

    def __init__(self, reader: Any, errors: tuple) -> None:
        self.transport: Any = None
        self.reader = reader
        self.waiters: deque[Callable[[Any, BaseException | None], None]] = deque()
        self.closed = False
        self.streams: tuple = ()
        self._errors = errors  # (ConnectionError, ResponseError) of redis-py

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiters = self.waiters
        try:
            while waiters:
                reply = reader.gets()
                if reply is False:
                    return
                done = waiters.popleft()
                if isinstance(reply, Exception):
                    done(None, self._errors[1](str(reply)))
                else:
                    done(reply, None)
        except Exception as exc:  # hiredis.ProtocolError: the stream is lost
            self.close(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc)

    def close(self, exc: BaseException | None = None) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self._fail(exc)

    def _fail(self, exc: BaseException | None) -> None:
        error = self._errors[0](f"redis connection closed: {type(exc).__name__ if exc else 'closed'}")
        while self.waiters:
            self.waiters.popleft()(None, error)


class FastReader:
    """``await mget(keys)`` on a dedicated connection of ``client``'s pool (single server or Sentinel)."""

    def __init__(self, client: Any) -> None:
        self.pool = client.connection_pool
        self._proto: _Resp | None = None
        self._opening: asyncio.Future | None = None

    @property
    def ready(self) -> bool:
        """True when a connection is open: ``send`` may be used without awaiting a connect."""
        proto = self._proto
        return proto is not None and not proto.closed

    def send(self, keys: list[str], done: Callable[[Any, BaseException | None], None]) -> None:
        """Write ``MGET keys`` now; ``done(values, None)`` or ``done(None, error)`` is called
        from the protocol's callback when the reply (or the connection's end) arrives. Needs ``ready``."""
        proto = self._proto
        assert proto is not None
        proto.waiters.append(done)
        proto.transport.write(pack_mget(keys))

    async def mget(self, keys: list[str]) -> list:
        """``MGET keys`` as an awaitable (opens the connection when there is none)."""
        if not self.ready:
            await self._open()
        fut = asyncio.get_running_loop().create_future()

        def done(values: Any, error: BaseException | None) -> None:
            if fut.done():
                return  # the caller timed out: a late reply, dropped
            if error is None:
                fut.set_result(values)
            else:
                fut.set_exception(error)

        self.send(keys, done)
        return await fut

    def reset(self) -> None:
        """Close the connection (after a timeout or an error); the next ``mget`` opens another."""
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.close()

    async def aclose(self) -> None:
        self.reset()

    async def _open(self) -> _Resp:
        if self._opening is not None:  # another round trip is opening it: share that
            return await asyncio.shield(self._opening)
        loop = asyncio.get_running_loop()
        self._opening = opening = loop.create_future()
        try:
            proto = await self._connect()
        except BaseException as exc:
            # Those sharing this connect get an ordinary error (a failed round trip), even
            # when the opener itself was cancelled (its deadline passed): never a cancellation.
            opening.set_exception(TimeoutError("redis connect interrupted") if isinstance(exc, asyncio.CancelledError) else exc)
            opening.exception()  # retrieved here: no "never retrieved" log when nobody shared it
            raise
        finally:
            self._opening = None
        opening.set_result(proto)
        self._proto = proto
        return proto

    async def _connect(self) -> _Resp:
        import hiredis
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import ResponseError

        conn = self.pool.make_connection()
        try:
            await conn.connect()
            transport = conn._writer.transport  # redis-py did the handshake; the stream is ours now
        except BaseException:
            await conn.disconnect()
            raise
        # Detach the streams from redis-py's object, whose __del__ would close them, and keep
        # them alive on the protocol: asyncio's StreamWriter closes its transport when collected.
        streams = (conn._reader, conn._writer)
        conn._writer = conn._reader = None
        proto = _Resp(hiredis.Reader(), (RedisConnectionError, ResponseError))
        proto.streams = streams
        transport.set_protocol(proto)
        proto.connection_made(transport)
        return proto
