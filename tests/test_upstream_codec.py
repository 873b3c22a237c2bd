"""The upstream codec: queries it builds and how it judges replies built by dnspython."""

from __future__ import annotations

import ipaddress

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastlookup.model import Answer
from fastlookup.upstream import codec

QID = 0x1234


def rr(name: str, ttl: int, rdtype: str, *rdatas: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(name, ttl, "IN", rdtype, *rdatas)


def reply(
    qname: str,
    rdtype: str,
    *,
    qid: int = QID,
    rcode: int = dns.rcode.NOERROR,
    answer=(),
    authority=(),
    edns: bool = True,
) -> dns.message.Message:
    """A response, built by dnspython, to a query for qname/rdtype."""
    query = dns.message.make_query(qname, rdtype, use_edns=0 if edns else False)
    query.id = qid
    resp = dns.message.make_response(query)
    resp.set_rcode(rcode)
    resp.answer.extend(answer)
    resp.authority.extend(authority)
    return resp


def parse(msg: dns.message.Message, name: str, rdtype: str, qid: int = QID):
    return codec.parse_answer(msg.to_wire(), name, rdtype, qid)


SOA = "ns.zone.test. hostmaster.zone.test. 2024010101 3600 600 86400 {minimum}"


def soa(owner: str, ttl: int, minimum: int) -> dns.rrset.RRset:
    return rr(owner, ttl, "SOA", SOA.format(minimum=minimum))


def answered(name: str, ttl: int, rdtype: str, *rdatas: str) -> dns.message.Message:
    """A NOERROR reply whose answer section is one RRset at the question's name."""
    return reply(name, rdtype, answer=[rr(name + ".", ttl, rdtype, *rdatas)])


def case(case_id: str, msg: dns.message.Message, expected, asked: tuple[str, str] | None = None):
    """One table row: the reply, what parse_answer should make of it, and the question asked.

    ``asked`` defaults to the reply's own question; a different one tests the question check.
    """
    if asked is None:
        q = msg.question[0]
        asked = (q.name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(q.rdtype))
    return pytest.param(msg, *asked, expected, id=case_id)


A2 = rr("h.zone.test.", 300, "A", "192.0.2.1", "192.0.2.2")
CHAIN = [
    rr("www.zone.test.", 600, "CNAME", "Mid.Zone.Test."),
    rr("mid.zone.test.", 100, "CNAME", "end.zone.test."),
    rr("end.zone.test.", 300, "A", "198.51.100.7"),
]
LOOP = [rr("a.zone.test.", 60, "CNAME", "b.zone.test."), rr("b.zone.test.", 60, "CNAME", "a.zone.test.")]
NX = dns.rcode.NXDOMAIN
BL = "2.0.0.127.bl.test"
TXT_SPLIT = '"Listed, see " "https://bl.test/q?127.0.0.2"'
SOA_TEXT = "ns.zone.test hostmaster.zone.test 2024010101 3600 600 86400 60"

# fmt: off
CASES = [
    case("a-ok", reply("h.zone.test", "A", answer=[A2]), Answer("ok", ("192.0.2.1", "192.0.2.2"), 300)),
    case("nxdomain-soa-minimum-lower", reply(BL, "A", rcode=NX, authority=[soa("bl.test.", 900, 60)]),
         Answer("nxdomain", (), 60)),
    case("nxdomain-soa-ttl-lower", reply(BL, "A", rcode=NX, authority=[soa("bl.test.", 30, 3600)]),
         Answer("nxdomain", (), 30)),
    case("nodata-soa", reply("h.zone.test", "AAAA", authority=[soa("zone.test.", 120, 600)]),
         Answer("nodata", (), 120)),
    case("nodata-no-soa-ttl-0", reply("h.zone.test", "AAAA"), Answer("nodata", (), 0)),
    case("nxdomain-soa-of-unrelated-zone-ignored",
         reply("h.zone.test", "A", rcode=NX, authority=[soa("other.test.", 50, 50)]), Answer("nxdomain", (), 0)),
    case("cname-chain-min-ttl", reply("www.zone.test", "A", answer=CHAIN), Answer("ok", ("198.51.100.7",), 100)),
    case("cname-to-nothing-is-nodata",
         reply("www.zone.test", "A", answer=[rr("www.zone.test.", 40, "CNAME", "gone.zone.test.")],
               authority=[soa("zone.test.", 300, 300)]),
         Answer("nodata", (), 40)),
    case("cname-to-nxdomain-uses-target-zone-soa",
         reply("www.zone.test", "A", rcode=NX, answer=[rr("www.zone.test.", 500, "CNAME", "gone.other.test.")],
               authority=[soa("other.test.", 300, 200)]),
         Answer("nxdomain", (), 200)),
    case("cname-query-returns-target", answered("www.zone.test", 77, "CNAME", "Target.Zone.Test."),
         Answer("ok", ("target.zone.test",), 77)),
    case("cname-loop-is-error", reply("a.zone.test", "A", answer=LOOP), Answer("error")),
    case("txt-strings-joined", answered(BL, 10, "TXT", TXT_SPLIT),
         Answer("ok", ("Listed, see https://bl.test/q?127.0.0.2",), 10)),
    case("txt-bad-utf8-replaced", answered("t.zone.test", 10, "TXT", '"caf\\233 \\255"'),
         Answer("ok", ("caf\ufffd \ufffd",), 10)),
    case("mx-null", answered("zone.test", 3600, "MX", "0 ."), Answer("ok", ("0 .",), 3600)),
    case("mx-lowercase-no-dot", answered("zone.test", 3600, "MX", "10 MX1.Zone.Test."),
         Answer("ok", ("10 mx1.zone.test",), 3600)),
    case("aaaa-compressed", answered("h.zone.test", 300, "AAAA", "2001:DB8:0:0:0:0:0:1"),
         Answer("ok", ("2001:db8::1",), 300)),
    case("ptr", answered("1.2.0.192.in-addr.arpa", 86400, "PTR", "Mail.Zone.Test."),
         Answer("ok", ("mail.zone.test",), 86400)),
    case("ns", answered("zone.test", 100, "NS", "ns1.zone.test.", "ns2.zone.test."),
         Answer("ok", ("ns1.zone.test", "ns2.zone.test"), 100)),
    case("soa-text", reply("zone.test", "SOA", answer=[soa("zone.test.", 100, 60)]), Answer("ok", (SOA_TEXT,), 100)),
    case("servfail", reply("h.zone.test", "A", rcode=dns.rcode.SERVFAIL), Answer("servfail")),
    case("refused", reply("h.zone.test", "A", rcode=dns.rcode.REFUSED), Answer("refused")),
    case("notimp-is-error", reply("h.zone.test", "A", rcode=dns.rcode.NOTIMP), Answer("error")),
    case("formerr-with-opt-is-error", reply("h.zone.test", "A", rcode=dns.rcode.FORMERR, edns=True), Answer("error")),
    case("formerr-without-opt-asks-again-without-edns", reply("h.zone.test", "A", rcode=dns.rcode.FORMERR, edns=False),
         codec.NO_EDNS),
    case("question-name-case-insensitive", answered("H.ZONE.TEST", 5, "A", "192.0.2.9"),
         Answer("ok", ("192.0.2.9",), 5)),
    case("wrong-id-dropped", reply("h.zone.test", "A", qid=QID + 1, answer=[A2]), None),
    case("wrong-name-dropped", reply("x.zone.test", "A"), None, asked=("h.zone.test", "A")),
    case("wrong-type-dropped", reply("h.zone.test", "TXT"), None, asked=("h.zone.test", "A")),
]
# fmt: on


@pytest.mark.parametrize(("msg", "name", "rdtype", "expected"), CASES)
def test_parse_answer_table(msg, name, rdtype, expected):
    """Each reply is classified into the expected status, records (in any order) and TTL, or dropped (None)."""
    assert unordered(parse(msg, name, rdtype)) == unordered(expected)


def unordered(result):
    """dnspython shuffles an RRset's records on the wire (RFC 1034 §3.6 allows any order); compare sorted."""
    if isinstance(result, Answer):
        return result._replace(records=tuple(sorted(result.records)))
    return result


def test_wrong_class_dropped():
    """A reply whose question is in another class than IN is not our answer."""
    query = dns.message.make_query("h.zone.test", "A", rdclass="CH")
    query.id = QID
    resp = dns.message.make_response(query)
    assert codec.parse_answer(resp.to_wire(), "h.zone.test", "A", QID) is None


def test_not_a_response_dropped():
    """A message without the QR bit (a query, e.g. reflected) is never taken as an answer."""
    wire = codec.build_query("h.zone.test", "A", QID)
    assert codec.parse_answer(wire, "h.zone.test", "A", QID) is None


@pytest.mark.parametrize("wire", [b"", b"\x12\x34", b"\x12\x34\x81\x80" + b"\xff" * 30, bytes(range(256))])
def test_garbage_dropped(wire):
    """Bytes that are not a well-formed DNS message are dropped, not raised."""
    assert codec.parse_answer(wire, "h.zone.test", "A", QID) is None


def test_servfail_without_question_accepted():
    """An error reply that omits the question (as some servers do) still counts, like dnspython's is_response."""
    msg = reply("h.zone.test", "A", rcode=dns.rcode.SERVFAIL)
    msg.question = []
    assert parse(msg, "h.zone.test", "A") == Answer("servfail")


def test_noerror_without_question_dropped():
    """A NOERROR reply without our question is not our answer."""
    msg = reply("h.zone.test", "A", answer=[rr("h.zone.test.", 5, "A", "192.0.2.9")])
    msg.question = []
    assert parse(msg, "h.zone.test", "A") is None


def test_truncated_reply_asks_for_tcp():
    """A reply with TC set and our question means: ask again over TCP."""
    msg = reply("t.zone.test", "TXT")
    msg.flags |= dns.flags.TC
    assert parse(msg, "t.zone.test", "TXT") is codec.TRUNCATED


def test_truncated_cut_mid_record_asks_for_tcp():
    """A truncated reply cut in the middle of a record is still recognised as truncated."""
    msg = reply("t.zone.test", "TXT", answer=[rr("t.zone.test.", 5, "TXT", '"' + "x" * 200 + '"')])
    msg.flags |= dns.flags.TC
    wire = msg.to_wire()[:-50]
    assert codec.parse_answer(wire, "t.zone.test", "TXT", QID) is codec.TRUNCATED


def test_truncated_wrong_question_dropped():
    """A truncated reply for another question is dropped, not a reason to use TCP."""
    msg = reply("x.zone.test", "TXT")
    msg.flags |= dns.flags.TC
    assert parse(msg, "t.zone.test", "TXT") is None


@pytest.mark.parametrize("edns", [True, False])
def test_build_query(edns):
    """build_query makes one RD query for the name, type and ID, with EDNS0 payload 1232 when asked."""
    msg = dns.message.from_wire(codec.build_query("2.0.0.127.bl.test", "TXT", 4321, edns=edns))
    assert msg.id == 4321
    assert msg.flags & dns.flags.RD and not msg.flags & dns.flags.QR
    assert len(msg.question) == 1
    q = msg.question[0]
    assert (q.name, q.rdtype, q.rdclass) == (
        dns.name.from_text("2.0.0.127.bl.test"),
        dns.rdatatype.TXT,
        dns.rdataclass.IN,
    )
    if edns:
        assert (msg.edns, msg.payload) == (0, codec.EDNS_PAYLOAD)
    else:
        assert msg.edns < 0


# Property tests: the codec agrees with dnspython's own parsing of the same bytes.

ttls = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=200, deadline=None)
@given(addrs=st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=8, unique=True), ttl=ttls)
def test_aaaa_matches_ipaddress(addrs, ttl):
    """AAAA records come back as the ipaddress module's compressed text, with the RRset TTL."""
    texts = [str(ipaddress.IPv6Address(a)) for a in addrs]
    msg = reply("h.zone.test", "AAAA", answer=[rr("h.zone.test.", ttl, "AAAA", *texts)])
    got = parse(msg, "h.zone.test", "AAAA")
    assert got.status == "ok" and got.ttl == ttl
    assert sorted(got.records) == sorted(texts)


