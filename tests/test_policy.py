"""The check policy: each rule, weights, allowlists, error codes, deadlines, texts and key masking."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fastlookup.cache.entry import TtlPolicy
from fastlookup.cache.memory import MemoryCache
from fastlookup.checks.policy import PolicyEngine
from fastlookup.checks.tempfail import MAX_STREAK, UpstreamSeen
from fastlookup.checks.zones import ZoneRegistry
from fastlookup.config import load_config
from fastlookup.errors import BadRequest, ConfigError, InvalidArgument
from fastlookup.lookup import Lookup, run
from fastlookup.model import Answer
from fastlookup.resolver import Resolver
from fastlookup.stats import Stats
from doubles import FakeClock, FakeUpstream

IP = "192.0.2.1"
REV = "1.2.0.192"
PTR = f"{REV}.in-addr.arpa"
NX = Answer("nxdomain", (), 300)
TIMEOUT = Answer("timeout")


def ok(*records: str) -> Answer:
    return Answer("ok", records, 300)


def make_engine(policy: dict | None = None, *, clock=None, upstream_seen=None, **tables) -> PolicyEngine:
    """An engine over a config whose default policy is ``policy`` (nothing allowed by default)."""
    conf = {"allow": []}
    conf.update(policy or {})
    config = load_config(environ={}, overrides={"policy": {"default": conf}, **tables})
    zones = ZoneRegistry(config.dnsbl, config.rhsbl)
    return PolicyEngine(config, zones, Stats(), clock or FakeClock(), upstream_seen=upstream_seen)


def table_get(table: dict, asked: list | None = None):
    """A ``get`` over a dict; questions not in it are NXDOMAIN; records what was asked."""

    def get(name, rdtype):
        if asked is not None:
            asked.append((name, rdtype))
        return table.get((name, rdtype), NX)

    return get


def check(engine: PolicyEngine, table: dict, **args) -> dict:
    args.setdefault("ip", IP)
    return engine.prepare(args)(table_get(table))


def listed(zone: str, code: str = "127.0.0.2", txt: str | None = None, item: str = REV) -> dict:
    out = {(f"{item}.{zone}", "A"): ok(code)}
    if txt is not None:
        out[(f"{item}.{zone}", "TXT")] = ok(txt)
    return out


# --- validation ------------------------------------------------------------


@pytest.mark.parametrize(
    "args, error, match",
    [
        ({}, BadRequest, "missing argument 'ip'"),
        ({"ip": 3}, BadRequest, "'ip' must be a string"),
        ({"ip": "not-an-ip"}, InvalidArgument, "not an IPv4 or IPv6 address"),
        ({"ip": IP, "policy": "nope"}, InvalidArgument, "'nope' is not a configured policy"),
        ({"ip": IP, "helo": 5}, BadRequest, "'helo' must be a string"),
        ({"ip": IP, "authenticated": 1}, BadRequest, "'authenticated' must be a boolean or a string"),
        ({"ip": IP, "sender": ["a"]}, BadRequest, "'sender' must be a string"),
    ],
)
def test_bad_arguments_are_refused(args, error, match):
    """Wrong types are bad_request; a bad IP or an unknown policy is invalid_argument."""
    with pytest.raises(error, match=match):
        make_engine().prepare(args)


@pytest.mark.parametrize("helo", ["[192.0.2.1]", "my host", "a..b", "192.0.2.1", "x" * 300, ""])
def test_malformed_helo_is_not_an_error_just_not_looked_up(helo):
    """A HELO that is not a domain name is accepted as input but never queried."""
    engine = make_engine({"rhsbl": ["dbl.example"]}, rhsbl={"dbl.example": {"targets": ["helo"]}})
    asked: list = []
    verdict = engine.prepare({"ip": IP, "helo": helo})(table_get({}, asked))
    assert verdict["action"] == "accept"
    assert asked == []


def test_evaluator_carries_the_policy_deadline():
    """The evaluator's deadline_s is the policy's, so the service answers by it."""
    evaluate = make_engine({"deadline_s": 0.7}).prepare({"ip": IP})
    assert evaluate.deadline_s == 0.7


def test_unknown_zone_in_a_policy_fails_at_start():
    """A policy naming something that is not a zone fails when the engine is built."""
    config = load_config(environ={}, overrides={"policy": {"default": {"dnsbl": ["zen.spamhaus.org=bad"]}}})
    with pytest.raises(ConfigError, match=r"policy.default.dnsbl\[0\]"):
        PolicyEngine(config, ZoneRegistry(), Stats())


# --- CIDR lists ------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["10.1.2.3", "127.0.0.1", "::1", "::ffff:10.0.0.1", "2001:db8::5"])
def test_allow_cidr_accepts_without_any_lookup(ip):
    """A client in an allow network is accepted before any DNS question is asked."""
    engine = make_engine({"allow": ["10.0.0.0/8", "127.0.0.0/8", "::1/128", "2001:db8::/32"], "dnsbl": ["zen.spamhaus.org"],
                          "require_ptr": "reject"})

    def get(name, rdtype):
        raise AssertionError(f"asked {name} {rdtype}")

    verdict = engine.prepare({"ip": ip})(get)
    assert verdict["action"] == "accept"
    assert verdict["reasons"][0]["check"] == "allow"


def test_block_cidr_rejects_without_lookup_with_its_text():
    """A client in a block network is rejected with block_text and no lookup."""
    engine = make_engine({"block": ["192.0.2.0/24"], "dnsbl": ["zen.spamhaus.org"]})
    asked: list = []
    verdict = engine.prepare({"ip": IP})(table_get({}, asked))
    assert (verdict["action"], verdict["smtp_code"], verdict["text"]) == ("reject", 554, f"Access denied for {IP}")
    assert verdict["reasons"] == [{"check": "block", "zone": None, "detail": "192.0.2.0/24"}]
    assert asked == []


# --- reverse DNS -----------------------------------------------------------------

FCRDNS_OK = {(PTR, "PTR"): ok("host.example.com"), ("host.example.com", "A"): ok(IP)}
FCRDNS_FAIL = {(PTR, "PTR"): ok("host.example.com"), ("host.example.com", "A"): ok("198.51.100.9")}
NO_PTR: dict = {}
PTR_TIMEOUT = {(PTR, "PTR"): TIMEOUT}


@pytest.mark.parametrize(
    "mode, table, action, code, fail_open",
    [
        ("off", NO_PTR, "accept", None, False),
        ("reject", NO_PTR, "reject", 554, False),
        ("defer", NO_PTR, "defer", 450, False),
        ("tag", NO_PTR, "accept", None, False),
        ("reject", FCRDNS_FAIL, "accept", None, False),  # a PTR exists: that is all require_ptr asks
        ("reject", PTR_TIMEOUT, "accept", None, True),
    ],
)
def test_require_ptr(mode, table, action, code, fail_open):
    """require_ptr acts on a missing PTR and skips (fail open) when the PTR lookup fails."""
    verdict = check(make_engine({"require_ptr": mode}), table)
    assert (verdict["action"], verdict["smtp_code"], verdict["fail_open"]) == (action, code, fail_open)
    if mode == "tag":
        assert verdict.get("tag") is True and verdict["reasons"][0]["check"] == "ptr"
    if action != "accept":
        assert verdict["text"] == f"cannot find your reverse hostname, [{IP}]"  # Postfix adds "Client host rejected:"


@pytest.mark.parametrize(
    "table, action, fail_open, detail",
    [
        (FCRDNS_OK, "accept", False, None),
        (FCRDNS_FAIL, "defer", False, "PTR name does not resolve back"),
        (NO_PTR, "defer", False, "no PTR record"),
        (PTR_TIMEOUT, "accept", True, None),
    ],
)
def test_require_fcrdns(table, action, fail_open, detail):
    """require_fcrdns wants a PTR name that resolves back to the IP; lookup failures with nothing else answered fail open."""
    verdict = check(make_engine({"require_fcrdns": "defer"}), table)
    assert (verdict["action"], verdict["fail_open"]) == (action, fail_open)
    if detail:
        assert verdict["reasons"][0] == {"check": "fcrdns", "zone": None, "detail": detail}
        assert verdict["text"] == f"cannot find your hostname, [{IP}]"


# --- temporary failures: the client's DNS, or ours (tempfail) --------------------------------

SERVFAIL = Answer("servfail")
BL = (f"{REV}.bl.example", "A")
OTHER = ("other.example", "A")  # a question of another method (a, ptr, dnsbl, query...), not of the check


@pytest.mark.parametrize(
    "tempfail, check_key, mode, bl, before, age_s, action, code, detail",
    [
        # auto: upstream answered another question (in this call, or within the minute) -> 450
        ("auto", "require_ptr", "defer", NX, None, 0, "defer", 450,
         "temporary failure: servfail; upstream answers other questions: the client's DNS fails"),
        ("auto", "require_ptr", "reject", NX, None, 0, "defer", 450, None),  # a temporary failure never gives 5xx
        ("auto", "require_fcrdns", "reject", NX, None, 0, "defer", 450, None),
        ("auto", "require_ptr", "defer", SERVFAIL, "other", 59, "defer", 450, None),  # another method's answer, 59 s ago
        ("auto", "require_ptr", "defer", SERVFAIL, "other", 61, "accept", None,
         "skipped: servfail (upstream not answering: our outage, failed open)"),
        ("auto", "require_ptr", "defer", NX, "cached", 61, "accept", None, None),  # the check's answer is a memory hit
        ("auto", "require_ptr", "defer", NX, "stale", 61, "accept", None, None),  # a stale answer hides a failure
        ("auto", "require_ptr", "defer", SERVFAIL, None, 0, "accept", None, None),  # everything fails: our outage
        ("auto", "require_ptr", "defer", TIMEOUT, "outage", 10, "accept", None,  # answered 10 s ago, all failing since
         "skipped: servfail (upstream not answering: our outage, failed open)"),
        ("auto", "require_ptr", "tag", NX, None, 0, "accept", None, "skipped: servfail"),  # tag never defers
        ("defer", "require_ptr", "defer", SERVFAIL, None, 0, "defer", 450, "temporary failure: servfail; tempfail=defer"),
        ("accept", "require_ptr", "reject", NX, None, 0, "accept", None, "skipped: servfail (tempfail=accept)"),
    ],
)
def test_tempfail_tells_the_clients_dns_from_ours(tempfail, check_key, mode, bl, before, age_s, action, code, detail):
    """A failing PTR defers (450) while upstream answers other questions, fails open when it answers nothing.

    The engine and a real Resolver are wired as the service wires them: the
    resolver tells the tracker every answer upstream gives, whichever call asked.
    """
    clock = FakeClock()
    seen = UpstreamSeen(clock)
    engine = make_engine({tempfail and "tempfail": tempfail, check_key: mode, "dnsbl": ["bl.example"]}, clock=clock,
                         upstream_seen=seen)
    upstream = FakeUpstream({(PTR, "PTR"): SERVFAIL, BL: NX})
    resolver = Resolver(upstream, MemoryCache(1000, clock), TtlPolicy(), prefetch=False, fetch_budget_s=2.0, clock=clock,
                        on_upstream=seen.saw)

    async def go():
        def ask(question):
            return resolver.resolve(*question, clock() + 1.0)

        try:
            if before == "other":  # another method's question, answered age_s seconds ago
                await ask(OTHER)
            elif before in ("cached", "stale"):  # the check's dnsbl question, answered age_s seconds ago
                await ask(BL)
            elif before == "outage":  # answered age_s seconds ago, every question failing since
                await ask(OTHER)
                for i in range(MAX_STREAK):
                    upstream.set(f"q{i}.example", "A", TIMEOUT)
                    await ask((f"q{i}.example", "A"))
            clock.now += age_s
            if before == "stale":  # expired now; upstream fails it, the resolver serves it stale
                clock.now += resolver.memory.get("A:" + BL[0]).expires - clock()
                upstream.set(*BL, TIMEOUT)
            else:
                upstream.set(*BL, bl)
            evaluate = engine.prepare({"ip": IP})
            return await run(resolver, evaluate, clock() + evaluate.deadline_s)
        finally:
            await resolver.close()

    verdict = asyncio.run(go())
    assert (verdict["action"], verdict["smtp_code"]) == (action, code)
    assert verdict["fail_open"] is (action == "accept" or bl.failed)  # a list that fails is skipped either way
    if detail:
        assert detail in [r["detail"] for r in verdict["reasons"]]
    if action == "defer":
        texts = {"require_ptr": f"cannot find your reverse hostname, [{IP}]", "require_fcrdns": f"cannot find your hostname, [{IP}]"}
        assert verdict["text"] == texts[check_key]


@pytest.mark.parametrize(
    "check_key, table, action, detail",
    [
        ("require_ptr", {(PTR, "PTR"): SERVFAIL}, "defer", "temporary failure: servfail; upstream answers other questions: the client's DNS fails"),
        ("require_ptr", {(PTR, "PTR"): Answer("refused")}, "defer", None),
        ("require_ptr", {(PTR, "PTR"): TIMEOUT}, "accept", "skipped: timeout (upstream not answering it in time: failed open)"),
        ("require_ptr", {(PTR, "PTR"): Answer("error")}, "accept", None),
        ("require_fcrdns", {(PTR, "PTR"): SERVFAIL}, "defer", "temporary failure: temperror; upstream answers other questions: the client's DNS fails"),
        ("require_fcrdns", {(PTR, "PTR"): TIMEOUT}, "accept", "skipped: temperror (upstream not answering it in time: failed open)"),
        ("require_fcrdns", {(PTR, "PTR"): ok("h.example"), ("h.example", "A"): SERVFAIL}, "defer", None),  # the forward zone fails
        ("require_fcrdns", {(PTR, "PTR"): ok("h.example"), ("h.example", "A"): TIMEOUT}, "accept", None),
        ("require_fcrdns", {(PTR, "PTR"): ok("h.example", "i.example"), ("h.example", "A"): TIMEOUT,
                            ("i.example", "A"): SERVFAIL}, "defer", None),  # one replied: upstream is reachable
    ],
)
def test_tempfail_auto_defers_only_failures_upstream_replied_to(check_key, table, action, detail):
    """With upstream healthy, a SERVFAIL/REFUSED of the client's zone defers (450) but a timeout, no reply at all, fails open."""
    clock = FakeClock()
    seen = UpstreamSeen(clock)
    seen.saw("nxdomain")  # upstream answered another question just now
    verdict = check(make_engine({check_key: "defer"}, clock=clock, upstream_seen=seen), table)
    assert (verdict["action"], verdict["smtp_code"]) == (action, 450 if action == "defer" else None)
    if detail:
        assert detail in [r["detail"] for r in verdict["reasons"]]


