"""Which DNS servers to ask: the ``Server`` address type and resolv.conf.

Servers are given by IP address only. Resolving an upstream's own name would
need DNS before DNS works, and a name that resolves differently over time makes
the per-server in-flight bound and metrics labels meaningless.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

__all__ = ["DEFAULT_SERVER", "Server", "servers_from_resolv_conf"]

_BRACKETED = re.compile(r"\[(?P<host>[^\]]+)\](?::(?P<port>[^:]*))?")
_EXAMPLES = "e.g. 127.0.0.1, 127.0.0.1:5353, ::1 or [::1]:53"


@dataclass(frozen=True, slots=True)
class Server:
    """One upstream DNS server: an IP address (v4 or v6, compressed form) and a port."""

    host: str
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> Server:
        """Read ``10.0.0.1``, ``127.0.0.1:5353``, ``::1`` or ``[::1]:53``.

        A bare IPv6 address takes no port (its colons are ambiguous); put it
        in brackets to give one (RFC 3986 §3.2.2 notation).
        """
        if not isinstance(text, str):
            raise TypeError(f"upstream server must be a string, not {type(text).__name__}")
        raw = text.strip()
        port_text: str | None = None
        if raw.startswith("["):
            m = _BRACKETED.fullmatch(raw)
            if m is None:
                raise ValueError(f"upstream server {text!r}: unbalanced brackets; {_EXAMPLES}")
            host, port_text = m["host"], m["port"]
            if ":" not in host:
                raise ValueError(f"upstream server {text!r}: brackets are for IPv6 addresses only; {_EXAMPLES}")
        elif raw.count(":") == 1:
            host, port_text = raw.split(":")
        else:
            host = raw
        if not host:
            raise ValueError(f"upstream server {text!r}: no address; {_EXAMPLES}")
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"upstream server {text!r}: {host!r} is not an IP address "
                f"(servers are given by address, not by name); {_EXAMPLES}"
            ) from None
        port = 53
        if port_text is not None:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"upstream server {text!r}: port {port_text!r} is not in 1..65535; {_EXAMPLES}")
            port = int(port_text)
        return cls(str(addr), port)

    @property
    def family(self) -> int:
        """``AF_INET6`` or ``AF_INET``, for the socket that talks to this server."""
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def label(self) -> str:
        """``host:port`` (IPv6 in brackets): the metrics label and log name."""
        return str(self)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


#: What glibc uses when resolv.conf names no server (resolv.conf(5)).
DEFAULT_SERVER = Server("127.0.0.1", 53)


def servers_from_resolv_conf(path: str = "/etc/resolv.conf") -> list[Server]:
    """The ``nameserver`` lines of a resolv.conf, in order, on port 53.

    Like glibc (resolv.conf(5)), a missing file or one without a usable
    ``nameserver`` line means the local server 127.0.0.1:53; lines that do not
    hold an IP address are skipped, as the C library skips them.
    """
    servers: list[Server] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            addr = ipaddress.ip_address(fields[1])
        except ValueError:
            continue
        server = Server(str(addr), 53)
        if server not in servers:
            servers.append(server)
    return servers or [DEFAULT_SERVER]