@settings(max_examples=200, deadline=None)
@given(
    txts=st.lists(st.lists(st.binary(max_size=255), min_size=1, max_size=4), min_size=1, max_size=4),
    ttl=ttls,
)
def test_txt_matches_dnspython(txts, ttl):
    """Each TXT record is its character-strings joined and decoded as dnspython parses them."""
    msg = reply("t.zone.test", "TXT")
    rrset = dns.rrset.RRset(dns.name.from_text("t.zone.test."), dns.rdataclass.IN, dns.rdatatype.TXT)
    for strings in txts:
        rrset.add(
            dns.rdata.from_wire(
                dns.rdataclass.IN,
                dns.rdatatype.TXT,
                b"".join(bytes([len(s)]) + s for s in strings),
                0,
                sum(1 + len(s) for s in strings),
            ),
            ttl,
        )
    msg.answer.append(rrset)
    wire = msg.to_wire()
    got = codec.parse_answer(wire, "t.zone.test", "TXT", QID)
    theirs = dns.message.from_wire(wire).answer[0]
    assert got.status == "ok" and got.ttl == theirs.ttl
    assert sorted(got.records) == sorted(b"".join(rd.strings).decode("utf-8", "replace") for rd in theirs)


@settings(max_examples=200, deadline=None)
@given(soa_ttl=ttls, minimum=st.integers(min_value=0, max_value=2**32 - 1), nx=st.booleans(), depth=st.integers(0, 3))
def test_negative_ttl_is_min_of_soa_ttl_and_minimum(soa_ttl, minimum, nx, depth):
    """A negative answer's TTL is min(SOA TTL, SOA MINIMUM) of an SOA at or above the name (RFC 2308 §5)."""
    name = "a." * depth + "zone.test"
    msg = reply(
        name,
        "A",
        rcode=dns.rcode.NXDOMAIN if nx else dns.rcode.NOERROR,
        authority=[soa("zone.test.", soa_ttl, minimum)],
    )
    got = parse(msg, name, "A")
    assert got == Answer("nxdomain" if nx else "nodata", (), min(soa_ttl, minimum))