# --- authenticated submissions -------------------------------------------------------

@pytest.mark.parametrize(
    "authenticated, setting, action, asked_any",
    [
        (True, "accept", "accept", False),
        ("alice", "accept", "accept", False),  # a SASL user name counts as authenticated
        ("", "accept", "reject", True),
        (False, "accept", "reject", True),
        (True, "check", "reject", True),
    ],
)
def test_authenticated_submissions_skip_lookups(authenticated, setting, action, asked_any):
    """An authenticated call is accepted without any lookup unless the policy says authenticated = "check"."""
    engine = make_engine({"dnsbl": ["bl.example"], "authenticated": setting})
    asked: list = []
    verdict = engine.prepare({"ip": IP, "authenticated": authenticated})(table_get(listed("bl.example"), asked))
    assert verdict["action"] == action
    assert bool(asked) is asked_any
    if not asked_any:
        assert verdict["reasons"] == [{"check": "authenticated", "zone": None, "detail": "no lookups"}]


def test_block_network_wins_over_authentication():
    """A client in a block network is rejected even when authenticated: the block is the admin's explicit word."""
    verdict = make_engine({"block": ["192.0.2.0/24"]}).prepare({"ip": IP, "authenticated": True})(table_get({}))
    assert (verdict["action"], verdict["reasons"][0]["check"]) == ("reject", "block")


