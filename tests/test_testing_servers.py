"""The shipped testing helpers start real servers that behave as documented."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from fixtures_servers import RBL_ZONES, SPAMHAUS_PUBLIC_RESOLVER, dns_zone, start_or_skip

import fastlookup.testing as testing
from fastlookup.testing import (
    DnsServer,
    DnsServerProcess,
    Rbldnsd,
    RedisCluster,
    RedisServer,
    ServerNotFound,
    ServerStartError,
    Zone,
    _proc,
    free_port,
    query_count,
    reset_count,
    rfc5782_ip4set,
)
from fastlookup.testing.ports import port_is_free
from fastlookup.testing.redis import redis_command

TIMEOUT_S = 2.0


def ask(address: tuple[str, int], name: str, rdtype: str = "A", *, tcp: bool = False, **kw: object):
    """One query over UDP (or TCP) with dnspython's sync API."""
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, address[0], port=address[1], timeout=TIMEOUT_S)


def texts(response: dns.message.Message) -> list[str]:
    """The answer records as "name ttl class type rdata" lines."""
    return [line for rrset in response.answer for line in rrset.to_text().splitlines()]


def raw_udp(address: tuple[str, int], query: dns.message.Message) -> socket.socket:
    """Send ``query`` from a fresh UDP socket and return it, to read every datagram that comes back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT_S)
    sock.sendto(query.to_wire(), address)
    return sock


def nibbles(address: str) -> str:
    """The RFC 5782 section 2.4 nibble form of an IPv6 address, without a zone."""
    return ".".join(reversed(ipaddress.IPv6Address(address).exploded.replace(":", "")))


# -- package and ports ------------------------------------------------------------


def test_public_api():
    """fastlookup.testing exports exactly its documented helpers, each importable from its lazy table."""
    assert sorted(testing.__all__) == sorted(
        ["DnsServer", "DnsServerProcess", "Faults", "Rbldnsd", "RedisCluster", "RedisServer", "ServerNotFound",
         "ServerStartError", "Soa", "Zone", "everything_ip4set", "everything_ip6trie", "free_port", "query_count",
         "reset_count", "rfc5782_dnset", "rfc5782_ip4set", "rfc5782_ip6trie", "soa_line"]
    )
    assert sorted(testing._EXPORTS) == sorted(testing.__all__)
    assert all(getattr(testing, name) is not None for name in testing.__all__)


def test_free_port_is_bindable_for_udp_and_tcp():
    """free_port returns a loopback port that both a UDP and a TCP socket can bind."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", port))
        t.bind(("127.0.0.1", port))


def test_missing_binary_names_the_install_script(monkeypatch):
    """A missing server binary raises ServerNotFound telling the user to run the install script."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(_proc.shutil, "which", lambda *a, **k: None)
    with pytest.raises(ServerNotFound, match=r"rbldnsd not found: run scripts/install-system.sh"):
        Rbldnsd({"bl.test": ("ip4set", "127.0.0.2\n")}).start()


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), (None, pytest.skip.Exception)])
def test_missing_binary_fails_under_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    """The fixtures skip when a server binary is missing, but fail when CI=true."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)

    def start() -> None:
        raise ServerNotFound("rbldnsd not found: run scripts/install-system.sh")

    with pytest.raises(outcome, match="install-system.sh"):
        start_or_skip(start, "rbldnsd fixture")


