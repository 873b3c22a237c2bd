"""One try's exchange with one server: the query on the wire and which reply answers it.

Why a module of its own: what a try sends and accepts (a random ID, RFC 5452
§9.2; the reply gate, RFC 5452 §9.1; a server's own unreadable answer told
from stray datagrams; plain DNS after FORMERR without OPT, RFC 6891 §7; TCP
after TC, RFC 7766 §5) is about one server and one question, apart from which
server the pool asks and when (``pool``) and from what the pool learns of a
server afterwards (``state``). Its outcomes are ``Answer`` values and the
sentinels below, which ``state`` reads by identity; ``OSError`` stops here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Protocol

from ..model import Answer
from ..stats import Stats
from . import codec, tcp, udp
from .oserrors import note_os_error
from .servers import Server

__all__ = ["ERROR", "FAILED", "GARBAGE", "LOCAL_ERROR", "UNREACHABLE", "Peer", "exchange"]

ERROR = Answer("error")
GARBAGE = Answer("error")  # ours (server, port, ID, question) but unparseable: counted as "garbage"
UNREACHABLE = Answer("error")  # no reply: ICMP error, connection reset, shutdown
LOCAL_ERROR = Answer("error")  # this process could not ask (out of fds): no verdict on the server
FAILED = frozenset({"servfail", "refused", "error"})
_OPT_LEN = 11  # the OPT record build_query appends with EDNS: root name, type, class, TTL, RDLEN 0


class Peer(Protocol):
    """What an exchange reads of a server's state (``state.ServerState``); it writes only ``edns``."""

    server: Server
    edns: bool
    labels: tuple[str]
    sockets: udp.Sockets
    on_drop: Callable[[], None]


def _ours(reply: bytes, query: bytes, edns: bool) -> bool:
    """Whether ``reply`` claims to answer ``query``: a QUERY response with its ID and its one
    question, byte for byte (case aside). Only read for a reply the codec rejected."""
    if len(reply) < 12 or reply[:2] != query[:2] or not reply[2] & 0x80 or reply[2] & 0x78 or reply[4:6] != b"\x00\x01":
        return False
    end = len(query) - (_OPT_LEN if edns else 0)
    return reply[12:end].lower() == query[12:end].lower()


async def exchange(
    st: Peer,
    name: str,
    rdtype: str,
    budget: float,
    deadline: float,
    *,
    clock: Callable[[], float],
    stats: Stats | None,
    timeout_s: float,
    live: set,
) -> Answer | None:
    """UDP, then TCP on truncation or UDP without EDNS on FORMERR; ``None`` on timeout.

    ``live`` holds the open UDP exchanges and TCP transports (``close()`` ends them);
    a TCP retry gets a fresh ``timeout_s``, still bounded by ``deadline``.
    """
    end = clock() + budget
    while True:
        qid = secrets.randbits(16)
        edns = st.edns
        wire = codec.build_query(name, rdtype, qid, edns=edns)

        def accept(reply: bytes, qid: int = qid, wire: bytes = wire, edns: bool = edns) -> Answer | codec.Retry | None:
            result = codec.parse_answer(reply, name, rdtype, qid)
            if result is None and _ours(reply, wire, edns):
                return GARBAGE  # our server's answer to our question, unreadable: a failure, next try now
            return result

        try:
            result = await st.sockets.exchange(wire, accept, end - clock(), st.on_drop, live)
            if result is codec.NO_EDNS and edns:
                st.edns = False  # RFC 6891 §7: this server does not speak EDNS; ask plainly
                if end - clock() > 0:
                    continue
                return None
            if result is codec.TRUNCATED:
                if stats is not None:
                    stats.inc("upstream_tcp_retries", st.labels)
                remaining = min(timeout_s, deadline - clock())
                if remaining <= 0:
                    return None
                result = await tcp.exchange(
                    st.server.host, st.server.port, wire, accept, remaining, st.on_drop, live
                )
        except OSError as exc:
            # ICMP unreachable, no route, connection reset, shutdown: this server failed now.
            if note_os_error(stats, exc):  # out of fds is this process's fault: counted, logged once per interval
                return LOCAL_ERROR
            return UNREACHABLE
        if result is None or isinstance(result, Answer):
            return result
        return ERROR  # a Retry where none is allowed: TC over TCP, or FORMERR without EDNS
