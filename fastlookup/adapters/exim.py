"""A one-line protocol for Exim's ``${readsocket}``: one request line in, one answer line out.

Request: ``key=value`` pairs separated by spaces, ended by a newline (or by
Exim half-closing the socket). Keys: ``ip`` (required), ``helo``,
``sender``, ``recipient``, ``policy``, ``authenticated`` (Exim's
``$authenticated_id``: non-empty means a SASL-authenticated submission);
others are ignored. A value may be
written as Exim's ``${quote:...}`` writes it: in double quotes with ``\\"``,
``\\\\``, ``\\n`` and ``\\r`` escapes.

Answer, one line, then the connection is closed::

    accept
    tag <header value>                     e.g. tag score=1.0; Service unavailable; ...; dnsbl ...
    reject <code> <status> <text>          e.g. reject 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using bl.example
    defer <code> <status> <text>           e.g. defer 450 4.7.1 cannot find your reverse hostname, [192.0.2.1]

Exim uses a ``message`` that starts with an SMTP code of the right class as
the reply code, so the ACL passes ``<code> <status> <text>`` on as is. Any
failure inside answers ``accept`` (fail open). See ``docs/exim.md``.
"""

from __future__ import annotations

from typing import Any

from .connection import FrontConnection, Violation
from .listen import Listener, serve_front
from .replies import smtp_reply, tag_header

__all__ = ["serve", "EximConnection", "parse_line", "answer_for", "MAX_LINE"]

MAX_LINE = 4096
_KEYS = ("ip", "helo", "sender", "recipient", "policy", "authenticated")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def parse_line(line: str) -> dict[str, str]:
    """The known ``key=value`` pairs of a request line (quoted values unescaped)."""
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        eq = i
        while eq < n and line[eq] not in "= \t":
            eq += 1
        key = line[i:eq].lower()
        if eq >= n or line[eq] != "=":
            i = eq  # a bare word: ignored
            continue
        i = eq + 1
        if i < n and line[i] == '"':
            i += 1
            chars = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                    chars.append(_ESCAPES.get(line[i], line[i]))
                else:
                    chars.append(line[i])
                i += 1
            i += 1  # the closing quote
            value = "".join(chars)
        else:
            start = i
            while i < n and line[i] not in " \t":
                i += 1
            value = line[start:i]
        if key in _KEYS:
            out[key] = value
    return out


def answer_for(verdict: dict) -> bytes:
    """The answer line for a verdict map."""
    reply = smtp_reply(verdict)
    if reply is not None:
        code, status, text = reply
        return f"{verdict['action']} {code} {status} {text}\n".encode("ascii", "replace")
    header = tag_header(verdict)
    if header is not None:
        return ("tag " + header.split(": ", 1)[1] + "\n").encode("ascii", "replace")
    return b"accept\n"


class EximConnection(FrontConnection):
    """One ``${readsocket}`` call: a line in, a line out, close."""

    front = "exim"
    max_buffer = MAX_LINE
    idle_timeout_s = 10.0  # Exim sends its request at once
    close_after_answer = True

    def parse(self):
        end = self.buffer.find(b"\n")
        if end < 0:
            return ()
        line = bytes(self.buffer[:end]).rstrip(b"\r")
        if len(line) > MAX_LINE:  # docs/exim.md: a line over 4096 bytes is cut, even when it came in one read
            raise Violation(f"a line of {len(line)} bytes (limit {MAX_LINE})")
        self.buffer.clear()  # one request per connection: the rest is ignored
        self.at_eof = True
        return (line,)

    def parse_eof(self):
        if self.buffer:  # Exim half-closed after a request without a newline
            line = bytes(self.buffer)
            self.buffer.clear()
            return (line,)
        return ()

    async def respond(self, line: bytes) -> bytes:
        args = parse_line(line.decode("utf-8", "replace"))
        if not args.get("ip"):
            return b"accept\n"  # local submission: nothing to check
        args = {k: v for k, v in args.items() if v}
        if "authenticated" in args:
            args["authenticated"] = True  # ${quote:$authenticated_id}: the name is not the service's business
        return answer_for(await self.service.call("check", args))

    def fallback(self, request: Any) -> bytes:
        return b"accept\n"


async def serve(listen: str, service: Any) -> Listener:
    """Serve the Exim line protocol on ``listen``."""
    return await serve_front(listen, service, EximConnection, "postfix.exim")
