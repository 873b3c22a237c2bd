"""The sans-IO core of the test DNS server: one query's wire in, what to send out.

``Engine.handle`` parses a query, counts it, applies the fault rule, looks the
question up in the ``Zone`` and renders the reply. It returns a ``Reply`` (when
to send, and which datagrams/messages in order) or ``None`` for "send nothing".
The socket loop in ``dnsserver`` only moves bytes and keeps time, so the
protocol decisions can be read (and tested) in one place.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from fastlookup.testing.dnscontrol import COUNT_NAME, RESET_NAME
from fastlookup.testing.dnsfaults import Faults, FaultTable
from fastlookup.testing.dnszone import TypeLike, Zone, to_name, to_rdtype

__all__ = ["Engine", "Reply"]

_UDP_MIN_PAYLOAD = 512  # RFC 1035 section 4.2.1, without EDNS
_TCP_MAX = 65535
_WRONG_QUESTION = dns.name.from_text("wrong-question.invalid.")
_CACHE_MAX = 50_000


def _is_plain(faults: Faults) -> bool:
    """Whether the reply bytes are the normal ones (a delay changes when, not what)."""
    return not (
        faults.drop or faults.servfail or faults.refused or faults.truncate or faults.wrong_id or faults.wrong_question
        or faults.garbage
    )


@dataclass(frozen=True, slots=True)
class Reply:
    """What to send for one query: ``wires`` in order, ``delay_s`` from now."""

    delay_s: float
    wires: tuple[bytes, ...]


class Engine:
    """Answers queries from a ``Zone`` through a ``FaultTable``, counting them."""

    def __init__(self, zone: Zone, faults: FaultTable) -> None:
        self.zone = zone
        self.faults = faults
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[dns.name.Name, int]] = collections.Counter()
        # Rendering costs ~0.4 ms in dnspython; a repeated query costs a dict lookup instead.
        # Key: (query bytes after the ID, tcp); value: (qname, qtype, zone version, reply after the ID).
        self._cache: dict[tuple[bytes, bool], tuple[dns.name.Name, int, int, bytes]] = {}
        self._version_seen = -1

    # -- counters ------------------------------------------------------------

    def count(self, name: str | dns.name.Name | None = None, rdtype: TypeLike | None = None) -> int:
        """Counted queries, optionally only for ``name`` and/or ``rdtype`` (control queries never count)."""
        qname = to_name(name) if name is not None else None
        qtype = to_rdtype(rdtype) if rdtype is not None else None
        with self._lock:
            return sum(
                n
                for (k_name, k_type), n in self._counts.items()
                if (qname is None or k_name == qname) and (qtype is None or k_type == qtype)
            )

    def reset_counts(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()

    # -- answering -----------------------------------------------------------

    def handle(self, wire: bytes, *, tcp: bool) -> Reply | None:
        """Decide the reply to one query received over UDP (``tcp=False``) or TCP."""
        hit = self._cache.get((wire[2:], tcp)) if len(wire) > 12 else None
        if hit is not None and hit[2] == self.zone.version:
            qname, qtype, _version, tail = hit
            faults = self._count_and_fault(qname, qtype)
            if _is_plain(faults):
                return Reply(faults.delay_s, (wire[:2] + tail,))
            query = dns.message.from_wire(wire)  # parsed before, so it parses again
            return self._respond(query, faults, tcp)
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return self._formerr(wire)
        if query.flags & dns.flags.QR:
            return None  # a response sent to us: never answer those
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response = dns.message.make_response(query)
            rcode = dns.rcode.NOTIMP if query.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR
            response.set_rcode(rcode)
            return Reply(0.0, (response.to_wire(),))
        question = query.question[0]
        if question.rdclass == dns.rdataclass.CH:
            return Reply(0.0, (self._control(query, question.name),))
        faults = self._count_and_fault(question.name, question.rdtype)
        reply = self._respond(query, faults, tcp)
        if reply is not None and _is_plain(faults) and question.rdclass == dns.rdataclass.IN:
            self._remember(wire, tcp, query, reply.wires[-1])
        return reply

    def _count_and_fault(self, qname: dns.name.Name, qtype: int) -> Faults:
        """Count one query and pick its fault rule (consuming a ``fail_n``)."""
        with self._lock:
            self._counts[(qname, qtype)] += 1
        return self.faults.for_query(qname)

    def _remember(self, wire: bytes, tcp: bool, query: dns.message.Message, reply: bytes) -> None:
        """Cache a plain reply by the query's bytes after the ID, valid for this zone version."""
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        question = query.question[0]
        self._cache[(wire[2:], tcp)] = (question.name, question.rdtype, self._version_seen, reply[2:])

    def _respond(self, query: dns.message.Message, faults: Faults, tcp: bool) -> Reply | None:
        """Build the reply to a counted query under ``faults``."""
        if faults.drop:
            return None
        question = query.question[0]
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if faults.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif faults.refused or question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
        else:
            # Read the version before the lookup: a change in between makes the cache entry stale, not wrong.
            self._version_seen = self.zone.version
            found = self.zone.lookup(question.name, question.rdtype)
            response.set_rcode(found.rcode)
            response.answer = list(found.answer)
            response.authority = list(found.authority)
        if faults.garbage:
            return Reply(faults.delay_s, (self._garbage(response),))
        real = self._render(response, query, tcp=tcp, force_tc=faults.truncate and not tcp)
        wires: list[bytes] = []
        if not tcp and faults.wrong_id:
            wrong_id = (query.id + 1) & 0xFFFF
            wires.append(wrong_id.to_bytes(2, "big") + real[2:])
        if not tcp and faults.wrong_question:
            wires.append(self._other_question(query))
        wires.append(real)
        return Reply(faults.delay_s, tuple(wires))

    @staticmethod
    def _render(response: dns.message.Message, query: dns.message.Message, *, tcp: bool, force_tc: bool) -> bytes:
        """Render, truncating (TC=1, no records) when over the UDP size or when asked to."""
        if tcp:
            max_size = _TCP_MAX
        else:
            max_size = max(_UDP_MIN_PAYLOAD, query.payload) if query.edns >= 0 else _UDP_MIN_PAYLOAD
        if not force_tc:
            try:
                return response.to_wire(max_size=max_size)
            except dns.exception.TooBig:
                pass
        # RFC 2181 section 9: a truncated UDP reply; the client retries over TCP.
        response.answer = []
        response.authority = []
        response.additional = []
        response.flags |= dns.flags.TC
        return response.to_wire()

    @staticmethod
    def _garbage(response: dns.message.Message) -> bytes:
        """The response's header and question, then one answer record cut off inside its data."""
        response.answer, response.authority, response.additional = [], [], []
        response.use_edns(False)
        head = bytearray(response.to_wire())
        head[6:8] = (1).to_bytes(2, "big")  # ANCOUNT 1
        # owner: pointer to the question name; type A, class IN, TTL 60, RDLENGTH 4 -- but 1 byte of data.
        return bytes(head) + bytes.fromhex("c00c 0001 0001 0000003c 0004 7f")

    @staticmethod
    def _other_question(query: dns.message.Message) -> bytes:
        """A reply with the query's ID for a different question (a spoofing-style mismatch)."""
        other = dns.message.make_query(_WRONG_QUESTION, query.question[0].rdtype)
        other.id = query.id
        response = dns.message.make_response(other)
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def _control(self, query: dns.message.Message, name: dns.name.Name) -> bytes:
        """Answer a CHAOS control query (see ``dnscontrol``); not counted, not faulted."""
        response = dns.message.make_response(query)
        if name == COUNT_NAME:
            text = str(self.count())
        elif name == RESET_NAME:
            self.reset_counts()
            text = "0"
        else:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        rrset = dns.rrset.from_text(name, 0, dns.rdataclass.CH, dns.rdatatype.TXT, f'"{text}"')
        response.answer = [rrset]
        return response.to_wire()

    @staticmethod
    def _formerr(wire: bytes) -> Reply | None:
        """FORMERR for a query we cannot parse but whose header we can read; else silence."""
        if len(wire) < 12 or wire[2] & 0x80:
            return None
        # Header only: same ID, QR=1, opcode copied, RCODE=FORMERR (RFC 1035 section 4.1.1).
        flags = 0x8000 | (wire[2] & 0x78) << 8 | dns.rcode.FORMERR
        return Reply(0.0, (wire[:2] + flags.to_bytes(2, "big") + bytes(8),))