# -- DnsServer: data --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("host.example.test", "A", ["host.example.test. 300 IN A 192.0.2.1"]),
        ("host.example.test", "AAAA", ["host.example.test. 300 IN AAAA 2001:db8::1"]),
        ("1.2.0.192.in-addr.arpa", "PTR", ["1.2.0.192.in-addr.arpa. 300 IN PTR host.example.test."]),
        ("example.test", "TXT", ['example.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"']),
        ("example.test", "MX", ["example.test. 300 IN MX 10 mx.example.test."]),
        ("example.test", "NS", ["example.test. 300 IN NS ns.example.test."]),
        ("nullmx.example.test", "MX", ["nullmx.example.test. 300 IN MX 0 ."]),
        ("short.example.test", "A", ["short.example.test. 5 IN A 192.0.2.7"]),
        ("www.example.test", "A", ["www.example.test. 300 IN CNAME host.example.test.",
                                   "host.example.test. 300 IN A 192.0.2.1"]),
        ("example.test", "SOA", ["example.test. 3600 IN SOA ns.example.test. hostmaster.example.test. "
                                 "1 3600 600 86400 60"]),
    ],
)
def test_answers_from_the_records(dns_server, name, rdtype, expected):
    """Every supported type is answered authoritatively from the records, CNAMEs followed."""
    response = ask(dns_server.address, name, rdtype)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert texts(response) == expected


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "soa_owner", "soa_ttl", "minimum"),
    [
        ("nope.example.test", "A", dns.rcode.NXDOMAIN, "example.test.", 3600, 60),
        ("host.example.test", "MX", dns.rcode.NOERROR, "example.test.", 3600, 60),
        ("2.0.192.in-addr.arpa", "PTR", dns.rcode.NOERROR, "2.0.192.in-addr.arpa.", 3600, 120),
        ("9.2.0.192.in-addr.arpa", "PTR", dns.rcode.NXDOMAIN, "2.0.192.in-addr.arpa.", 3600, 120),
        ("elsewhere.invalid", "A", dns.rcode.NXDOMAIN, ".", 300, 300),
    ],
)
def test_negative_answers_carry_the_soa(dns_server, name, rdtype, rcode, soa_owner, soa_ttl, minimum):
    """NXDOMAIN and NODATA (also for an empty non-terminal) carry the closest SOA with its TTL and MINIMUM as set."""
    response = ask(dns_server.address, name, rdtype)
    assert response.rcode() == rcode and response.answer == []
    (soa,) = response.authority
    assert (soa.name.to_text(), soa.rdtype, soa.ttl, soa[0].minimum) == (soa_owner, dns.rdatatype.SOA, soa_ttl, minimum)


def test_set_soa_changes_negative_ttls_at_runtime(dns_server):
    """set_soa changes the SOA TTL and MINIMUM that later negative answers carry."""
    dns_server.set_soa("example.test", ttl=10, minimum=900)
    soa = ask(dns_server.address, "nope.example.test").authority[0]
    assert (soa.ttl, soa[0].minimum) == (10, 900)


def test_long_txt_is_split_and_truncated_over_plain_udp(dns_server):
    """A TXT over 512 bytes is split into 255-byte strings: TC=1 over UDP without EDNS, whole over TCP."""
    udp = ask(dns_server.address, "long.example.test", "TXT")
    assert udp.flags & dns.flags.TC and udp.answer == []
    tcp = ask(dns_server.address, "long.example.test", "TXT", tcp=True)
    strings = tcp.answer[0][0].strings
    assert [len(s) for s in strings] == [255, 255, 133]
    edns = ask(dns_server.address, "long.example.test", "TXT", use_edns=0, payload=1232)
    assert not edns.flags & dns.flags.TC and edns.answer[0][0].strings == strings


def test_records_can_be_added_and_removed_at_runtime(dns_server):
    """add() serves new records at once (with their own TTL) and remove() takes them away again."""
    assert ask(dns_server.address, "new.example.test").rcode() == dns.rcode.NXDOMAIN
    dns_server.add("new.example.test", "A", ["192.0.2.200", "192.0.2.201"], ttl=42)
    assert sorted(texts(ask(dns_server.address, "new.example.test"))) == [
        "new.example.test. 42 IN A 192.0.2.200", "new.example.test. 42 IN A 192.0.2.201"]
    dns_server.remove("new.example.test", "A", ["192.0.2.200"])
    assert texts(ask(dns_server.address, "new.example.test")) == ["new.example.test. 42 IN A 192.0.2.201"]
    dns_server.remove("new.example.test")
    assert ask(dns_server.address, "new.example.test").rcode() == dns.rcode.NXDOMAIN


def test_zone_json_round_trip():
    """Zone.to_json and Zone.from_json keep every RRset, TTL and SOA."""
    zone = dns_zone()
    again = Zone.from_json(zone.to_json())
    assert sorted(map(str, again.rrsets())) == sorted(map(str, zone.rrsets()))


def test_only_loopback_hosts_are_accepted():
    """A non-loopback host is refused before anything binds."""
    with pytest.raises(ValueError, match="not loopback"):
        DnsServer(hosts=("0.0.0.0",))


# -- DnsServer: faults ------------------------------------------------------------