# --- sender domain -----------------------------------------------------------------

D = "sender.example"


@pytest.mark.parametrize(
    "table, sender, action, fail_open",
    [
        ({(D, "MX"): ok("10 mx.sender.example")}, f"a@{D}", "accept", False),
        ({(D, "MX"): ok("0 .")}, f"a@{D}", "reject", False),  # RFC 7505 null MX: takes no mail
        ({(D, "MX"): ok("0 .", "10 mx.sender.example")}, f"a@{D}", "accept", False),
        ({}, f"<a@{D}>", "reject", False),  # NXDOMAIN
        ({(D, "MX"): Answer("nodata", (), 300), (D, "A"): ok("192.0.2.9")}, f"a@{D}", "accept", False),
        ({(D, "MX"): Answer("nodata", (), 300), (D, "AAAA"): ok("2001:db8::9")}, f"a@{D}", "accept", False),
        ({(D, "MX"): Answer("nodata", (), 300), (D, "A"): Answer("nodata", (), 300)}, f"a@{D}", "reject", False),
        ({(D, "MX"): TIMEOUT}, f"a@{D}", "accept", True),
        ({(D, "MX"): Answer("nodata", (), 300), (D, "A"): Answer("servfail")}, f"a@{D}", "accept", True),
        ({}, "<>", "accept", False),  # the null sender (bounces) has no domain to check
        ({}, "a@[192.0.2.7]", "accept", False),  # an address literal is not looked up
    ],
)
def test_sender_domain_exists(table, sender, action, fail_open):
    """The sender's domain needs an MX host or an address; a null MX does not count."""
    verdict = check(make_engine({"sender_domain_exists": "reject", "reject_code": 550}), table, sender=sender)
    assert (verdict["action"], verdict["fail_open"]) == (action, fail_open)
    if action == "reject":
        assert verdict["smtp_code"] == 550
        assert verdict["text"] == "Domain not found"  # Postfix adds "Sender address rejected:"
        assert verdict["reasons"][0]["check"] == "sender_domain"


