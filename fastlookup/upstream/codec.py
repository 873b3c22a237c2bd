"""DNS messages to and from bytes: build one query, judge one reply.

This is the seam where the codecs sit: the transports move bytes and the
pool decides what to do next; only this module (and ``fastcodec``) knows DNS
message structure, and no ``dns.*`` exception leaves it.

Two codecs, one behaviour. ``build_query`` and ``parse_answer`` try the
hand-written ``fastcodec`` first: dnspython's codec costs 50-100 µs a
message, most of a cache miss's CPU (``perf-facts.md``). Whatever it is not
sure of (rare types, DNSSEC records, EDNS options, odd names, malformed
packets) goes to ``build_query_dnspython`` / ``parse_answer_dnspython``,
which define the behaviour; property tests hold the two equal.

``parse_answer`` is also the RFC 5452 §9.1 gate: a datagram counts as the
answer only if it is a response (QR set, opcode QUERY, RFC 1035 §4.1.1) with
our query ID and our question; otherwise it returns ``None`` and the caller
drops it and keeps waiting.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ..model import Answer
from . import fastcodec
from .fastcodec import EDNS_PAYLOAD, NO_EDNS, TRUNCATED, UNSURE, Retry

__all__ = [
    "EDNS_PAYLOAD",
    "NO_EDNS",
    "TRUNCATED",
    "Retry",
    "build_query",
    "build_query_dnspython",
    "parse_answer",
    "parse_answer_dnspython",
    "render",
]

_RCODE_STATUS = {dns.rcode.SERVFAIL: "servfail", dns.rcode.REFUSED: "refused"}
_FAILURE_RCODES = frozenset({dns.rcode.FORMERR, dns.rcode.SERVFAIL, dns.rcode.NOTIMP, dns.rcode.REFUSED})
_ERROR = Answer("error")


def _qname(name: str) -> dns.name.Name:
    return dns.name.from_text(name) if name and name != "." else dns.name.root


def build_query(name: str, rdtype: str, qid: int, *, edns: bool = True) -> bytes:
    """``build_query_dnspython``'s bytes, made by ``fastcodec`` when it can (~1 µs instead of ~50)."""
    wire = fastcodec.build_query(name, rdtype, qid, edns=edns)
    return build_query_dnspython(name, rdtype, qid, edns=edns) if wire is None else wire


def parse_answer(wire: bytes, name: str, rdtype: str, qid: int) -> Answer | Retry | None:
    """Judge one reply to the query ``build_query(name, rdtype, qid)``: see ``parse_answer_dnspython``.

    ``fastcodec`` answers when it is sure of the reply (a few µs instead of
    60-100), with the same result; dnspython judges the rest.
    """
    result = fastcodec.parse_answer(wire, name, rdtype, qid)
    return parse_answer_dnspython(wire, name, rdtype, qid) if result is UNSURE else result


def build_query_dnspython(name: str, rdtype: str, qid: int, *, edns: bool = True) -> bytes:
    """One recursive (RD) query for ``name``/``rdtype`` in class IN with ID ``qid``.

    With ``edns`` it carries an OPT record advertising ``EDNS_PAYLOAD`` bytes
    (RFC 6891 §6.1), so most TXT answers fit in one datagram.
    """
    msg = dns.message.make_query(
        _qname(name), dns.rdatatype.from_text(rdtype), use_edns=0 if edns else False, payload=EDNS_PAYLOAD
    )
    msg.id = qid
    return msg.to_wire()


