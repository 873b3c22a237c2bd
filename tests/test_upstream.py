"""fastlookup.upstream: servers, resolv.conf, and UpstreamPool against the real test DNS server."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
import uvloop

from fastlookup import upstream
from fastlookup.model import Answer
from fastlookup.stats import Stats
from fastlookup.testing import DnsServer, Soa
from fastlookup.upstream import Server, Upstream, UpstreamPool, servers_from_resolv_conf
from fastlookup.upstream.memory import MemoryUpstream

LOOPS = ["asyncio", "uvloop"]

RECORDS = {
    ("host.example.test", "A"): {"values": ["192.0.2.1", "192.0.2.2"], "ttl": 300},
    ("www.example.test", "CNAME"): {"values": ["host.example.test"], "ttl": 60},
    ("host.example.test", "MX"): ["10 mx.example.test"],
    ("2.0.0.127.bl.test", "A"): ["127.0.0.2"],
    ("2.0.0.127.bl.test", "TXT"): ["Listed, see https://bl.test/127.0.0.2"],
    ("big.example.test", "TXT"): ["x" * 2000],  # > 1232 bytes: truncated even with EDNS0
}
SOAS = [Soa("example.test", ttl=3600, minimum=60), Soa("bl.test", ttl=30, minimum=900)]


def run(coro, loop: str = "asyncio"):
    """Drive one coroutine on a fresh event loop of the named kind (no pytest-asyncio here)."""
    return uvloop.run(coro) if loop == "uvloop" else asyncio.run(coro)


def server_of(srv: DnsServer) -> Server:
    host, port = srv.address
    return Server(host, port)


def _zone_server():
    with DnsServer(RECORDS, soa=SOAS) as srv:
        yield srv
        assert srv.errors == [], "the test DNS server raised while answering"


@pytest.fixture
def zone_server():
    """A threaded test DNS server with this module's zone (the shared ``dns_server`` has another)."""
    yield from _zone_server()


@pytest.fixture
def zone_server2():
    """A second, independent test DNS server with the same zone, for rotation tests."""
    yield from _zone_server()


def closed_udp_port() -> int:
    """A loopback UDP port nobody listens on (the kernel answers ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def ask(pool: UpstreamPool, name: str, rdtype: str, within_s: float = 2.0) -> Answer:
    return await pool.query(name, rdtype, time.monotonic() + within_s)


# -- public API, Server, resolv.conf ------------------------------------------------


def test_public_api():
    """The package exports exactly the names the resolver uses."""
    assert sorted(upstream.__all__) == ["Server", "Upstream", "UpstreamPool", "servers_from_resolv_conf"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", Server("10.0.0.1", 53)),
        ("127.0.0.1:5353", Server("127.0.0.1", 5353)),
        (" 127.0.0.1:53 ", Server("127.0.0.1", 53)),
        ("::1", Server("::1", 53)),
        ("[::1]:53", Server("::1", 53)),
        ("[2001:DB8:0::1]:5300", Server("2001:db8::1", 5300)),
        ("[::1]", Server("::1", 53)),
    ],
)
def test_server_parse(text, expected):
    """Server.parse reads IPv4 and IPv6 addresses with optional ports into the compressed form."""
    assert Server.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no address"),
        ("dns.example.com", "not an IP address"),
        ("dns.example.com:53", "not an IP address"),
        ("127.0.0.1:0", "not in 1..65535"),
        ("127.0.0.1:70000", "not in 1..65535"),
        ("127.0.0.1:", "not in 1..65535"),
        ("127.0.0.1:dns", "not in 1..65535"),
        ("[::1", "unbalanced brackets"),
        ("[::1]:x", "not in 1..65535"),
        ("[10.0.0.1]:53", "brackets are for IPv6"),
        ("300.1.1.1", "not an IP address"),
    ],
)
def test_server_parse_rejects(text, message):
    """Server.parse rejects names, bad ports and bad brackets with a message naming the value and the fix."""
    with pytest.raises(ValueError, match=message) as info:
        Server.parse(text)
    assert repr(text) in str(info.value) and "[::1]:53" in str(info.value)


def test_server_label():
    """A server's label is host:port, with IPv6 hosts in brackets."""
    assert Server("10.0.0.1").label == "10.0.0.1:53"
    assert str(Server("::1", 5353)) == "[::1]:5353"