@pytest.mark.parametrize(("fault", "rcode"), [("servfail", dns.rcode.SERVFAIL), ("refused", dns.rcode.REFUSED)])
def test_rcode_faults(dns_server, fault, rcode):
    """The servfail and refused faults answer with that rcode and no records."""
    dns_server.set_faults(**{fault: True})
    response = ask(dns_server.address, "host.example.test")
    assert response.rcode() == rcode and response.answer == []


def test_drop_never_answers_but_counts(dns_server):
    """A dropped query gets no answer at all, and is still counted."""
    dns_server.set_faults(drop=True)
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(dns.message.make_query("host.example.test", "A"), "127.0.0.1", port=dns_server.port,
                      timeout=0.2)
    assert dns_server.count("host.example.test", "A") == 1


def test_name_rule_wins_over_the_global_rule(dns_server):
    """A per-name rule replaces the global rule for that name; clear_faults(name) restores the global one."""
    dns_server.set_faults(servfail=True)
    dns_server.set_faults("host.example.test", refused=True)
    assert ask(dns_server.address, "host.example.test").rcode() == dns.rcode.REFUSED
    assert ask(dns_server.address, "mx.example.test").rcode() == dns.rcode.SERVFAIL
    dns_server.clear_faults("host.example.test")
    assert ask(dns_server.address, "host.example.test").rcode() == dns.rcode.SERVFAIL
    dns_server.clear_faults()
    assert ask(dns_server.address, "host.example.test").rcode() == dns.rcode.NOERROR


def test_delay_does_not_hold_up_other_queries(dns_server):
    """A delayed answer comes after delay_s while other queries are answered at once."""
    dns_server.set_faults("host.example.test", delay_s=2.0)
    started = time.monotonic()
    slow = raw_udp(dns_server.address, dns.message.make_query("host.example.test", "A"))
    with slow:
        slow.settimeout(10)
        fast = ask(dns_server.address, "mx.example.test")
        assert fast.rcode() == dns.rcode.NOERROR and time.monotonic() - started < 1.5  # generous, before the slow one
        answer = dns.message.from_wire(slow.recv(65535))
    assert time.monotonic() - started >= 2.0
    assert texts(answer) == ["host.example.test. 300 IN A 192.0.2.1"]


def test_truncate_sets_tc_over_udp_and_answers_over_tcp(dns_server):
    """The truncate fault sends TC=1 without records over UDP; TCP gets the full answer."""
    dns_server.set_faults(truncate=True)
    udp = ask(dns_server.address, "host.example.test")
    assert udp.flags & dns.flags.TC and udp.answer == [] and udp.question[0].name.to_text() == "host.example.test."
    tcp = ask(dns_server.address, "host.example.test", tcp=True)
    assert not tcp.flags & dns.flags.TC and texts(tcp) == ["host.example.test. 300 IN A 192.0.2.1"]


@pytest.mark.parametrize("fault", ["wrong_id", "wrong_question"])
def test_mismatched_reply_comes_first_then_the_real_one(dns_server, fault):
    """wrong_id / wrong_question send a mismatching reply over UDP, then the matching one."""
    dns_server.set_faults(**{fault: True})
    query = dns.message.make_query("host.example.test", "A")
    with raw_udp(dns_server.address, query) as sock:
        first = dns.message.from_wire(sock.recv(65535), question_only=True)
        second = dns.message.from_wire(sock.recv(65535))
    if fault == "wrong_id":
        assert first.id != query.id and first.question == query.question
    else:
        assert first.id == query.id and first.question != query.question
    assert query.is_response(second) and texts(second) == ["host.example.test. 300 IN A 192.0.2.1"]


@pytest.mark.parametrize("name", ["host.example.test", "nothing-here.example.test"])
def test_garbage_reply_has_our_id_and_question_but_does_not_parse(dns_server, name):
    """garbage answers with the query's ID and question and an answer record cut off inside its data."""
    dns_server.set_faults(garbage=True)
    query = dns.message.make_query(name, "A")
    with raw_udp(dns_server.address, query) as sock:
        wire = sock.recv(65535)
    head = dns.message.from_wire(wire, question_only=True)
    assert head.id == query.id and head.question == query.question and head.flags & dns.flags.QR
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(wire)
    assert dns_server.count(name, "A") == 1


def test_mismatched_reply_is_skipped_by_a_careful_client(dns_server):
    """dnspython with ignore_errors skips the wrong-ID reply and returns the real answer."""
    dns_server.set_faults(wrong_id=True)
    query = dns.message.make_query("host.example.test", "A")
    response = dns.query.udp(query, "127.0.0.1", port=dns_server.port, timeout=TIMEOUT_S, ignore_errors=True)
    assert texts(response) == ["host.example.test. 300 IN A 192.0.2.1"]