@settings(max_examples=200, deadline=None)
@given(chain_ttls=st.lists(ttls, min_size=0, max_size=5), answer_ttl=ttls)
def test_cname_chain_ttl_is_minimum(chain_ttls, answer_ttl):
    """Following a CNAME chain yields the final A records and the smallest TTL of all RRsets used."""
    names = [f"n{i}.zone.test." for i in range(len(chain_ttls) + 1)]
    answer = [rr(names[i], t, "CNAME", names[i + 1]) for i, t in enumerate(chain_ttls)]
    answer.append(rr(names[-1], answer_ttl, "A", "192.0.2.55"))
    msg = reply("n0.zone.test", "A", answer=answer)
    assert parse(msg, "n0.zone.test", "A") == Answer("ok", ("192.0.2.55",), min([*chain_ttls, answer_ttl]))


@pytest.mark.parametrize("junk", [b"\x00", b"junk after the message", b"\xc0\x0c" * 50])
@pytest.mark.parametrize("parser", ["fast", "dnspython"])
def test_junk_after_a_valid_message_is_dropped(junk, parser):
    """A reply with bytes after its last record is not an answer (dropped, as dnspython's resolver does), on both parsers."""
    from fastlookup.upstream import fastcodec

    wire = answered("a.zone.test", 300, "A", "192.0.2.1").to_wire()
    assert codec.parse_answer(wire, "a.zone.test", "A", QID) == Answer("ok", ("192.0.2.1",), 300)
    bad = wire + junk
    if parser == "fast":
        assert fastcodec.parse_answer(bad, "a.zone.test", "A", QID) is fastcodec.UNSURE
        assert codec.parse_answer(bad, "a.zone.test", "A", QID) is None
    else:
        assert codec.parse_answer_dnspython(bad, "a.zone.test", "A", QID) is None


def test_truncated_reply_with_more_bytes_still_asks_for_tcp():
    """A truncated reply is read for its question only: what follows it is not junk."""
    msg = reply("t.zone.test", "TXT", answer=[rr("t.zone.test.", 5, "TXT", '"' + "x" * 200 + '"')])
    msg.flags |= dns.flags.TC
    assert codec.parse_answer(msg.to_wire() + b"\x00\x01", "t.zone.test", "TXT", QID) is codec.TRUNCATED