def test_resolv_conf(tmp_path):
    """resolv.conf nameserver lines become servers on port 53, in order, skipping junk and duplicates."""
    path = tmp_path / "resolv.conf"
    path.write_text(
        "# comment\nsearch example.test\nnameserver 192.0.2.53\n; nameserver 192.0.2.99\n"
        "nameserver   2001:db8::53\nnameserver not-an-ip\nnameserver\nnameserver 192.0.2.53\n"
        "options ndots:2\n"
    )
    assert servers_from_resolv_conf(str(path)) == [Server("192.0.2.53"), Server("2001:db8::53")]


@pytest.mark.parametrize("content", [None, "", "search example.test\n"])
def test_resolv_conf_default(tmp_path, content):
    """A missing resolv.conf, or one without nameserver lines, means 127.0.0.1:53 as in glibc."""
    path = tmp_path / "resolv.conf"
    if content is not None:
        path.write_text(content)
    assert servers_from_resolv_conf(str(path)) == [Server("127.0.0.1", 53)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"servers": []}, "at least one server"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"attempts": 0}, "attempts"),
        ({"max_in_flight": 0}, "max_in_flight"),
    ],
)
def test_pool_rejects_bad_arguments(kwargs, message):
    """UpstreamPool refuses an empty server list and out-of-range bounds at construction."""
    kwargs = {"servers": [Server("127.0.0.1")], **kwargs}
    with pytest.raises(ValueError, match=message):
        UpstreamPool(kwargs.pop("servers"), **kwargs)


# -- answers ----------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_ok_answer_follows_cname_with_min_ttl(zone_server, loop):
    """An answer through a CNAME gives the final records and the smallest TTL of the chain."""

    async def main():
        stats = Stats()
        pool = UpstreamPool([server_of(zone_server)], stats=stats)
        direct = await ask(pool, "host.example.test", "A")
        via_cname = await ask(pool, "www.example.test", "A")
        await pool.close()
        return direct, via_cname, stats

    direct, via_cname, stats = run(main(), loop)
    assert (direct.status, sorted(direct.records), direct.ttl) == ("ok", ["192.0.2.1", "192.0.2.2"], 300)
    assert (via_cname.status, sorted(via_cname.records), via_cname.ttl) == ("ok", ["192.0.2.1", "192.0.2.2"], 60)
    assert direct.source == "upstream"
    label = (server_of(zone_server).label,)
    assert stats.counters["upstream_queries"][label] == 2
    assert stats.histograms["upstream_latency_seconds"][label].count == 2
    assert stats.labels["upstream_errors"] == ("server", "status")


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("nothere.example.test", "A", Answer("nxdomain", (), 60)),  # SOA TTL 3600, MINIMUM 60
        ("host.example.test", "AAAA", Answer("nodata", (), 60)),
        ("3.0.0.127.bl.test", "A", Answer("nxdomain", (), 30)),  # SOA TTL 30, MINIMUM 900
        ("2.0.0.127.bl.test", "AAAA", Answer("nodata", (), 30)),
        ("2.0.0.127.bl.test", "TXT", Answer("ok", ("Listed, see https://bl.test/127.0.0.2",), 300)),
        ("host.example.test", "MX", Answer("ok", ("10 mx.example.test",), 300)),
    ],
)
def test_answers_and_negative_ttls(zone_server, name, rdtype, expected):
    """Negative answers carry min(SOA TTL, SOA MINIMUM) and positive ones their records as text."""
    pool = UpstreamPool([server_of(zone_server)])
    assert run(ask(pool, name, rdtype)) == expected


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("2.0.0.127.bl.test", "A", Answer("ok", ("127.0.0.2",), 60)),
        ("99.2.0.192.bl.test", "TXT", Answer("ok", ("Listed: see https://bl.test/192.0.2.99",), 60)),
        ("1.0.0.127.bl.test", "A", Answer("nxdomain", (), 30)),  # SOA TTL 60, MINIMUM 30
        ("x.spammy.example.dbl.test", "TXT", Answer("ok", ("Spammy subdomain",), 60)),
    ],
)
def test_answers_from_rbldnsd(rbldnsd, name, rdtype, expected):
    """A real rbldnsd (which ignores EDNS) answers DNSBL and RHSBL queries as expected."""
    pool = UpstreamPool([Server(*rbldnsd.address)])
    assert run(ask(pool, name, rdtype)) == expected


