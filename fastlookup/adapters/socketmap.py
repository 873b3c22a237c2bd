"""The Postfix/Sendmail socketmap protocol, keyed by client IP.

Requests and replies are netstrings (``LEN:DATA,``, D. J. Bernstein's
netstring format; Postfix socketmap_table(5), Sendmail's socket map):

    request  ``NAME KEY``           NAME: the map name, KEY: the lookup key
    reply    ``OK ACTION``          the client is listed: an access(5) action
             ``NOTFOUND ``          nothing to say
             ``TEMP reason`` / ``PERM reason``

For ``check_client_access socketmap:unix:/run/fastlookup/socketmap.sock:NAME``
Postfix looks up the client's name, its parent domains, the IP address and
the address with octets cut off (``192.0.2``); only a full IP address is
checked, everything else is ``NOTFOUND``. NAME picks a configured policy
(``[policy.NAME]``), else the listener's ``[postfix] policy``.

Actions: ``OK 554 5.7.1 text`` (reject), ``OK 451 4.7.1 text`` (defer),
``OK PREPEND X-Fastlookup: ...`` (tag). Any failure inside is ``NOTFOUND``
(fail open): a ``TEMP`` would make Postfix answer 451 itself. ``PERM`` is
only for a request without a key.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .connection import FrontConnection, Violation
from .listen import Listener, serve_front
from .replies import smtp_reply, tag_header

__all__ = ["serve", "SocketmapConnection", "netstring", "parse_netstrings", "reply_for", "MAX_REQUEST"]

#: A request is a map name and a key: far below this.
MAX_REQUEST = 4096
NOTFOUND = b"9:NOTFOUND ,"


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def parse_netstrings(buffer: bytearray, limit: int = MAX_REQUEST) -> list[bytes]:
    """Complete netstrings cut from the front of ``buffer``; Violation on a malformed one."""
    out = []
    while buffer:
        colon = buffer.find(b":", 0, 11)
        if colon < 0:
            if len(buffer) > 10 or not buffer.isdigit():
                raise Violation("not a netstring (expected LEN:DATA,)")
            break
        head = bytes(buffer[:colon])
        if not head.isdigit() or (len(head) > 1 and head.startswith(b"0")):
            raise Violation(f"bad netstring length {head[:12]!r}")
        length = int(head)
        if length > limit:
            raise Violation(f"a request of {length} bytes (limit {limit})")
        end = colon + 1 + length
        if len(buffer) < end + 1:
            break
        if buffer[end] != ord(","):
            raise Violation("netstring not terminated by ','")
        out.append(bytes(buffer[colon + 1 : end]))
        del buffer[: end + 1]
    return out


def reply_for(verdict: dict) -> bytes:
    """The socketmap reply netstring for a verdict map."""
    reply = smtp_reply(verdict)
    if reply is not None:
        code, status, text = reply
        return netstring(f"OK {code} {status} {text}".encode("ascii", "replace"))
    header = tag_header(verdict)
    if header is not None:
        return netstring(("OK PREPEND " + header).encode("ascii", "replace"))
    return NOTFOUND


class SocketmapConnection(FrontConnection):
    """One MTA process's socketmap connection."""

    front = "socketmap"
    max_buffer = MAX_REQUEST + 16
    idle_timeout_s = 600.0

    def parse(self):
        return parse_netstrings(self.buffer)

    def _policy(self, name: str) -> str:
        config = getattr(self.service, "config", None)
        if config is None:
            return "default"
        return name if name in config.policy else config.postfix.policy

    async def respond(self, request: bytes) -> bytes:
        name, sep, key = request.decode("utf-8", "replace").partition(" ")
        key = key.strip()
        if not sep or not key:
            return netstring(b"PERM expected 'NAME KEY'")
        try:
            ipaddress.ip_address(key)
        except ValueError:
            return NOTFOUND  # a host name, a parent domain, "192.0.2": not ours to judge
        verdict = await self.service.call("check", {"ip": key, "policy": self._policy(name)})
        return reply_for(verdict)

    def fallback(self, request: Any) -> bytes:
        return NOTFOUND


async def serve(listen: str, service: Any) -> Listener:
    """Serve the socketmap protocol on ``listen``."""
    return await serve_front(listen, service, SocketmapConnection, "postfix.socketmap")