# --- DNSBL, templates, weights --------------------------------------------------------


@pytest.mark.parametrize(
    "zone_conf, policy, txt, text",
    [
        ({}, {}, "see https://example.net/q?192.0.2.1",
         "Service unavailable; Client host [192.0.2.1] blocked using bl.example; see https://example.net/q?192.0.2.1"),
        ({}, {}, None, "Service unavailable; Client host [192.0.2.1] blocked using bl.example"),
        ({"message": "See https://bl.example/$ip"}, {}, None,
         "Service unavailable; Client host [192.0.2.1] blocked using bl.example; See https://bl.example/192.0.2.1"),
        ({"message": "See https://bl.example/$ip"}, {}, "the list's own", 
         "Service unavailable; Client host [192.0.2.1] blocked using bl.example; the list's own"),
        ({"reply_name": "Example BL"}, {}, None, "Service unavailable; Client host [192.0.2.1] blocked using Example BL"),
        ({}, {"reject_text": "$rbl_class [$rbl_what] on $rbl_domain${rbl_reason?: $rbl_reason}${txt:, no reason}"}, None,
         "Client host [192.0.2.1] on bl.example, no reason"),
        ({}, {"reject_text": "Blocked: $ip on $zone ($code): $txt"}, "spam source",
         "Blocked: 192.0.2.1 on bl.example (127.0.0.2): spam source"),
        ({}, {"reject_text": "Blocked: $ip on $zone: $txt"}, None, "Blocked: 192.0.2.1 on bl.example"),
        ({"message": "Go away $ip ($zone said: $txt) helo=$helo from=$sender $unknown"}, {}, "bad",
         "Go away 192.0.2.1 (bl.example said: bad) helo=mx.example from=a@b.example $unknown"),
        ({"message": "$txt"}, {}, None, "Service unavailable; Client host [192.0.2.1] blocked using bl.example"),  # never empty
    ],
)
def test_listing_texts_are_templated(zone_conf, policy, txt, text):
    """Listing texts are Postfix's default_rbl_reply with the TXT, else the zone's message; templates and conditionals."""
    engine = make_engine({"dnsbl": ["bl.example"], **policy}, dnsbl={"bl.example": zone_conf})
    verdict = check(engine, listed("bl.example", txt=txt), helo="mx.example", sender="<a@b.example>")
    assert (verdict["action"], verdict["smtp_code"], verdict["text"]) == ("reject", 554, text)
    assert "No error text available" not in verdict["text"]