# -- rotation and failures --------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "counter"),
    [
        ({"drop": True}, "upstream_timeouts"),
        ({"servfail": True}, "upstream_errors"),
        ({"refused": True}, "upstream_errors"),
    ],
)
def test_rotates_to_second_server(zone_server, zone_server2, fault, counter):
    """When the first server is blackholed, SERVFAILs or REFUSEs, the second try asks the next server."""
    zone_server.set_faults(**fault)
    stats = Stats()
    pool = UpstreamPool([server_of(zone_server), server_of(zone_server2)], timeout_s=0.2, stats=stats)
    answer = run(ask(pool, "host.example.test", "A"))
    assert answer.status == "ok"
    assert zone_server.count() == 1 and zone_server2.count() == 1
    assert stats.total(counter) == 1
    assert stats.total("upstream_queries") == 2


@pytest.mark.parametrize(("explore_share", "queries", "slow_range"), [(0.0, 20, (1, 1)), (0.2, 100, (6, 45))])
def test_best_server_first_with_an_exploration_share(zone_server, zone_server2, explore_share, queries, slow_range):
    """Once both servers are measured the faster one answers every query; the slower gets only the exploration share, in the background."""
    zone_server2.set_faults(delay_s=0.01)
    stats = Stats()
    pool = UpstreamPool([server_of(zone_server), server_of(zone_server2)], explore_share=explore_share, stats=stats)

    async def main():
        for _ in range(queries):
            assert (await ask(pool, "host.example.test", "A")).ok
        await pool.close()

    run(main())
    assert zone_server.count() == queries - 1  # the slower one answered only while unmeasured (the 2nd query)
    explored = stats.total("upstream_explores")
    assert zone_server2.count() == 1 + explored
    assert slow_range[0] <= zone_server2.count() <= slow_range[1]
    assert pool.health()[server_of(zone_server2).label]["srtt_s"] > pool.health()[server_of(zone_server).label]["srtt_s"]


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (({"servfail": True}, {"servfail": True}), "servfail"),
        (({"refused": True}, {"drop": True}), "refused"),
        (({"drop": True}, {"refused": True}), "refused"),
        (({"drop": True}, {"drop": True}), "timeout"),
    ],
)
def test_all_tries_fail(zone_server, zone_server2, faults, expected):
    """When every try fails, the status is the last real failure (SERVFAIL/REFUSED), else timeout."""
    zone_server.set_faults(**faults[0])
    zone_server2.set_faults(**faults[1])
    pool = UpstreamPool([server_of(zone_server), server_of(zone_server2)], timeout_s=0.1)
    assert run(ask(pool, "host.example.test", "A")) == Answer(expected)


