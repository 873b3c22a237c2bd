"""fastlookup.upstream.fastcodec: the hand-written codec agrees with dnspython's on the same bytes."""

from __future__ import annotations

import ipaddress
import random
import socket
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.rrset
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from fastlookup.model import Answer
from fastlookup.upstream import codec, fastcodec
from fastlookup.upstream.fastcodec import UNSURE

QID = 0x1234
IN = dns.rdataclass.IN
HOT = ["A", "AAAA", "PTR", "TXT", "CNAME", "NS", "MX", "SOA"]
ZONES = ["zone.test", "bl.example", "2.0.192.in-addr.arpa", "a.b.c.test"]
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_public_api():
    """fastcodec exports the codec, its sentinel and the reply outcomes; codec keeps both paths reachable."""
    assert sorted(fastcodec.__all__) == sorted(
        ["EDNS_PAYLOAD", "NO_EDNS", "TRUNCATED", "UNSURE", "Retry", "build_query", "parse_answer", "qname_wire"]
    )
    assert sorted(codec.__all__) == sorted(
        ["EDNS_PAYLOAD", "NO_EDNS", "TRUNCATED", "Retry", "build_query", "build_query_dnspython", "parse_answer",
         "parse_answer_dnspython", "render"]
    )  # fmt: skip
    assert codec.TRUNCATED is fastcodec.TRUNCATED and codec.NO_EDNS is fastcodec.NO_EDNS


# -- generating replies with dnspython ------------------------------------------------------------

labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
long_labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=40, max_size=63)
names = st.builds(
    lambda first, zone: ".".join([*first, zone]),
    st.lists(st.one_of(labels, labels, labels, long_labels), max_size=3),
    st.sampled_from(ZONES),
)
ttls = st.integers(0, 86400) | st.integers(2**31 - 2, 2**32 - 1) | st.sampled_from([0, 1, 2**31 - 1, 2**31])
u32 = st.integers(0, 2**32 - 1)


def recase(rnd, text: str) -> str:
    """Some letters upper-cased: names compare without case (RFC 4343)."""
    return "".join(c.upper() if rnd.random() < 0.3 else c for c in text)


@st.composite
def rdatas(draw, rdtype: str, rnd):
    """One rdata of a hot type, built by dnspython's classes."""
    t = dns.rdatatype.from_text(rdtype)
    if rdtype == "A":
        text = socket.inet_ntoa(draw(st.binary(min_size=4, max_size=4)))
    elif rdtype == "AAAA":
        text = str(ipaddress.IPv6Address(draw(st.binary(min_size=16, max_size=16))))
    elif rdtype in ("PTR", "NS", "CNAME"):
        text = recase(rnd, draw(names)) + "."
    elif rdtype == "MX":
        text = f"{draw(st.integers(0, 65535))} {recase(rnd, draw(names | st.just(''))) + '.'}"
    elif rdtype == "SOA":
        mname, rname = recase(rnd, draw(names)), recase(rnd, draw(names))
        text = f"{mname}. {rname}. " + " ".join(str(draw(u32)) for _ in range(5))
    else:  # TXT: several character-strings, any bytes (non-UTF-8 too)
        strings = draw(st.lists(st.binary(max_size=255) | st.binary(max_size=8), min_size=1, max_size=4))
        wire = b"".join(bytes([len(s)]) + s for s in strings)
        return dns.rdata.from_wire(IN, t, wire, 0, len(wire))
    return dns.rdata.from_text(IN, t, text)


@dataclass
class Case:
    wire: bytes
    name: str
    rdtype: str
    expect_fast: bool  # fastcodec must decide this one itself

    def __repr__(self) -> str:
        return f"Case({self.name!r}, {self.rdtype}, fast={self.expect_fast}, wire={self.wire.hex()})"


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