@pytest.mark.parametrize(
    "targets, args, domain, text",
    [
        (["helo"], {"helo": "x.badhelo.example"}, "x.badhelo.example",
         "Service unavailable; Helo command [x.badhelo.example] blocked using dbl.example; Domain listed"),
        (["sender"], {"sender": "<bob@spammer.example>"}, "spammer.example",
         "Service unavailable; Sender address [bob@spammer.example] blocked using dbl.example; Domain listed"),
        (["sender"], {"sender": "someone@test"}, "test",  # RFC 5782's single-label RHSBL test point
         "Service unavailable; Sender address [someone@test] blocked using dbl.example; Domain listed"),
        (["recipient"], {"recipient": "<u@spammer.example>"}, "spammer.example",
         "Service unavailable; Recipient address [u@spammer.example] blocked using dbl.example; Domain listed"),
        (["helo"], {"helo": "localhost"}, "localhost",
         "Service unavailable; Helo command [localhost] blocked using dbl.example; Domain listed"),
    ],
)
def test_rhsbl_texts_name_what_was_listed(targets, args, domain, text):
    """An RHSBL hit's text names the HELO/sender/recipient that was listed, as Postfix does, never the IP."""
    engine = make_engine({"rhsbl": ["dbl.example"]}, rhsbl={"dbl.example": {"targets": targets}})
    verdict = check(engine, listed("dbl.example", "127.0.1.2", "Domain listed", item=domain), **args)
    assert (verdict["action"], verdict["text"]) == ("reject", text)


def test_rhsbl_client_names_the_client_host():
    """A listed client host name (FCrDNS-verified) is named as Postfix's reject_rhsbl_client does."""
    engine = make_engine({"rhsbl": ["dbl.example"]}, rhsbl={"dbl.example": {"targets": ["client"]}})
    table = {(PTR, "PTR"): ok("mx.spammer.example"), ("mx.spammer.example", "A"): ok(IP),
             **listed("dbl.example", "127.0.1.2", "see it", item="mx.spammer.example")}
    verdict = check(engine, table)
    assert verdict["text"] == "Service unavailable; Client host [mx.spammer.example] blocked using dbl.example; see it"


@pytest.mark.parametrize(
    "zone_conf, shown",
    [({}, "zen.spamhaus.org"), ({"reply_name": "Spamhaus ZEN"}, "Spamhaus ZEN")],
)
def test_dqs_zone_shows_its_public_name(zone_conf, shown):
    """A DQS zone's key never reaches a reply: texts show the public zone, or reply_name."""
    zone = "k3yk3yk3y.zen.dq.spamhaus.net"
    engine = make_engine({"dnsbl": [zone]}, dnsbl={zone: zone_conf})
    verdict = check(engine, listed(zone, txt="https://check.spamhaus.org/"))
    assert verdict["text"] == f"Service unavailable; Client host [{IP}] blocked using {shown}; https://check.spamhaus.org/"


def test_ignored_zone_is_logged_and_counted_but_never_decides(caplog):
    """A zone with action = "ignore" is asked; its hit is a reason, counted and logged, and the client accepted."""
    engine = make_engine({"dnsbl": ["new.example", "bl.example"], "rhsbl": ["dbl.example"]},
                         dnsbl={"new.example": {"action": "ignore"}},
                         rhsbl={"dbl.example": {"action": "ignore", "targets": ["helo"]}})
    caplog.set_level(logging.INFO, logger="fastlookup.verdict")
    verdict = check(engine, {**listed("new.example"), **listed("dbl.example", item="h.example")}, helo="h.example")
    assert (verdict["action"], verdict["score"]) == ("accept", 0.0)
    assert [(r["check"], r["zone"]) for r in verdict["reasons"]] == [("ignored", "new.example"), ("ignored", "dbl.example")]
    assert engine.stats.counters["ignored_hits"] == {("new.example",): 1, ("dbl.example",): 1}
    assert "ignored:new.example" in caplog.text
    verdict = check(engine, {**listed("new.example"), **listed("bl.example")})
    assert verdict["reasons"][0]["check"] == "dnsbl" and verdict["action"] == "reject"  # the enforced list decides


def test_outside_values_are_sanitised_in_texts():
    """TXT, HELO and sender values become one printable ASCII line; TXT is cut to 200 characters."""
    engine = make_engine({"dnsbl": ["bl.example"], "reject_text": "$txt|$helo|$sender"})
    txt = "evil\r\n250 ok\x00é" + "x" * 300
    verdict = check(engine, listed("bl.example", txt=txt), helo="a\r\nb", sender="c\nd@e")
    text = verdict["text"]
    assert "\r" not in text and "\n" not in text and all(32 <= ord(c) < 127 for c in text)
    txt_part, helo_part, sender_part = text.split("|")
    assert txt_part.startswith("evil 250 ok??") and len(txt_part) == 200
    assert (helo_part, sender_part) == ("a b", "c d@e")