@pytest.mark.parametrize("loop", LOOPS)
def test_unreachable_port_fails_fast_and_rotates(zone_server, loop):
    """A server whose port is closed (ICMP unreachable) fails at once and the next server answers."""
    stats = Stats()
    dead = Server("127.0.0.1", closed_udp_port())
    pool = UpstreamPool([dead, server_of(zone_server)], timeout_s=5.0, stats=stats)

    async def main():
        t0 = asyncio.get_running_loop().time()
        answer = await ask(pool, "host.example.test", "A")
        return answer, asyncio.get_running_loop().time() - t0

    answer, elapsed = run(main(), loop)
    assert answer.ok and elapsed < 3.0  # generous: waiting out the dead server would take 5 s
    assert stats.counters["upstream_errors"][(dead.label, "error")] == 1


# -- deadlines --------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(("timeout_s", "attempts", "within_s"), [(0.8, 2, 0.5), (0.15, 2, 5.0), (0.1, 3, 0.25)])
def test_blackholed_upstream_times_out_by_deadline(zone_server, loop, timeout_s, attempts, within_s):
    """A blackholed upstream yields `timeout` by the deadline or after the tries, whichever is first."""
    zone_server.set_faults(drop=True)
    stats = Stats()
    pool = UpstreamPool([server_of(zone_server)], timeout_s=timeout_s, attempts=attempts, stats=stats)
    bound = min(within_s, timeout_s * attempts)

    async def main():
        loop_ = asyncio.get_running_loop()
        t0 = loop_.time()
        answer = await pool.query("host.example.test", "A", time.monotonic() + within_s)
        return answer, loop_.time() - t0

    answer, elapsed = run(main(), loop)
    assert answer == Answer("timeout")
    assert bound - 0.05 <= elapsed <= bound + 1.0  # generous upper bound; the tries' sum is 1.6 s for the first case
    assert stats.total("upstream_timeouts") == zone_server.count() <= attempts


def test_passed_deadline_sends_nothing(zone_server):
    """A query whose deadline has already passed returns `timeout` without asking anyone."""
    pool = UpstreamPool([server_of(zone_server)])
    assert run(pool.query("host.example.test", "A", time.monotonic() - 1)) == Answer("timeout")
    assert zone_server.count() == 0


def test_injected_clock_sets_the_deadline(zone_server):
    """The deadline is read on the injected clock."""
    pool = UpstreamPool([server_of(zone_server)], clock=lambda: 1000.0)
    assert run(pool.query("host.example.test", "A", 999.0)) == Answer("timeout")
    assert run(pool.query("host.example.test", "A", 1001.0)).ok


# -- TCP, spoofing ----------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_tcp_retry_on_truncation(zone_server, loop):
    """A TXT answer too big for UDP (TC set) is fetched again over TCP, joined into one text."""

    async def main():
        stats = Stats()
        pool = UpstreamPool([server_of(zone_server)], stats=stats)
        return await ask(pool, "big.example.test", "TXT"), stats

    answer, stats = run(main(), loop)
    assert (answer.status, answer.records) == ("ok", ("x" * 2000,))
    assert stats.total("upstream_tcp_retries") == 1


def test_tcp_retry_on_forced_truncation(zone_server):
    """A small answer sent with TC set over UDP is still fetched over TCP."""
    zone_server.set_faults(truncate=True)
    stats = Stats()
    pool = UpstreamPool([server_of(zone_server)], stats=stats)
    assert run(ask(pool, "2.0.0.127.bl.test", "A")) == Answer("ok", ("127.0.0.2",), 300)
    assert stats.total("upstream_tcp_retries") == 1


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("fault", ["wrong_id", "wrong_question"])
def test_spoofed_reply_ignored(zone_server, fault, loop):
    """A reply with another ID or another question is dropped and counted; the real reply is taken."""
    zone_server.set_faults(**{fault: True})
    stats = Stats()
    server = server_of(zone_server)
    pool = UpstreamPool([server], stats=stats)
    assert run(ask(pool, "host.example.test", "MX"), loop) == Answer("ok", ("10 mx.example.test",), 300)
    assert stats.counters["upstream_dropped"][(server.label,)] == 1
    assert zone_server.count() == 1  # no retry was needed