@st.composite
def replies(draw) -> Case:
    """A reply to qname/qtype as a server would send it: CNAME chain, answer RRset, SOA, glue, noise."""
    rnd = random.Random(draw(st.integers(0, 2**32)))  # for letter case and order: one draw, not one per letter
    qname, qtype = draw(names), draw(st.sampled_from(HOT))
    rcode = draw(st.sampled_from(["NOERROR"] * 5 + ["NXDOMAIN"] * 3 + ["SERVFAIL", "REFUSED", "FORMERR", "NOTIMP"]))
    sections: list[list[tuple[str, str, int, dns.rdata.Rdata]]] = [[], [], []]  # answer, authority, additional
    owner = qname
    seen = [qname]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3, 16, 17]))):  # MAX_CHAIN is 16
        target = draw(names | st.sampled_from(seen))  # sometimes a loop
        rd = dns.rdata.from_text(IN, dns.rdatatype.CNAME, recase(rnd, target) + ".")
        sections[0].append((recase(rnd, owner), "CNAME", draw(ttls), rd))
        owner = target
        seen.append(target)
    drawn: list[dns.rdata.Rdata] = []
    for _ in range(draw(st.integers(0, 4))):  # the answer RRset
        if drawn and draw(st.booleans()):  # a repeat, names in other case: RRsets are sets (RFC 2181 §5)
            rd = draw(st.sampled_from(drawn))
            if qtype != "TXT":
                rd = dns.rdata.from_text(IN, rd.rdtype, recase(rnd, rd.to_text()))
        else:
            rd = draw(rdatas(qtype, rnd))
            drawn.append(rd)
        sections[0].append((recase(rnd, owner), qtype, draw(ttls), rd))
    if draw(st.booleans()):  # the zone's SOA, at or above the final name, or elsewhere
        soa_owner = draw(st.sampled_from(ancestors(owner) + ZONES))
        sections[1].append((recase(rnd, soa_owner), "SOA", draw(ttls), draw(rdatas("SOA", rnd))))
    for _ in range(draw(st.integers(0, 3))):  # other records anywhere: NS, glue, stray types
        rdtype = draw(st.sampled_from(HOT))
        where = draw(st.sampled_from([0, 1, 2]))
        rec_owner = draw(names | st.sampled_from(seen))
        sections[where].append((recase(rnd, rec_owner), rdtype, draw(ttls), draw(rdatas(rdtype, rnd))))
    for section in sections:  # records of one RRset need not be adjacent
        rnd.shuffle(section)

    edns, compress = draw(st.booleans()), draw(st.booleans())
    flags = dns.flags.QR | dns.flags.RD | dns.flags.RA | dns.rcode.from_text(rcode)
    truncated = draw(st.sampled_from([False] * 9 + [True]))
    if truncated:
        flags |= dns.flags.TC
    r = dns.renderer.Renderer(QID, flags, 65535)
    if not compress:
        r.compress = None  # dns.name.Name.to_wire writes whole names when there is no table
    r.add_question(dns.name.from_text(recase(rnd, qname)), dns.rdatatype.from_text(qtype), IN)
    for number, section in zip((dns.renderer.ANSWER, dns.renderer.AUTHORITY, dns.renderer.ADDITIONAL), sections):
        for rec_owner, rdtype, ttl, rd in section:
            rrset = dns.rrset.RRset(dns.name.from_text(rec_owner), IN, dns.rdatatype.from_text(rdtype))
            rrset.add(rd, ttl)
            r.add_rrset(number, rrset, want_shuffle=False)
    if edns:
        r.add_edns(0, 0, fastcodec.EDNS_PAYLOAD)
    r.write_header()
    wire = r.get_wire()
    if truncated and draw(st.booleans()):
        wire = wire[: draw(st.integers(12, len(wire)))]  # cut anywhere, even inside the question

    asked_name, asked_type = qname, qtype
    if draw(st.sampled_from([False] * 9 + [True])):  # someone else's reply
        asked_name, asked_type = draw(names), draw(st.sampled_from(HOT))

    def owners(section: int, rdtype: str) -> list[str]:
        return [o.lower() for o, t, _, _ in sections[section] if t == rdtype]

    # Singleton types (RFC 2181 §10.1): dnspython keeps the last of several, fastcodec defers to it.
    def repeated(items: list[str]) -> bool:
        return len(set(items)) < len(items)

    expect_fast = not (
        rcode == "NOTIMP"
        or repeated(owners(0, "CNAME"))
        or (qtype == "SOA" and repeated(owners(0, "SOA")))
        or repeated(owners(1, "SOA"))
        or len(wire) < len(r.get_wire())
    )
    return Case(wire, asked_name, asked_type, expect_fast)


def both(wire: bytes, name: str, rdtype: str):
    """fastcodec's and dnspython's judgement of the same bytes."""
    return fastcodec.parse_answer(wire, name, rdtype, QID), codec.parse_answer_dnspython(wire, name, rdtype, QID)