@pytest.mark.parametrize(
    "on_listed, action, code, tag",
    [("reject", "reject", 554, False), ("defer", "defer", 450, False), ("tag", "accept", None, True)],
)
def test_listing_action(on_listed, action, code, tag):
    """on_listed picks reject (5xx), defer (4xx) or tag (accept with reasons)."""
    verdict = check(make_engine({"dnsbl": ["bl.example"], "on_listed": on_listed}), listed("bl.example", txt="x"))
    assert (verdict["action"], verdict["smtp_code"], bool(verdict.get("tag"))) == (action, code, tag)
    assert verdict["reasons"][0] == {"check": "dnsbl", "zone": "bl.example", "detail": "127.0.0.2"}


W = {"a.example": {"weight": 0.6}, "b.example": {"weight": 0.6}, "ok.example": {"weight": 1.0}}


@pytest.mark.parametrize(
    "hits, action, score",
    [
        (["a.example"], "accept", 0.6),
        (["a.example", "b.example"], "reject", 1.2),
        (["a.example", "b.example", "ok.example"], "accept", 0.2),  # the allowlist cancels
        (["ok.example"], "accept", -1.0),
        ([], "accept", 0.0),
    ],
)
def test_weights_sum_against_threshold_and_allowlists_cancel(hits, action, score):
    """Blocklist weights add up to the threshold; an allowlist zone's weight counts negative."""
    engine = make_engine({"dnsbl": ["a.example", "b.example"], "allow_zones": ["ok.example"], "threshold": 1.0}, dnsbl=W)
    table: dict = {}
    for zone in hits:
        table.update(listed(zone))
    verdict = check(engine, table)
    assert (verdict["action"], verdict["score"]) == (action, score)
    checks = {(r["check"], r["zone"]) for r in verdict["reasons"]}
    assert checks == {("allow" if z == "ok.example" else "dnsbl", z) for z in hits}


def test_zero_threshold_never_rejects_without_a_hit():
    """A threshold of 0 still needs a blocklist hit to act."""
    verdict = check(make_engine({"dnsbl": ["bl.example"], "threshold": 0.0}), {})
    assert verdict["action"] == "accept"


def test_builtin_dnswl_profile_is_an_allowlist():
    """list.dnswl.org needs no config: its hits weigh -2 and cancel a listing."""
    engine = make_engine({"dnsbl": ["zen.spamhaus.org"], "allow_zones": ["list.dnswl.org"]})
    table = {**listed("zen.spamhaus.org"), **listed("list.dnswl.org", "127.0.10.1")}
    verdict = check(engine, table)
    assert (verdict["action"], verdict["score"]) == ("accept", -1.0)


@pytest.mark.parametrize(
    "code, action",
    [("127.0.0.2", "reject"), ("127.0.0.12", "accept"), ("127.0.0.99", "accept")],
)
def test_reply_code_filters(code, action):
    """Only codes inside a zone's filter list (Postfix pattern form works too)."""
    engine = make_engine({"dnsbl": ["bl.example=127.0.0.[2..11]"]})
    assert check(engine, listed("bl.example", code))["action"] == action


# --- error codes, failures, logging once ------------------------------------------------


@pytest.mark.parametrize(
    "answer, status",
    [
        (ok("127.255.255.254"), "list_error"),  # Spamhaus: query via a public resolver
        (ok("127.255.255.255"), "list_error"),
        (ok("10.0.0.1"), "list_error"),  # not 127/8: not a listing (RFC 5782 §2.3)
        (TIMEOUT, "timeout"),
        (Answer("servfail"), "servfail"),
    ],
)
def test_list_errors_and_failures_are_skipped_never_rejecting(answer, status):
    """A list's error code or a failed lookup is skipped: accept, fail_open, a reason saying why."""
    engine = make_engine({"dnsbl": ["zen.spamhaus.org"]})
    verdict = check(engine, {(f"{REV}.zen.spamhaus.org", "A"): answer})
    assert (verdict["action"], verdict["fail_open"]) == ("accept", True)
    assert verdict["reasons"] == [{"check": "dnsbl", "zone": "zen.spamhaus.org", "detail": f"skipped: {status}"}]
    assert engine.stats.counters["fail_open"][(status,)] == 1


def test_disabled_zone_is_skipped_without_a_question():
    """A zone taken out of use by health probes is not asked and fails open."""
    engine = make_engine({"dnsbl": ["zen.spamhaus.org"]})
    engine.zones.disabled.add("zen.spamhaus.org")
    asked: list = []
    verdict = engine.prepare({"ip": IP})(table_get({}, asked))
    assert (verdict["action"], verdict["fail_open"], asked) == ("accept", True, [])