@pytest.mark.parametrize(("socket_uses", "queries", "min_ports", "per_port"), [(1, 32, 32, 1), (8, 32, 4, 8), (1000, 200, 4, 64)])
def test_query_ids_and_source_ports_vary(socket_uses, queries, min_ports, per_port):
    """Queries go out with random IDs; a source port serves at most `socket_uses` of them (RFC 5452 §9.2) and 64 at once."""
    seen: list[tuple[int, int]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(2)
        pool = UpstreamPool(
            [Server("127.0.0.1", listener.getsockname()[1])], timeout_s=0.3, attempts=1, socket_uses=socket_uses,
            max_in_flight=queries,
        )

        def record():
            for _ in range(queries):
                wire, addr = listener.recvfrom(512)
                seen.append((int.from_bytes(wire[:2], "big"), addr[1]))

        thread = threading.Thread(target=record)
        thread.start()

        async def main():
            return await asyncio.gather(*(ask(pool, f"h{i}.example.test", "A") for i in range(queries)))

        answers = run(main())
        thread.join()
    assert {a.status for a in answers} == {"timeout"}
    ports = [port for _, port in seen]
    assert len(set(ports)) >= min_ports
    assert max(ports.count(p) for p in ports) <= per_port
    assert len({qid for qid, _ in seen}) >= queries - 4  # 32 draws from 65536: collisions are rare


# -- load -------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_500_concurrent_queries_with_in_flight_bound(zone_server, loop):
    """500 concurrent queries are all answered while at most max_in_flight are outstanding on the server."""
    names = [f"n{i}.example.test" for i in range(500)]
    for i, name in enumerate(names):
        zone_server.add(name, "A", [f"10.0.{i // 256}.{i % 256}"])
    zone_server.set_faults(delay_s=0.02)  # answers come late, so queries pile up
    pool = UpstreamPool([server_of(zone_server)], max_in_flight=64, timeout_s=3.0)
    peak = 0

    async def watch():
        nonlocal peak
        while True:
            peak = max(peak, pool.in_flight)
            await asyncio.sleep(0)

    async def main():
        watcher = asyncio.create_task(watch())
        answers = await asyncio.gather(*(ask(pool, name, "A", within_s=10) for name in names))
        watcher.cancel()
        return answers

    answers = run(main(), loop)
    assert [a.records for a in answers] == [(f"10.0.{i // 256}.{i % 256}",) for i in range(500)]
    assert zone_server.count() == 500
    assert 1 < peak <= 64


# -- IPv6, EDNS fallback, shutdown -------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_server():
    """An upstream given as [::1]:port is queried over IPv6."""
    with DnsServer(RECORDS, soa=SOAS, hosts=("::1",)) as srv:
        server = Server.parse(f"[::1]:{srv.port}")
        assert server == Server("::1", srv.port)
        pool = UpstreamPool([server])
        assert run(ask(pool, "host.example.test", "AAAA")) == Answer("nodata", (), 60)
        assert srv.count() == 1


def test_no_edns_fallback():
    """A server that answers FORMERR without OPT to EDNS queries is asked again without EDNS (RFC 6891 §7)."""
    # The test DNS server speaks EDNS, so this one old-style server is a few lines here.
    queries: list[bool] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)

        def serve():
            for _ in range(3):
                wire, addr = sock.recvfrom(512)
                query = dns.message.from_wire(wire)
                queries.append(query.edns >= 0)
                response = dns.message.make_response(query)
                response.use_edns(False)
                if query.edns >= 0:
                    response.set_rcode(dns.rcode.FORMERR)
                else:
                    response.answer.append(dns.rrset.from_text(query.question[0].name, 5, "IN", "A", "192.0.2.7"))
                sock.sendto(response.to_wire(), addr)

        thread = threading.Thread(target=serve)
        thread.start()
        pool = UpstreamPool([Server("127.0.0.1", sock.getsockname()[1])])

        async def main():
            return [await ask(pool, "old.example.test", "A"), await ask(pool, "old.example.test", "A")]

        answers = run(main())
        thread.join()
    assert answers == [Answer("ok", ("192.0.2.7",), 5)] * 2
    assert queries == [True, False, False]  # the server is remembered as EDNS-less