def assert_agree(fast, slow) -> None:
    if fast is UNSURE:
        return
    if isinstance(slow, codec.Retry) or slow is None:
        assert fast is slow
    else:
        assert fast == slow  # status, records in the same order, TTL


# -- parsing: properties ----------------------------------------------------------------------------


@PROPERTY
@given(case=replies())
def test_parse_equals_dnspython(case: Case):
    """On generated replies of the hot types fastcodec decides itself, with dnspython's exact result."""
    fast, slow = both(case.wire, case.name, case.rdtype)
    event("unsure" if fast is UNSURE else f"fast: {getattr(slow, 'status', slow)}")
    assert_agree(fast, slow)
    if case.expect_fast:
        assert fast is not UNSURE
    result = codec.parse_answer(case.wire, case.name, case.rdtype, QID)
    assert result is slow if not isinstance(slow, Answer) else result == slow


@PROPERTY
@given(
    txts=st.lists(st.lists(st.binary(max_size=255), min_size=1, max_size=5), min_size=1, max_size=4),
    ttl=ttls,
    compress=st.booleans(),
)
def test_txt_strings_equal_dnspython(txts, ttl, compress):
    """TXT records of several strings, any bytes, come out as dnspython's joined and decoded text."""
    rrset = dns.rrset.RRset(dns.name.from_text("2.0.0.127.bl.test."), IN, dns.rdatatype.TXT)
    for strings in txts:
        wire = b"".join(bytes([len(s)]) + s for s in strings)
        rrset.add(dns.rdata.from_wire(IN, dns.rdatatype.TXT, wire, 0, len(wire)), ttl)
    wire = render(reply("2.0.0.127.bl.test", "TXT", answer=[rrset]), compress)
    fast, slow = both(wire, "2.0.0.127.bl.test", "TXT")
    assert fast == slow and slow.status == "ok"