def test_list_errors_are_logged_once_per_interval(caplog):
    """Error codes of a zone log one warning per interval, not one per call."""
    clock = FakeClock()
    engine = make_engine({"dnsbl": ["zen.spamhaus.org"]}, clock=clock)
    table = {(f"{REV}.zen.spamhaus.org", "A"): ok("127.255.255.254")}
    caplog.set_level(logging.WARNING, logger="fastlookup.policy")
    for _ in range(5):
        check(engine, table)
    clock.now += 299
    check(engine, table)
    assert len(caplog.records) == 1
    clock.now += 2
    check(engine, table)
    assert len(caplog.records) == 2
    assert "zen.spamhaus.org" in caplog.records[0].getMessage()


# --- RHSBL targets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "targets, args, table, queried",
    [
        (["sender"], {"sender": "a@Spam.Example"}, {}, "spam.example"),
        (["recipient"], {"recipient": "<b@spam.example>"}, {}, "spam.example"),
        (["helo"], {"helo": "spam.example."}, {}, "spam.example"),
        (["client"], {}, {(PTR, "PTR"): ok("spam.example"), ("spam.example", "A"): ok(IP)}, "spam.example"),
        (["client"], {}, {(PTR, "PTR"): ok("spam.example"), ("spam.example", "A"): ok("198.51.100.1")}, None),
        (["helo"], {"sender": "a@spam.example"}, {}, None),  # the zone does not target the sender
    ],
)
def test_rhsbl_targets(targets, args, table, queried):
    """RHSBL zones check the names they target; the client name only when FCrDNS-verified."""
    engine = make_engine({"rhsbl": ["dbl.example"]}, rhsbl={"dbl.example": {"targets": targets}})
    table = {**table, **listed("dbl.example", "127.0.1.2", "bad domain", item="spam.example")}
    asked: list = []
    verdict = engine.prepare({"ip": IP, **args})(table_get(table, asked))
    rhsbl_questions = [q for q in asked if q[0].endswith(".dbl.example") and q[1] == "A"]
    if queried:
        assert rhsbl_questions == [(f"{queried}.dbl.example", "A")]
        assert verdict["action"] == "reject"
        assert verdict["reasons"][0]["check"] == "rhsbl"
        assert verdict["reasons"][0]["detail"] == f"127.0.1.2 {targets[0]}={queried}"
    else:
        assert rhsbl_questions == [] and verdict["action"] == "accept"


def test_one_rhsbl_zone_counts_once_over_several_targets():
    """A domain that is both HELO and sender is asked once and weighs once."""
    engine = make_engine({"rhsbl": ["dbl.example"], "threshold": 2.0}, rhsbl={"dbl.example": {"targets": ["helo", "sender"]}})
    table = listed("dbl.example", "127.0.1.2", item="spam.example")
    asked: list = []
    verdict = engine.prepare({"ip": IP, "helo": "spam.example", "sender": "x@spam.example"})(table_get(table, asked))
    assert asked.count(("spam.example.dbl.example", "A")) == 1
    assert (verdict["action"], verdict["score"]) == ("accept", 1.0)
    assert verdict["reasons"][0]["detail"] == "127.0.1.2 helo,sender=spam.example"


# --- the most severe outcome wins ----------------------------------------------------------


def test_most_severe_outcome_wins_and_leads_the_reasons():
    """reject beats defer beats tag; the deciding reason is reasons[0] and gives the text."""
    engine = make_engine({"require_ptr": "defer", "sender_domain_exists": "tag", "dnsbl": ["bl.example"]})
    verdict = check(engine, listed("bl.example"), sender=f"a@{D}")
    assert [r["check"] for r in verdict["reasons"]] == ["dnsbl", "ptr", "sender_domain"]
    assert (verdict["action"], verdict["text"]) == ("reject", f"Service unavailable; Client host [{IP}] blocked using bl.example")
    verdict = check(make_engine({"require_ptr": "defer", "sender_domain_exists": "tag"}), {}, sender=f"a@{D}")
    assert (verdict["action"], verdict["reasons"][0]["check"]) == ("defer", "ptr")


# --- access keys ----------------------------------------------------------------------------


def test_access_key_never_shown_in_text_reasons_or_log(caplog):
    """A DQS key in a zone name is masked in the reply text, the reasons and the log line."""
    key = "s3cr3tk3yabcdef"
    zone = f"{key}.zen.dq.spamhaus.net"
    engine = make_engine({"dnsbl": [zone], "reject_text": "$ip on $zone: $txt"})
    caplog.set_level(logging.INFO, logger="fastlookup.verdict")
    verdict = check(engine, listed(zone, txt="https://check.spamhaus.org/"))
    assert verdict["text"] == f"{IP} on zen.spamhaus.org: https://check.spamhaus.org/"  # the public zone
    assert key not in repr(verdict) and key not in caplog.text
    assert "***.zen.dq.spamhaus.net" in caplog.text


# --- passes, deadlines, logging ----------------------------------------------------------------