def test_faults_apply_to_a_query_answered_before(dns_server):
    """A fault set after a query was answered applies to the same query asked again (no stale reply)."""
    assert ask(dns_server.address, "host.example.test").rcode() == dns.rcode.NOERROR
    dns_server.set_faults(servfail=True)
    assert ask(dns_server.address, "host.example.test").rcode() == dns.rcode.SERVFAIL
    dns_server.set_faults(truncate=True)
    assert ask(dns_server.address, "host.example.test").flags & dns.flags.TC
    dns_server.clear_faults()
    assert texts(ask(dns_server.address, "host.example.test")) == ["host.example.test. 300 IN A 192.0.2.1"]
    assert dns_server.count() == 4


def test_fail_n_servfails_n_queries_then_answers(dns_server):
    """fail_n=2 gives SERVFAIL to the next two queries and answers the third."""
    dns_server.set_faults("host.example.test", fail_n=2)
    rcodes = [ask(dns_server.address, "host.example.test").rcode() for _ in range(3)]
    assert rcodes == [dns.rcode.SERVFAIL, dns.rcode.SERVFAIL, dns.rcode.NOERROR]
    assert ask(dns_server.address, "mx.example.test").rcode() == dns.rcode.NOERROR


# -- DnsServer: counters, control queries, load -----------------------------------


def test_counts_by_name_and_type(dns_server):
    """count() totals queries, per name, per type and per (name, type); reset_counts() zeroes them."""
    for name, rdtype in [("host.example.test", "A"), ("host.example.test", "A"), ("HOST.example.test.", "AAAA"),
                         ("mx.example.test", "A")]:
        ask(dns_server.address, name, rdtype)
    assert dns_server.count() == 4
    assert dns_server.count("host.example.test") == 3
    assert dns_server.count("host.example.test", "A") == 2
    assert dns_server.count(rdtype="A") == 3
    dns_server.reset_counts()
    assert dns_server.count() == 0


def test_control_queries_read_and_reset_the_total_uncounted(dns_server):
    """CH TXT queries.fastlookup. returns the total without being counted; reset.fastlookup. zeroes it."""
    ask(dns_server.address, "host.example.test", tcp=True)
    ask(dns_server.address, "nope.example.test")
    assert query_count(dns_server.address) == 2
    assert query_count(dns_server.address) == 2
    reset_count(dns_server.address)
    assert query_count(dns_server.address) == 0 and dns_server.count() == 0


def test_control_queries_ignore_faults(dns_server):
    """A global drop rule does not stop the control queries from answering."""
    dns_server.set_faults(drop=True)
    assert query_count(dns_server.address) == 0