@st.composite
def mutated(draw) -> Case:
    """A generated reply with a few bytes changed, cut, inserted, or turned into compression pointers."""
    case = draw(replies())
    wire = bytearray(case.wire)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "flip", "pointer", "count", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(wire) - 1, 0)))
        value = draw(st.integers(0, 255))
        if not wire:
            break
        if kind == "set":
            wire[at] = value
        elif kind == "flip":
            wire[at] ^= 1 << (value % 8)
        elif kind == "pointer" and at + 1 < len(wire):  # forward, backward, self and looping pointers
            wire[at : at + 2] = bytes([0xC0 | (value >> 6), draw(st.integers(0, 255))])
        elif kind == "count":
            wire[4 + 2 * (value % 4) : 6 + 2 * (value % 4)] = draw(st.integers(0, 65535)).to_bytes(2, "big")
        elif kind == "cut":
            del wire[at:]
        elif kind == "insert":
            wire[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del wire[at : at + value % 8 + 1]
    return Case(bytes(wire), case.name, case.rdtype, False)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_replies_never_raise(case: Case):
    """Random mutations of valid replies never raise, and fastcodec is either unsure or agrees with dnspython."""
    fast, slow = both(case.wire, case.name, case.rdtype)
    assert fast is UNSURE or fast is None or isinstance(fast, (Answer, codec.Retry))
    assert_agree(fast, slow)
    assert isinstance(codec.parse_answer(case.wire, case.name, case.rdtype, QID), (Answer, codec.Retry, type(None)))


# -- parsing: tables -----------------------------------------------------------------------------------


def rr(name: str, ttl: int, rdtype: str, *rdatas: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(name, ttl, "IN", rdtype, *rdatas)


def reply(qname, rdtype, *, rcode=dns.rcode.NOERROR, answer=(), authority=(), additional=(), edns=True, options=()):
    """A response, built by dnspython, to a query for qname/rdtype."""
    query = dns.message.make_query(qname, rdtype, use_edns=0 if edns else False)
    query.id = QID
    resp = dns.message.make_response(query)
    if edns and options:
        resp.use_edns(0, 0, fastcodec.EDNS_PAYLOAD, options=list(options))
    resp.set_rcode(rcode)
    resp.answer.extend(answer)
    resp.authority.extend(authority)
    resp.additional.extend(additional)
    return resp


def render(msg: dns.message.Message, compress: bool = True) -> bytes:
    """The message's wire form, with or without name compression (RFC 1035 §4.1.4)."""
    r = dns.renderer.Renderer(msg.id, msg.flags, 65535)
    if not compress:
        r.compress = None
    for q in msg.question:
        r.add_question(q.name, q.rdtype, q.rdclass)
    for number, section in ((1, msg.answer), (2, msg.authority), (3, msg.additional)):
        for rrset in section:
            r.add_rrset(number, rrset, want_shuffle=False)
    if msg.opt is not None:
        r.add_opt(msg.opt)
    r.write_header()
    return r.get_wire()


SOA = "ns.zone.test. hostmaster.zone.test. 2024010101 3600 600 86400 60"
TC = reply("t.zone.test", "TXT")
TC.flags |= dns.flags.TC
CHAIN = [rr("www.zone.test.", 600, "CNAME", "mid.zone.test."), rr("mid.zone.test.", 100, "CNAME", "end.zone.test."),
         rr("end.zone.test.", 300, "A", "198.51.100.7")]  # fmt: skip

# fmt: off
FAST_CASES = [
    pytest.param(reply("h.zone.test", "A", answer=[rr("h.zone.test.", 300, "A", "192.0.2.1", "192.0.2.2")]),
                 "h.zone.test", "A", id="a"),
    pytest.param(reply("h.zone.test", "AAAA", answer=[rr("h.zone.test.", 300, "AAAA", "2001:db8::1")]),
                 "h.zone.test", "AAAA", id="aaaa"),
    pytest.param(reply("1.2.0.192.in-addr.arpa", "PTR",
                       answer=[rr("1.2.0.192.in-addr.arpa.", 300, "PTR", "Mail.Zone.Test.")]),
                 "1.2.0.192.in-addr.arpa", "PTR", id="ptr"),
    pytest.param(reply("2.0.0.127.bl.test", "TXT", answer=[rr("2.0.0.127.bl.test.", 10, "TXT", '"a" "b" "c"')]),
                 "2.0.0.127.bl.test", "TXT", id="txt"),
    pytest.param(reply("zone.test", "MX", answer=[rr("zone.test.", 60, "MX", "10 mx.zone.test.", "20 mx2.zone.test.")],
                       additional=[rr("mx.zone.test.", 60, "A", "192.0.2.25")]),
                 "zone.test", "MX", id="mx-with-glue"),
    pytest.param(reply("zone.test", "NS", answer=[rr("zone.test.", 60, "NS", "ns1.zone.test.")]),
                 "zone.test", "NS", id="ns"),
    pytest.param(reply("zone.test", "SOA", answer=[rr("zone.test.", 60, "SOA", SOA)]), "zone.test", "SOA", id="soa"),
    pytest.param(reply("www.zone.test", "A", answer=CHAIN), "www.zone.test", "A", id="cname-chain"),
    pytest.param(reply("www.zone.test", "CNAME", answer=CHAIN[:1]), "www.zone.test", "CNAME", id="cname-query"),
    pytest.param(reply("x.bl.test", "A", rcode=dns.rcode.NXDOMAIN, authority=[rr("bl.test.", 900, "SOA", SOA)]),
                 "x.bl.test", "A", id="nxdomain-soa"),
    pytest.param(reply("h.zone.test", "AAAA", authority=[rr("zone.test.", 900, "SOA", SOA)]),
                 "h.zone.test", "AAAA", id="nodata-soa"),
    pytest.param(reply("h.zone.test", "A", rcode=dns.rcode.SERVFAIL), "h.zone.test", "A", id="servfail"),
    pytest.param(reply("h.zone.test", "A", rcode=dns.rcode.REFUSED), "h.zone.test", "A", id="refused"),
    pytest.param(reply("h.zone.test", "A", rcode=dns.rcode.FORMERR, edns=False), "h.zone.test", "A",
                 id="formerr-without-opt"),
    pytest.param(reply("h.zone.test", "A", rcode=dns.rcode.FORMERR), "h.zone.test", "A", id="formerr-with-opt"),
    pytest.param(TC, "t.zone.test", "TXT", id="truncated"),
    pytest.param(reply("h.zone.test", "A"), "other.zone.test", "A", id="other-question"),
]

UNSURE_CASES = [
    pytest.param(reply("h.zone.test", "A", answer=[rr("h.zone.test.", 300, "A", "192.0.2.1"),
                 rr("h.zone.test.", 300, "RRSIG", "A 8 3 300 20300101000000 20200101000000 1 zone.test. AAAA")]),
                 "h.zone.test", "A", id="dnssec-rrsig"),
    pytest.param(reply("h.zone.test", "A", answer=[rr("h.zone.test.", 300, "A", "192.0.2.1")],
                       options=[dns.edns.GenericOption(dns.edns.OptionType.NSID, b"ns1")]),
                 "h.zone.test", "A", id="edns-option"),
    pytest.param(reply("www.zone.test", "A", answer=[rr("zone.test.", 300, "DNAME", "other.test."),
                 rr("www.zone.test.", 300, "CNAME", "www.other.test."), rr("www.other.test.", 300, "A", "192.0.2.3")]),
                 "www.zone.test", "A", id="dname"),
    pytest.param(reply("h.zone.test", "A", rcode=dns.rcode.NOTIMP), "h.zone.test", "A", id="notimp"),
    pytest.param(reply("h.zone.test", "A", rcode=dns.rcode.BADVERS), "h.zone.test", "A", id="extended-rcode"),
    pytest.param(reply("1.2.0.192.in-addr.arpa", "PTR",
                       answer=[rr("1.2.0.192.in-addr.arpa.", 300, "PTR", "we\\.ird\\032name.zone.test.")]),
                 "1.2.0.192.in-addr.arpa", "PTR", id="name-needs-escapes"),
    pytest.param(reply("www.zone.test", "A", answer=[rr("www.zone.test.", 60, "CNAME", "a.zone.test."),
                 rr("www.zone.test.", 30, "CNAME", "b.zone.test."), rr("b.zone.test.", 300, "A", "192.0.2.3")]),
                 "www.zone.test", "A", id="two-cnames-one-owner"),
    pytest.param(reply("bücher.test", "A"), "bücher.test", "A", id="idna-name"),
    pytest.param(reply("h.zone.test", "SRV"), "h.zone.test", "SRV", id="rare-type"),
    pytest.param(reply("h.zone.test", "A", answer=[dns.rrset.from_text("h.zone.test.", 5, "CH", "A", "zone.test. 1")]),
                 "h.zone.test", "A", id="other-class"),
]
# fmt: on


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize(("msg", "name", "rdtype"), FAST_CASES)
def test_hot_replies_take_the_fast_path(msg, name, rdtype, compress):
    """Replies of the hot types and rcodes are judged by fastcodec itself, exactly as dnspython judges them."""
    fast, slow = both(render(msg, compress), name, rdtype)
    assert fast is not UNSURE
    assert_agree(fast, slow)


@pytest.mark.parametrize(("msg", "name", "rdtype"), UNSURE_CASES)
def test_unusual_replies_go_to_dnspython(msg, name, rdtype):
    """DNSSEC records, EDNS options, DNAME, rare rcodes, types, classes and names are left to dnspython."""
    wire = msg.to_wire()
    fast, slow = both(wire, name, rdtype)
    assert fast is UNSURE
    result = codec.parse_answer(wire, name, rdtype, QID)
    assert result is slow if not isinstance(slow, Answer) else result == slow


@pytest.mark.parametrize("payload", [0, 1, 3, 511, 512, 1232, 4096, 65535])
def test_any_opt_payload_agrees(payload):
    """The OPT record's CLASS is the sender's payload (RFC 6891 §6.1.2): any value parses like dnspython."""
    msg = reply("h.zone.test", "A", answer=[rr("h.zone.test.", 300, "A", "192.0.2.1")])
    msg.use_edns(0, 0, payload)
    fast, slow = both(msg.to_wire(), "h.zone.test", "A")
    assert fast is not UNSURE and fast == slow


def test_pointer_loops_are_dropped():
    """A name that points to itself, or forward, is not a reply: dropped without raising."""
    good = reply("h.zone.test", "A", answer=[rr("h.zone.test.", 300, "A", "192.0.2.1")]).to_wire()
    owner = good.index(b"\xc0\x0c")  # the answer's owner name points to the question
    for pointer in (owner, owner + 1, len(good) - 1):
        wire = good[:owner] + bytes([0xC0 | pointer >> 8, pointer & 0xFF]) + good[owner + 2 :]
        fast, slow = both(wire, "h.zone.test", "A")
        assert slow is None and fast in (None, UNSURE)
        assert codec.parse_answer(wire, "h.zone.test", "A", QID) is None


def test_codec_uses_the_fast_path_by_default(monkeypatch):
    """codec.build_query and codec.parse_answer do not call dnspython for a plain A exchange."""

    def refuse(*args, **kwargs):
        raise AssertionError("dnspython path used")

    monkeypatch.setattr(codec, "build_query_dnspython", refuse)
    monkeypatch.setattr(codec, "parse_answer_dnspython", refuse)
    query = codec.build_query("h.zone.test", "A", QID)
    wire = reply("h.zone.test", "A", answer=[rr("h.zone.test.", 300, "A", "192.0.2.1")]).to_wire()
    assert dns.message.from_wire(query).question[0].name == dns.name.from_text("h.zone.test")
    assert codec.parse_answer(wire, "h.zone.test", "A", QID) == Answer("ok", ("192.0.2.1",), 300)


# -- building queries -------------------------------------------------------------------------------------

query_labels = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=".\\"), min_size=1, max_size=63
)