def parse_answer_dnspython(wire: bytes, name: str, rdtype: str, qid: int) -> Answer | Retry | None:
    """Judge one reply to the query ``build_query(name, rdtype, qid)``.

    Returns ``None`` when the bytes are not the answer to that query (wrong
    ID, wrong question, not a response, not DNS at all): drop and keep
    waiting. Returns ``TRUNCATED`` or ``NO_EDNS`` when the same server must
    be asked again. Otherwise an ``Answer`` with a status from
    ``model.STATUSES``; ``source`` is ``"upstream"``.
    """
    # Cheap header checks first, so spoofed floods cost no parsing (RFC 5452 §9.1).
    if len(wire) < 12 or (wire[0] << 8 | wire[1]) != qid:
        return None
    flags = wire[2]
    if not flags & 0x80 or flags & 0x78:  # QR must be set, opcode must be QUERY (0)
        return None
    truncated = bool(flags & 0x02)
    try:
        # Junk after a complete message is refused (TrailingJunk -> not ours), as dnspython's resolver
        # does; a truncated reply is read for its question only, so what follows it is not junk.
        msg = dns.message.from_wire(wire, question_only=truncated, ignore_trailing=truncated)
    except Exception:  # noqa: BLE001 - dnspython raises many types on malformed input; all mean "not ours"
        return None
    rcode = msg.rcode()
    if len(msg.question) == 1:
        q = msg.question[0]
        if q.name != _qname(name) or q.rdtype != dns.rdatatype.from_text(rdtype) or q.rdclass != dns.rdataclass.IN:
            return None
    elif not (len(msg.question) == 0 and rcode in _FAILURE_RCODES):
        # Like dnspython's Message.is_response, an error reply may omit the
        # question; anything else must echo exactly our one question.
        return None
    if truncated:
        return TRUNCATED
    if rcode in _RCODE_STATUS:
        return Answer(_RCODE_STATUS[rcode])
    if rcode == dns.rcode.FORMERR and msg.edns < 0:
        return NO_EDNS
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return _ERROR
    try:
        # Follows CNAMEs inside the answer section (RFC 1034 §4.3.2 step 3a).
        chain = msg.resolve_chaining()
    except (dns.message.ChainTooLong, dns.message.AnswerForNXDOMAIN, dns.exception.FormError):
        return _ERROR
    if chain.answer is not None and rcode == dns.rcode.NOERROR:
        return Answer("ok", tuple(render(rd) for rd in chain.answer), chain.minimum_ttl)
    status = "nxdomain" if rcode == dns.rcode.NXDOMAIN else "nodata"
    return Answer(status, (), _negative_ttl(msg, chain))


def _negative_ttl(msg: dns.message.Message, chain: dns.message.ChainingResult) -> int:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM) of the zone's SOA in the authority section.

    Only an SOA whose owner is the final name or one of its ancestors counts
    (the SOA of the zone the name is in, RFC 2308 §3), and the TTLs of the
    CNAMEs followed bound it too. RFC 2308 §5 says answers without an SOA
    SHOULD NOT be cached: they carry 0 and the cache applies its floor.
    """
    ttl = min((c.ttl for c in chain.cnames), default=None)
    owner = chain.canonical_name
    while True:
        soa = _find(msg.authority, owner, dns.rdatatype.SOA)
        if soa is not None:
            soa_ttl = min(soa.ttl, soa[0].minimum)
            return soa_ttl if ttl is None else min(ttl, soa_ttl)
        if owner == dns.name.root:
            return 0
        owner = owner.parent()


def _find(section: list[dns.rrset.RRset], owner: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN and rrset.name == owner and len(rrset):
            return rrset
    return None


def _name(n: dns.name.Name) -> str:
    """A domain name as the contract writes it: lower-case, no trailing dot; the root is ``.``."""
    return n.to_text(omit_final_dot=True).lower()


def _txt(rd) -> str:
    # RFC 7208 §3.3 / RFC 5782 practice: a TXT record's strings are one text.
    return b"".join(rd.strings).decode("utf-8", errors="replace")


def _soa(rd) -> str:
    return f"{_name(rd.mname)} {_name(rd.rname)} {rd.serial} {rd.refresh} {rd.retry} {rd.expire} {rd.minimum}"


_RENDER: dict[int, Callable[[object], str]] = {
    dns.rdatatype.A: lambda rd: rd.address,
    dns.rdatatype.AAAA: lambda rd: str(ipaddress.IPv6Address(rd.address)),
    dns.rdatatype.PTR: lambda rd: _name(rd.target),
    dns.rdatatype.NS: lambda rd: _name(rd.target),
    dns.rdatatype.CNAME: lambda rd: _name(rd.target),
    dns.rdatatype.TXT: _txt,
    dns.rdatatype.MX: lambda rd: f"{rd.preference} {_name(rd.exchange)}",  # null MX (RFC 7505): "0 ."
    dns.rdatatype.SOA: _soa,
}


def render(rd) -> str:
    """One rdata as the text of ``Answer.records``; unknown types use dnspython's text."""
    fn = _RENDER.get(rd.rdtype)
    return fn(rd) if fn is not None else rd.to_text()
