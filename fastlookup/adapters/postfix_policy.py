"""Postfix SMTPD access policy delegation (``check_policy_service``).

The protocol (Postfix SMTPD_POLICY_README): the client sends ``name=value``
lines and an empty line; the server answers ``action=...`` and an empty
line; one connection carries many requests. Attributes used::

    client_address  -> ip         helo_name -> helo      sender -> sender
    recipient       -> recipient  policy_context -> policy (when it names one)
    sasl_username   -> authenticated (a SASL-authenticated submission)
    protocol_state, instance      (PREPEND once per message)
    client_name, reverse_client_name  (logged only: Postfix reports "unknown"
                                       for a temporary failure too, so the
                                       service does its own FCrDNS)

Every other attribute is ignored. Answers::

    reject  -> action=554 5.7.1 <text>        (the verdict's code and text)
    defer   -> action=450 4.7.1 <text>

Texts carry no "Client host rejected:" or "Recipient address rejected:": Postfix
puts its own prefix before a policy's text, by the restriction list it sits in.
    tag     -> action=PREPEND X-Fastlookup: score=...; <text>; <reasons>
    accept  -> action=DUNNO

Anything that goes wrong inside (a bad request, an RPC error, a bug) answers
``action=DUNNO``, so Postfix never falls back to its own 451. A request
without ``client_address`` (local submission) is ``DUNNO`` without a check.
Limits: a line over ``MAX_LINE`` bytes, more than ``MAX_ATTRIBUTES``
attributes in one request, or a line that never ends cuts that client off.

``main.cf``::

    smtpd_recipient_restrictions =
        permit_mynetworks, reject_unauth_destination,
        check_policy_service { unix:/run/fastlookup/policy.sock, timeout=2s, default_action=DUNNO }
"""

from __future__ import annotations

import collections
from typing import Any

from .connection import FrontConnection, Violation
from .listen import Listener, serve_front
from .replies import smtp_reply, tag_header

__all__ = ["serve", "PolicyConnection", "parse_block", "action_for", "MAX_LINE", "MAX_ATTRIBUTES"]

#: Postfix's own attributes are short; certificate fields are the longest.
MAX_LINE = 4096
#: A real request has about 30 attributes.
MAX_ATTRIBUTES = 256
DUNNO = b"action=DUNNO\n\n"
_WANTED = frozenset(
    {
        "request", "protocol_state", "client_address", "client_name", "reverse_client_name",
        "helo_name", "sender", "recipient", "instance", "policy_context", "queue_id", "sasl_username",
    }
)
_TAGGED_MEMORY = 64  # messages remembered per connection for "PREPEND once"


def parse_block(lines: list[bytes]) -> dict[str, str]:
    """The wanted attributes of one request's lines (unknown names and lines without '=' ignored)."""
    attrs: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(b"=")
        if not sep:
            continue
        key = name.decode("ascii", "replace").strip().lower()
        if key in _WANTED:
            attrs[key] = value.decode("utf-8", "replace")
    return attrs


def action_for(verdict: dict) -> str:
    """The ``action=`` value for a verdict map."""
    reply = smtp_reply(verdict)
    if reply is not None:
        code, status, text = reply
        return f"{code} {status} {text}"
    header = tag_header(verdict)
    if header is not None:
        return "PREPEND " + header
    return "DUNNO"


class PolicyConnection(FrontConnection):
    """One smtpd process's connection to the policy service."""

    front = "postfix_policy"
    max_buffer = MAX_LINE
    idle_timeout_s = 600.0  # Postfix closes idle policy connections after 300 s (smtpd_policy_service_max_idle)

    def __init__(self, listener: Listener, service: Any) -> None:
        super().__init__(listener, service)
        self.lines: list[bytes] = []
        self.tagged: collections.deque[str] = collections.deque(maxlen=_TAGGED_MEMORY)

    def parse(self):
        buffer = self.buffer
        out = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start:end])
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > MAX_LINE:
                raise Violation(f"a line of {len(line)} bytes (limit {MAX_LINE})")
            if line:
                if len(self.lines) >= MAX_ATTRIBUTES:
                    raise Violation(f"more than {MAX_ATTRIBUTES} attributes in one request")
                self.lines.append(line)
            else:
                out.append(parse_block(self.lines))
                self.lines = []
        del buffer[:start]
        return out

    def in_request(self) -> bool:
        # Attribute lines already parsed are a request in progress too (request timeout).
        return bool(self.buffer or self.lines)

    def _policy(self, attrs: dict[str, str]) -> str:
        config = getattr(self.service, "config", None)
        default = config.postfix.policy if config is not None else "default"
        wanted = attrs.get("policy_context", "").strip()
        if wanted and config is not None and wanted in config.policy:
            return wanted
        return default

    async def respond(self, attrs: dict[str, str]) -> bytes:
        request = attrs.get("request")
        ip = attrs.get("client_address", "").strip()
        if (request and request != "smtpd_access_policy") or not ip or ip == "unknown":
            return DUNNO
        args = {"ip": ip, "policy": self._policy(attrs)}
        for key, attr in (("helo", "helo_name"), ("sender", "sender"), ("recipient", "recipient")):
            value = attrs.get(attr)
            if value:
                args[key] = value
        if attrs.get("sasl_username", "").strip():
            args["authenticated"] = True  # the name itself is not the service's business
        verdict = await self.service.call("check", args)
        action = action_for(verdict)
        if action.startswith("PREPEND"):
            instance = attrs.get("instance") or attrs.get("queue_id")
            if instance:
                if instance in self.tagged:
                    return DUNNO  # one header per message, not one per recipient
                self.tagged.append(instance)
        return ("action=" + action + "\n\n").encode("ascii", "replace")

    def fallback(self, request: Any) -> bytes:
        return DUNNO


async def serve(listen: str, service: Any) -> Listener:
    """Serve the policy protocol on ``listen`` (``unix:/path`` or ``inet:host:port``)."""
    return await serve_front(listen, service, PolicyConnection, "postfix.listen")
