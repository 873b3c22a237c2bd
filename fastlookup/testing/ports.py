"""Pick a loopback port that is free right now, for servers that need a number.

Binding port 0 and handing the socket over is always better (our own
``DnsServer`` does that); this exists for external programs (rbldnsd,
redis-server) that must be told a port on their command line. The port can be
taken between our check and their bind, so the controllers retry a start that
fails with "address in use" on a fresh port.
"""

from __future__ import annotations

import socket

__all__ = ["free_port", "port_is_free"]

_KINDS: dict[str, tuple[int, ...]] = {
    "udp": (socket.SOCK_DGRAM,),
    "tcp": (socket.SOCK_STREAM,),
    "udp+tcp": (socket.SOCK_STREAM, socket.SOCK_DGRAM),
}
_MAX_ATTEMPTS = 100


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_is_free(port: int, kind: str = "udp+tcp", host: str = "127.0.0.1") -> bool:
    """Return whether ``port`` can be bound now on ``host`` for every type in ``kind``."""
    if kind not in _KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {sorted(_KINDS)}")
    if not 0 < port < 65536:
        return False
    family = _family(host)
    for sock_type in _KINDS[kind]:
        with socket.socket(family, sock_type) as sock:
            if sock_type == socket.SOCK_STREAM:
                # As servers do: a TIME_WAIT left by a stopped server must not count as "taken".
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(kind: str = "udp+tcp", host: str = "127.0.0.1") -> int:
    """Return a port on ``host`` (loopback) that is free for UDP and/or TCP.

    ``kind`` is ``"udp+tcp"`` (the default: DNS servers listen on both),
    ``"udp"`` or ``"tcp"``. The kernel picks a TCP (or UDP) port, then we check
    the other protocol on the same number; at most 100 tries.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {sorted(_KINDS)}")
    family = _family(host)
    first, *rest = _KINDS[kind]
    for _ in range(_MAX_ATTEMPTS):
        with socket.socket(family, first) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if all(port_is_free(port, "udp" if t == socket.SOCK_DGRAM else "tcp", host) for t in rest):
            return port
    raise RuntimeError(f"no port free for {kind} on {host} after {_MAX_ATTEMPTS} tries")