@pytest.mark.parametrize("loop", LOOPS)
def test_close_ends_queries_in_flight(zone_server, loop):
    """close() ends queries waiting on upstream with `error` at once, and later queries are refused."""
    zone_server.set_faults(drop=True)
    pool = UpstreamPool([server_of(zone_server)], timeout_s=5.0, attempts=1)

    async def main():
        loop = asyncio.get_running_loop()
        pending = asyncio.gather(*(ask(pool, f"h{i}.example.test", "A", within_s=10) for i in range(3)))
        while pool.in_flight < 3:
            await asyncio.sleep(0.001)
        t0 = loop.time()
        await pool.close()
        answers = await pending
        return answers, loop.time() - t0

    answers, elapsed = run(main(), loop)
    assert answers == [Answer("error")] * 3 and elapsed < 3.0  # generous: the queries' own timeout is 5 s
    with pytest.raises(RuntimeError, match="after close"):
        run(ask(pool, "host.example.test", "A"))


def test_memory_upstream_double():
    """MemoryUpstream answers from its table (else its default), records calls, and holds answers until released."""

    async def main():
        double: Upstream = MemoryUpstream({("a.test", "A"): Answer("ok", ("192.0.2.1",), 60)}, hold=True)
        pending = asyncio.gather(double.query("a.test", "A", 5.0), double.query("b.test", "TXT", 6.0))
        await asyncio.sleep(0)
        assert not pending.done() and double.calls == [("a.test", "A", 5.0), ("b.test", "TXT", 6.0)]
        double.release()
        answers = await pending
        await double.close()
        return answers

    assert run(main()) == [Answer("ok", ("192.0.2.1",), 60), Answer("nxdomain")]


# -- socket reuse -------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_reused_socket_routes_replies_by_id_and_drops_strays(loop):
    """Queries sharing a socket each get their own answer; a reply with another ID or question is dropped (RFC 5452 §9.1)."""
    records = {(f"r{i}.example.test", "A"): [f"198.51.100.{i + 1}"] for i in range(40)}
    with DnsServer(records) as srv:
        for i in range(40):  # every reply is preceded by one with the ID + 1; the last asked is answered first
            srv.set_faults(f"r{i}.example.test", wrong_id=True, delay_s=(40 - i) * 0.003)
        stats = Stats()
        pool = UpstreamPool([server_of(srv)], socket_uses=100, stats=stats)

        async def main():
            return await asyncio.gather(*(ask(pool, f"r{i}.example.test", "A") for i in range(40)))

        answers = run(main(), loop)
    assert [a.records for a in answers] == [(f"198.51.100.{i + 1}",) for i in range(40)]
    assert stats.total("upstream_dropped") == 40
    assert stats.total("upstream_queries") == 40


def test_sockets_are_closed_after_their_uses():
    """After socket_uses queries a socket is retired and closed once its replies are in: open sockets stay bounded."""
    with DnsServer(RECORDS, soa=SOAS) as srv:
        pool = UpstreamPool([server_of(srv)], socket_uses=10)

        async def main():
            before = len(os.listdir("/proc/self/fd"))
            for _ in range(5):
                await asyncio.gather(*(ask(pool, "host.example.test", "A") for _ in range(25)))
            during = len(os.listdir("/proc/self/fd"))
            await pool.close()
            return before, during, len(os.listdir("/proc/self/fd"))

        before, during, after = run(main())
    assert during - before <= 1  # only the current socket stays open between queries
    assert after <= before
