"""Listening addresses of the fronts and the listener that owns their connections.

Addresses are written as Postfix writes them: ``unix:/run/fastlookup/policy.sock``,
``inet:127.0.0.1:10040``, or a bare ``host:port`` / ``[::1]:port``. A unix
socket gets mode ``0660`` (the MTA's user or group is given access), a stale
socket file is removed, and a live one (another instance) is refused.

``Listener`` wraps the ``asyncio.Server`` with the shape the service needs
(``close()``, ``await wait_closed()``) and stops in stages: stop accepting,
let each connection finish the request it is answering, then close
everything still open after ``grace_s``.
"""

from __future__ import annotations

import asyncio
import logging
import os

import socket
from typing import Any, Callable

from ..errors import ConfigError
from ..sockperm import access_error, apply_socket_access, claim_socket_path

__all__ = ["Address", "parse_listen", "Listener", "serve", "serve_front", "front_access"]

log = logging.getLogger("fastlookup.adapters")

#: Mode of a front's unix socket (read/write for owner and group).
SOCKET_MODE = 0o660


class Address(tuple):
    """``("unix", path, None)`` or ``("inet", host, port)``."""

    __slots__ = ()

    def __new__(cls, kind: str, host: str, port: int | None = None) -> "Address":
        return super().__new__(cls, (kind, host, port))

    @property
    def kind(self) -> str:
        return self[0]

    @property
    def host(self) -> str:
        return self[1]

    @property
    def port(self) -> int | None:
        return self[2]

    def __str__(self) -> str:
        if self.kind == "unix":
            return "unix:" + self.host
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"


def parse_listen(text: str, key: str = "listen") -> Address:
    """Parse ``unix:/path``, ``inet:host:port``, ``host:port`` or ``[v6]:port``; ConfigError names ``key``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{key}: empty address; use unix:/path or inet:host:port")
    value = text.strip()
    if value.startswith("unix:"):
        path = value[5:]
        if not path.startswith("/"):
            raise ConfigError(f"{key}: {text!r}: a unix socket needs an absolute path (unix:/run/fastlookup/x.sock)")
        return Address("unix", path)
    if value.startswith("/"):
        return Address("unix", value)
    if value.startswith("inet:"):
        value = value[5:]
    if value.startswith("["):
        host, sep, port_text = value[1:].partition("]:")
    else:
        host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{key}: {text!r} is not unix:/path, inet:host:port or host:port")
    try:
        port = int(port_text, 10)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: {text!r}: port {port_text!r} is not a number from 0 to 65535")
    return Address("inet", host, port)


def _clear_stale(path: str, key: str) -> None:
    """Make the directory; remove a socket file nobody listens on; refuse a live one."""
    claim_socket_path(path, key, ConfigError)


class Listener:
    """A front's server and its live connections; ``close()`` then ``await wait_closed()``."""

    def __init__(self, address: Address, grace_s: float = 5.0) -> None:
        self.address = address
        self.grace_s = grace_s
        self.connections: set[Any] = set()
        self.server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._closing = False

    @property
    def sockets(self) -> tuple:
        return tuple(self.server.sockets) if self.server is not None else ()

    @property
    def port(self) -> int | None:
        """The bound TCP port (useful with ``inet:127.0.0.1:0``)."""
        for sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return sock.getsockname()[1]
        return None

    def close(self) -> None:
        """Stop accepting and remove our socket file; connections finish their current request."""
        if self._closing:
            return
        self._closing = True
        if self.server is not None:
            self.server.close()
        if self.address.kind == "unix":
            try:
                st = os.stat(self.address.host)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.address.host)
            except FileNotFoundError:
                pass
        for conn in list(self.connections):
            conn.shutdown()

    async def wait_closed(self) -> None:
        """Wait for connections to finish (at most ``grace_s``), then abort what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_s
        while self.connections and loop.time() < deadline:
            waiters = [c.closed for c in self.connections]
            await asyncio.wait(waiters, timeout=deadline - loop.time())
        for conn in list(self.connections):
            conn.abort()
        if self.server is not None:
            await self.server.wait_closed()


async def serve(
    listen: str,
    protocol_factory: Callable[[Listener], asyncio.Protocol],
    *,
    key: str = "listen",
    mode: int = SOCKET_MODE,
    group: str = "",
    grace_s: float = 5.0,
) -> Listener:
    """Bind ``listen`` and serve connections made by ``protocol_factory(listener)``.

    A unix socket gets ``mode`` and, when given, ``group`` (the MTA's group,
    e.g. ``postfix``: the service's ``server.socket_group``).
    """
    address = parse_listen(listen, key)
    listener = Listener(address, grace_s)
    loop = asyncio.get_running_loop()
    factory = lambda: protocol_factory(listener)  # noqa: E731
    if address.kind == "unix":
        path = address.host
        _clear_stale(path, key)
        listener.server = await loop.create_unix_server(factory, path=path, backlog=256)
        try:
            apply_socket_access(path, mode, group)
        except (OSError, LookupError) as exc:
            listener.close()
            raise ConfigError(f"{key}: {access_error(path, mode, group, exc, key)}") from None
        st = os.stat(path)
        listener._inode = (st.st_dev, st.st_ino)
    else:
        try:
            listener.server = await loop.create_server(factory, host=address.host, port=address.port, backlog=256)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot listen on {address}: {exc.strerror or exc}") from None
    return listener


def front_access(config: Any, key: str) -> tuple[int, str]:
    """The (mode, group) of the front configured at ``key`` (``postfix.listen``...).

    The front's own ``<name>_mode`` / ``<name>_group`` win; ``""`` falls back
    to ``server.socket_mode`` / ``server.socket_group`` (one access model,
    docs/access.md: each MTA its own socket and group).
    """
    server_conf = getattr(config, "server", None)
    mode_text = getattr(server_conf, "socket_mode", "0660")
    group = getattr(server_conf, "socket_group", "")
    table, _, name = key.partition(".")
    front_conf = getattr(config, table, None)
    own_mode = getattr(front_conf, f"{name}_mode", "") if name else ""
    own_group = getattr(front_conf, f"{name}_group", "") if name else ""
    return int(own_mode or mode_text, 8), own_group or group


async def serve_front(listen: str, service: Any, connection: Callable[[Listener, Any], asyncio.Protocol], key: str) -> Listener:
    """Serve one front for ``service``: its socket gets the front's mode and group, the service's grace."""
    config = getattr(service, "config", None)
    server_conf = getattr(config, "server", None)
    mode, group = front_access(config, key)
    return await serve(
        listen,
        lambda lst: connection(lst, service),
        key=key,
        mode=mode,
        group=group,
        grace_s=getattr(server_conf, "grace_s", 5.0),
    )