@PROPERTY
@given(
    first=st.lists(query_labels, min_size=1, max_size=5),
    dot=st.booleans(),
    rdtype=st.sampled_from(HOT),
    qid=st.integers(0, 65535),
    edns=st.booleans(),
)
def test_build_query_matches_dnspython(first, dot, rdtype, qid, edns):
    """build_query makes dnspython's bytes: one RD question, our ID, EDNS0 with 1232 when asked; or declines."""
    name = ".".join(first) + ("." if dot else "")
    assume(name != "@")  # dnspython's name for the origin
    fast = fastcodec.build_query(name, rdtype, qid, edns=edns)
    if fast is None:  # only a name over 255 octets (RFC 1035 §2.3.4) is declined here
        with pytest.raises(dns.name.NameTooLong):
            codec.build_query(name, rdtype, qid, edns=edns)
        return
    assert fast == codec.build_query_dnspython(name, rdtype, qid, edns=edns)
    msg = dns.message.from_wire(fast)
    assert (msg.id, msg.flags, len(msg.question)) == (qid, dns.flags.RD, 1)
    q = msg.question[0]
    assert (q.name, q.rdtype, q.rdclass) == (dns.name.from_text(name), dns.rdatatype.from_text(rdtype), IN)
    assert (msg.edns, msg.payload, msg.options) == ((0, codec.EDNS_PAYLOAD, ()) if edns else (-1, 0, ()))


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("x" * 64 + ".zone.test", "A"),  # label over 63 octets (RFC 1035 §2.3.4)
        (".".join(["a" * 63] * 4), "A"),  # name over 255 octets
        ("a..zone.test", "A"),  # empty label
        (".zone.test", "A"),
        ("we\\.ird.zone.test", "A"),  # escapes
        ("bücher.test", "A"),  # IDNA
        ("@", "A"),
        ("h.zone.test", "SRV"),  # a type outside the hot set
        ("h.zone.test", "a"),  # a spelling dnspython accepts
    ],
)
def test_build_query_declines_what_it_is_unsure_of(name, rdtype):
    """Names and types fastcodec cannot encode exactly go to dnspython, which builds or raises as before."""
    assert fastcodec.build_query(name, rdtype, QID) is None
    # Fixed outcomes (not rebuilt with the code under test): the exception, or the question on the wire.
    expected = {
        "x" * 64 + ".zone.test": "LabelTooLong", ".".join(["a" * 63] * 4): "NameTooLong",
        "a..zone.test": "EmptyLabel", ".zone.test": "EmptyLabel", "we\\.ird.zone.test": ("we\\.ird.zone.test.", "A"),
        "bücher.test": ("xn--bcher-kva.test.", "A"), "@": (".", "A"),
    }.get(name, ("h.zone.test.", "SRV" if rdtype == "SRV" else "A"))
    if isinstance(expected, str):
        with pytest.raises(dns.exception.DNSException) as raised:
            codec.build_query(name, rdtype, QID)
        assert type(raised.value).__name__ == expected
        return
    msg = dns.message.from_wire(codec.build_query(name, rdtype, QID))
    (question,) = msg.question
    assert (question.name.to_text(), dns.rdatatype.to_text(question.rdtype)) == expected
    assert (msg.id, msg.edns, msg.payload, bool(msg.flags & dns.flags.RD)) == (QID, 0, codec.EDNS_PAYLOAD, True)


@pytest.mark.parametrize("name", ["", "."])
def test_root_query(name):
    """The root name is one zero octet, as dnspython writes it."""
    assert fastcodec.build_query(name, "NS", QID) == codec.build_query_dnspython(name, "NS", QID)
