"""A tiny asyncio HTTP/1.1 endpoint for ``/metrics`` and ``/healthz``.

Just enough HTTP for a Prometheus scraper and a health probe: ``GET`` or
``HEAD`` of a fixed set of paths, one request per connection (``Connection:
close``), a bounded request head read under a timeout, and nothing else — no
keep-alive, no bodies, no chunking. It runs in the service's event loop, so
a route's function runs on the thread that owns the service's state.
Standard library only; ``fastlookup.metrics`` supplies the routes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Callable

__all__ = ["HttpEndpoint", "Route", "parse_listen", "MAX_REQUEST_BYTES", "REQUEST_TIMEOUT_S"]

log = logging.getLogger("fastlookup.metrics")

#: A route: () -> (status, content type, body).
Route = Callable[[], tuple[int, str, bytes]]

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
_TEXT = "text/plain; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def parse_listen(listen: str, key: str = "metrics.listen") -> tuple[str | None, int]:
    """``127.0.0.1:9153``, ``[::1]:9153``, ``:9153`` (every address) -> (host, port); ValueError naming ``key``."""
    text = listen.strip()
    if text.startswith("inet:"):
        text = text[5:]
    m = re.fullmatch(r"\[(?P<h6>[^\]]+)\]:(?P<p6>\d+)|(?P<h>[^:\[\]]*):(?P<p>\d+)", text)
    if m is None:
        raise ValueError(f"{key}: {listen!r} is not host:port (e.g. 127.0.0.1:9153 or [::1]:9153)")
    host = m["h6"] if m["h6"] is not None else m["h"]
    port = int(m["p6"] if m["p6"] is not None else m["p"])
    if not 0 <= port <= 65535:
        raise ValueError(f"{key}: port {port} is not in 0..65535")
    return (host or None), port


class HttpEndpoint:
    """A running endpoint: ``close()``, ``await wait_closed()``, ``port`` (the bound port)."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.registry = None  # set by fastlookup.metrics, for callers that want it
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task] = set()

    @classmethod
    async def start(cls, host: str | None, port: int, routes: dict[str, Route]) -> "HttpEndpoint":
        endpoint = cls(routes)
        endpoint._server = await asyncio.start_server(
            endpoint._handle, host, port, limit=MAX_REQUEST_BYTES * 2, reuse_address=True
        )
        return endpoint

    @property
    def sockets(self):
        return self._server.sockets if self._server is not None else ()

    @property
    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Stop accepting and end requests in progress (they are short and idempotent)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()

    async def wait_closed(self) -> None:
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                await _respond(writer, 431, _TEXT, b"request header too large\n")
                return
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                await _respond(writer, 400, _TEXT, b"bad request\n")
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            route = self.routes.get(target)
            if route is None:
                paths = " or ".join(self.routes)
                await _respond(writer, 404, _TEXT, f"not found: try {paths}\n".encode())
                return
            if method not in ("GET", "HEAD"):
                await _respond(writer, 405, _TEXT, b"method not allowed\n", extra=b"Allow: GET, HEAD\r\n")
                return
            try:
                status, content_type, body = route()
            except Exception:  # a bug: answer 500, log it, never take the service down
                log.exception("%s failed", target)
                status, content_type, body = 500, _TEXT, b"internal error\n"
            await _respond(writer, status, content_type, body, head_only=method == "HEAD")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    body: bytes,
    head_only: bool = False,
    extra: bytes = b"",
) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    ).encode() + extra + b"\r\n"
    writer.write(head if head_only else head + body)
    await writer.drain()