def test_500_queries_arriving_together_are_all_answered(dns_server):
    """500 UDP queries sent back to back all get their answer."""
    queries = [dns.message.make_query(f"q{i}.example.test", "A") for i in range(500)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.settimeout(TIMEOUT_S)
        for query in queries:
            sock.sendto(query.to_wire(), dns_server.address)
        ids = {dns.message.from_wire(sock.recv(65535)).id for _ in queries}
    assert ids == {q.id for q in queries}
    assert dns_server.count() == 500


def test_many_tcp_clients_at_once(dns_server):
    """Fifty TCP connections opened together each get their answer."""
    socks = [socket.create_connection(dns_server.address, timeout=TIMEOUT_S) for _ in range(50)]
    try:
        for sock in socks:
            dns.query.send_tcp(sock, dns.message.make_query("host.example.test", "A"))
        answers = [dns.query.receive_tcp(sock)[0] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(texts(a) == ["host.example.test. 300 IN A 192.0.2.1"] for a in answers)


def test_start_is_quick_and_stop_frees_the_port():
    """start() returns within seconds after a real answer; stop() closes the sockets so the port is free."""
    started = time.monotonic()
    with DnsServer({("a.test", "A"): ["192.0.2.1"]}) as srv:
        assert time.monotonic() - started < 5.0  # generous
        port = srv.port
        assert texts(ask(srv.address, "a.test")) == ["a.test. 300 IN A 192.0.2.1"]
    assert port_is_free(port, "udp+tcp")


def test_serves_ipv6_loopback_too():
    """With hosts 127.0.0.1 and ::1 the server answers on both, on the same port."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with DnsServer({("a.test", "A"): ["192.0.2.1"]}, hosts=("127.0.0.1", "::1")) as srv:
        assert srv.addresses == [("127.0.0.1", srv.port), ("::1", srv.port)]
        assert texts(ask(("::1", srv.port), "a.test")) == ["a.test. 300 IN A 192.0.2.1"]


# -- DnsServer: process form ------------------------------------------------------


def test_process_form_prints_ready_and_exits_when_stdin_closes(tmp_path):
    """`python -m fastlookup.testing.dnsserver` prints READY <port> once it answers, and exits on stdin EOF."""
    records = tmp_path / "zone.json"
    records.write_text('{"records": {"a.test": {"A": ["192.0.2.1"]}}}')
    args = [sys.executable, "-m", "fastlookup.testing.dnsserver", "--port", "0", "--records", str(records),
            "--exit-on-stdin-eof"]
    env = {**os.environ, "PYTHONPATH": str(Path(testing.__file__).resolve().parents[2])}
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        words = proc.stdout.readline().split()  # bounded by the pytest timeout if the child hangs
        assert words[0] == "READY" and int(words[1]) > 0
        assert texts(ask(("127.0.0.1", int(words[1])), "a.test")) == ["a.test. 300 IN A 192.0.2.1"]
        proc.stdin.close()
        assert proc.wait(5) == 0
    finally:
        _proc.stop_process(proc)


def test_process_controller_counts_delays_and_stops():
    """DnsServerProcess serves in a child with --delay-ms; counts come over control queries; stop ends the pid."""
    with DnsServerProcess({("a.test", "A"): ["192.0.2.1"]}, delay_s=0.05) as srv:
        started = time.monotonic()
        assert texts(ask(srv.address, "a.test")) == ["a.test. 300 IN A 192.0.2.1"]
        assert time.monotonic() - started >= 0.05
        ask(srv.address, "b.test", tcp=True)
        assert srv.count() == 2
        srv.reset_counts()
        assert srv.count() == 0
        pid = srv.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- rbldnsd ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("2.0.0.127.bl.test", "A", ["127.0.0.2"]),
        ("2.0.0.127.bl.test", "TXT", ['"RFC 5782 test entry"']),
        ("1.0.0.127.bl.test", "A", None),
        ("99.2.0.192.bl.test", "TXT", ['"Listed: see https://bl.test/192.0.2.99"']),
        ("7.100.51.198.bl.test", "A", ["127.0.0.4"]),
        (nibbles("::ffff:7f00:2") + ".bl.test", "A", ["127.0.0.2"]),
        (nibbles("::ffff:7f00:2") + ".bl.test", "TXT", ['"RFC 5782 test entry"']),
        (nibbles("::ffff:7f00:1") + ".bl.test", "A", None),
        (nibbles("2001:db8:bad::25") + ".bl.test", "A", ["127.0.0.2"]),
        ("test.dbl.test", "A", ["127.0.0.2"]),
        ("TEST.dbl.test", "TXT", ['"RFC 5782 test entry"']),
        ("invalid.dbl.test", "A", None),
        ("spam.example.dbl.test", "TXT", ['"Spam domain"']),
        ("a.spammy.example.dbl.test", "A", ["127.0.0.3"]),
        ("spammy.example.dbl.test", "A", None),
        ("1.0.0.127.listall.test", "A", ["127.0.0.2"]),
        (nibbles("2001:db8::1") + ".listall.test", "A", ["127.0.0.2"]),
        ("2.0.0.127.errorcode.test", "A", [SPAMHAUS_PUBLIC_RESOLVER]),
    ],
)
def test_rbldnsd_answers_rfc5782_test_points(rbldnsd, name, rdtype, expected):
    """rbldnsd's ip4set, ip6trie and dnset zones list the RFC 5782 test points and our entries, and nothing else."""
    response = ask(rbldnsd.address, name, rdtype)
    if expected is None:
        assert response.rcode() == dns.rcode.NXDOMAIN and response.answer == []
    else:
        assert response.rcode() == dns.rcode.NOERROR
        assert [rd.to_text() for rrset in response.answer for rd in rrset] == expected
        assert response.answer[0].ttl == 60


def test_rbldnsd_negative_answer_carries_min_of_soa_ttl_and_minimum(rbldnsd):
    """rbldnsd's NXDOMAIN carries the $SOA, with TTL min(ttl, minimum) as RFC 2308 section 3 says."""
    soa = ask(rbldnsd.address, "1.0.0.127.bl.test").authority[0]
    assert (soa.name.to_text(), soa.ttl, soa[0].minimum) == ("bl.test.", 30, 30)


def test_rbldnsd_serves_every_zone_of_the_fixture(rbldnsd):
    """The session fixture serves exactly the documented zones."""
    assert rbldnsd.zones == list(RBL_ZONES)


def test_rbldnsd_reload_serves_new_data():
    """reload() rewrites the data and returns once rbldnsd serves it, also when the layout changes."""
    with Rbldnsd({"r.test": ("ip4set", rfc5782_ip4set())}) as rbl:
        assert ask(rbl.address, "9.2.0.192.r.test").rcode() == dns.rcode.NXDOMAIN
        rbl.reload({"r.test": ("ip4set", rfc5782_ip4set({"192.0.2.9": (3, "now listed")}))})
        assert [rd.to_text() for rd in ask(rbl.address, "9.2.0.192.r.test").answer[0]] == ["127.0.0.3"]
        pid = rbl.pid
        rbl.reload({"r.test": ("ip4set", rfc5782_ip4set()), "d.test": ("dnset", "spam.example\n")})
        assert rbl.pid != pid
        assert ask(rbl.address, "spam.example.d.test").rcode() == dns.rcode.NOERROR


def test_rbldnsd_strict_rejects_bad_data_lines():
    """A data line rbldnsd only warns about (0.0.0.0/0 in an ip4set) fails the start under strict=True."""
    rbl = Rbldnsd({"bad.test": ("ip4set", "0.0.0.0/0\n")})
    try:
        with pytest.raises(ServerStartError, match=r"invalid address"):
            rbl.start()
    finally:
        rbl.stop()


# -- redis ------------------------------------------------------------------------


def test_redis_starts_as_our_process(redis_server):
    """redis_server answers PING, reports our child's pid, and its URL names the port."""
    assert redis_server.command("PING") == "PONG"
    assert f"process_id:{redis_server.pid}\r\n" in redis_server.command("INFO", "server")
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_redis_kill_then_restart_on_the_same_port(redis_server):
    """kill() SIGKILLs redis so the port refuses connections; restart() serves again on the same port."""
    port = redis_server.port
    redis_server.command("SET", "k", "v")
    redis_server.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    redis_server.restart()
    assert redis_server.port == port and redis_server.command("GET", "k") is None


def test_redis_pause_hangs_and_resume_answers(redis_server):
    """While paused redis accepts no replies (a hung server); after resume it answers again."""
    redis_server.pause()
    with pytest.raises(OSError):  # socket.timeout is an OSError
        redis_command(redis_server.port, "PING", timeout_s=0.2)
    redis_server.resume()
    assert redis_server.command("PING") == "PONG"


def test_redis_password_and_unix_socket():
    """A password goes into the URL and is required; unixsocket=True also listens on a socket file."""
    with RedisServer(password="s3cret", unixsocket=True) as rs:
        assert rs.url == f"redis://:s3cret@127.0.0.1:{rs.port}/0"
        assert rs.unix_socket is not None and os.path.exists(rs.unix_socket)
        with pytest.raises(RuntimeError, match="NOAUTH"):
            redis_command(rs.port, "PING", timeout_s=TIMEOUT_S)
        assert rs.command("PING") == "PONG"


def test_redis_refuses_a_port_someone_else_listens_on():
    """An explicit port that another process listens on fails the start instead of using that server."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        redis = RedisServer(port=other.getsockname()[1])
        try:
            with pytest.raises(ServerStartError, match="did not start"):
                redis.start()
        finally:
            redis.stop()


@pytest.mark.slow
def test_redis_cluster_reaches_state_ok():
    """RedisCluster(3) starts three nodes, creates the cluster and waits for cluster_state:ok on each."""
    with RedisCluster(3) as cluster:
        assert len(cluster.startup_nodes) == 3
        assert cluster.url == f"redis://127.0.0.1:{cluster.startup_nodes[0][1]}/0"
        for node in cluster.nodes:
            assert "cluster_state:ok" in node.command("CLUSTER", "INFO")
        pids = [node.pid for node in cluster.nodes]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