def test_first_pass_asks_every_independent_question_and_returns_none():
    """While answers are missing the evaluator returns None, having asked all it could."""
    engine = make_engine({"require_ptr": "reject", "sender_domain_exists": "reject", "dnsbl": ["a.example", "b.example"],
                          "allow_zones": ["ok.example"], "rhsbl": ["dbl.example"]},
                         rhsbl={"dbl.example": {"targets": ["sender", "helo"]}})
    asked: list = []

    def get(name, rdtype):
        asked.append((name, rdtype))
        return None

    assert engine.prepare({"ip": IP, "helo": "h.example", "sender": f"a@{D}"})(get) is None
    assert set(asked) == {
        (PTR, "PTR"), (D, "MX"), (f"{REV}.a.example", "A"), (f"{REV}.b.example", "A"), (f"{REV}.ok.example", "A"),
        (f"{D}.dbl.example", "A"), ("h.example.dbl.example", "A"),
    }


def test_elapsed_ms_is_measured_from_prepare():
    """elapsed_ms counts from prepare to the final pass, on the injected clock."""
    clock = FakeClock()
    engine = make_engine(clock=clock)
    evaluate = engine.prepare({"ip": IP})
    clock.now += 0.25
    assert evaluate(table_get({}))["elapsed_ms"] == 250.0


def test_one_log_line_per_non_accept_verdict_on_the_final_pass_only(caplog):
    """A reject logs one greppable line; passes with missing answers and accepts log nothing."""
    engine = make_engine({"dnsbl": ["bl.example"]})
    caplog.set_level(logging.INFO, logger="fastlookup.verdict")
    evaluate = engine.prepare({"ip": IP, "helo": "mx.example"})

    class Pass:
        def __init__(self, table, missing):
            self.table, self.missing = table, missing

        def __call__(self, name, rdtype):
            if self.missing:
                return None
            return self.table.get((name, rdtype), NX)

    assert evaluate(Pass({}, ["x"])) is None
    assert caplog.records == []
    evaluate(Pass(listed("bl.example"), []))
    check(engine, {})  # an accept: no line
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith(f"verdict action=reject code=554 ip={IP} name=- helo=mx.example "
                               "reasons=dnsbl:bl.example:127.0.0.2 elapsed_ms=")
    assert lines[0].endswith("policy=default score=1.0 fail_open=false")
    assert engine.stats.counters["verdicts"] == {("reject",): 1, ("accept",): 1}


def run_check(engine: PolicyEngine, upstream: FakeUpstream, args: dict) -> dict:
    resolver = Resolver(upstream, MemoryCache(1000), TtlPolicy(), prefetch=False, fetch_budget_s=2.0)
    evaluate = engine.prepare(args)

    async def go():
        try:
            return await run(resolver, evaluate, resolver.clock() + evaluate.deadline_s)
        finally:
            await resolver.close()

    return asyncio.run(go())


def test_through_the_resolver_all_zones_are_asked_concurrently():
    """Through the real resolver a check's questions go out together and the verdict is final."""
    upstream = FakeUpstream({(f"{REV}.a.example", "A"): ok("127.0.0.2"), (f"{REV}.a.example", "TXT"): ok("listed")},
                            hold=True)
    engine = make_engine({"dnsbl": ["a.example", "b.example", "c.example"], "reject_text": "$txt"})
    resolver = Resolver(upstream, MemoryCache(1000), TtlPolicy(), prefetch=False, fetch_budget_s=2.0)
    evaluate = engine.prepare({"ip": IP})

    async def go():
        try:
            task = asyncio.ensure_future(run(resolver, evaluate, resolver.clock() + evaluate.deadline_s))
            for _ in range(200):  # let the check send what it sends while every answer is held
                if len(upstream.queries) >= 3 or task.done():
                    break
                await asyncio.sleep(0)
            sent_while_held = list(upstream.queries)
            upstream.release()
            return sent_while_held, await task
        finally:
            await resolver.close()

    sent_while_held, verdict = asyncio.run(go())
    # All three zones were asked before any answer came back: concurrently, not one at a time.
    assert sent_while_held == [(f"{REV}.{z}.example", "A") for z in "abc"]
    assert (verdict["action"], verdict["text"]) == ("reject", "listed")


def test_deadline_passes_and_the_check_fails_open():
    """Answers missing at the policy's deadline are skipped: accept with fail_open."""
    upstream = FakeUpstream({(f"{REV}.a.example", "A"): ok("127.0.0.2")}, delay=0.5)
    engine = make_engine({"dnsbl": ["a.example"], "deadline_s": 0.05, "require_ptr": "reject"})
    verdict = run_check(engine, upstream, {"ip": IP})
    assert (verdict["action"], verdict["fail_open"]) == ("accept", True)
    assert {r["detail"] for r in verdict["reasons"]} == {
        "skipped: timeout", "skipped: timeout (upstream not answering it in time: failed open)"}


def test_lookup_driver_get_is_used_as_is():
    """The engine works with fastlookup.lookup's Lookup (memory peek, miss list)."""
    resolver = Resolver(FakeUpstream(), MemoryCache(100), TtlPolicy(), prefetch=False)
    lookup = Lookup(resolver)
    assert make_engine({"dnsbl": ["a.example"]}).prepare({"ip": IP})(lookup) is None
    assert lookup.missing == [(f"{REV}.a.example", "A")]
