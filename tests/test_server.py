"""End-to-end tests through the real unix socket: methods, pipelining, bad input, load, signals.

The service runs in a thread (``fl_service``/``make_service``) or as a
process (``ServiceProcess``) with real upstreams: our ``DnsServer`` for host
names and a real rbldnsd for the ``*.test`` blocklists.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import stat
import sys
import threading
import time

import msgpack
import pytest

from fastlookup import errors, wire
from fastlookup.client import Client
from fastlookup.testing._proc import ServerStartError, wait_until
from fastlookup.testing.service import ServiceProcess, ServiceThread, service_config


class Raw:
    """A bare socket speaking msgpack-rpc by hand, for what the client never sends."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_obj(self, obj) -> None:
        self.send(msgpack.packb(obj, use_bin_type=True))

    def recv(self, n: int = 1) -> list:
        out: list = []
        for msg in self.unpacker:
            out.append(msg)
        while len(out) < n:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError(f"closed after {len(out)} of {n} responses")
            self.unpacker.feed(data)
            out.extend(self.unpacker)
        return out

    def is_closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the service closes this connection (EOF or reset) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_service(request, make_service):
    """The default service on each event loop implementation."""
    return make_service(loop=request.param)


def ping_ok(path: str) -> bool:
    with Client(path, timeout=2.0) as c:
        return c.ping()["ok"] is True


# --- every method ----------------------------------------------------------------------

METHOD_CASES = [
    # (method, args, expected subset)
    ("ping", None, {"ok": True}),
    ("a", {"name": "host.example.test"}, {"status": "ok", "records": ["192.0.2.1"]}),
    ("aaaa", {"name": "host.example.test"}, {"status": "ok", "records": ["2001:db8::1"]}),
    ("a", {"name": "missing.example.test"}, {"status": "nxdomain", "records": []}),
    ("aaaa", {"name": "ns.example.test"}, {"status": "nodata", "records": []}),
    ("query", {"name": "example.test", "type": "MX"}, {"status": "ok", "records": ["10 mx.example.test"]}),
    ("query", {"name": "example.test", "type": "txt"}, {"status": "ok", "records": ["v=spf1 ip4:192.0.2.0/24 -all"]}),
    ("query", {"name": "example.test", "type": "NS"}, {"status": "ok", "records": ["ns.example.test"]}),
    ("query", {"name": "www.example.test", "type": "CNAME"}, {"status": "ok", "records": ["host.example.test"]}),
    ("query", {"name": "HOST.Example.Test.", "type": "A"}, {"status": "ok", "records": ["192.0.2.1"]}),
    ("ptr", {"ip": "192.0.2.1"}, {"status": "ok", "records": ["host.example.test"]}),
    ("fcrdns", {"ip": "192.0.2.1"}, {"result": "pass", "names": ["host.example.test"], "confirmed": "host.example.test"}),
    ("fcrdns", {"ip": "192.0.2.66"}, {"result": "fail", "names": ["forged.example.test"], "confirmed": None}),
    ("fcrdns", {"ip": "192.0.2.200"}, {"result": "none", "names": []}),
    ("dnsbl", {"ip": "192.0.2.99"}, {"listed": True, "unknown": []}),
    ("dnsbl", {"ip": "192.0.2.1"}, {"listed": False, "hits": [], "unknown": []}),
    ("dnsbl", {"ip": "198.51.100.7", "zones": ["bl.test"]}, {"listed": True}),
    ("dnsbl", {"ip": "2001:db8:bad::1", "zones": ["bl.test"]}, {"listed": True}),
    ("dnsbl", {"ip": "192.0.2.1", "zones": ["errorcode.test"]}, {"listed": False, "unknown": [{"zone": "errorcode.test", "status": "list_error"}]}),
    ("rhsbl", {"domain": "spam.example"}, {"listed": True}),
    ("rhsbl", {"domain": "ham.example"}, {"listed": False}),
    ("check", {"ip": "192.0.2.99"}, {"action": "reject", "smtp_code": 554, "fail_open": False}),
    ("check", {"ip": "192.0.2.1", "helo": "host.example.test", "sender": "a@example.test"}, {"action": "accept", "fail_open": False}),
    ("check", {"ip": "192.0.2.1", "sender": "x@spam.example"}, {"action": "reject"}),
]


@pytest.mark.parametrize("method, args, expected", METHOD_CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(METHOD_CASES)])
def test_every_method_answers_through_the_socket(fl_client, method, args, expected):
    """Each contract method answers over the real socket with the contract's map."""
    result = fl_client.call(method, args)
    for key, value in expected.items():
        assert result[key] == value, (key, result)


def test_result_shapes_follow_the_contract(fl_client):
    """Answer, Confirmation, Listing and Verdict carry exactly the contract's keys."""
    assert set(fl_client.a("host.example.test")) == {"status", "records", "ttl", "from"}
    assert set(fl_client.fcrdns("192.0.2.1")) == {"result", "names", "confirmed"}
    listing = fl_client.dnsbl("192.0.2.99")
    assert set(listing) == {"listed", "hits", "unknown"}
    assert set(listing["hits"][0]) == {"zone", "codes", "text"}
    assert listing["hits"][0]["text"].startswith("Listed")
    assert {"action", "smtp_code", "text", "score", "reasons", "fail_open", "elapsed_ms"} <= set(fl_client.check("192.0.2.99"))
    assert set(fl_client.ping()) == {"ok", "version", "uptime_s"}


def test_second_call_is_a_memory_hit_and_stats_count_it(fl_client, dns_server):
    """A repeated question is answered from memory without asking upstream again."""
    assert fl_client.a("host.example.test")["from"] == "upstream"
    assert fl_client.a("host.example.test")["from"] == "memory"
    assert dns_server.count("host.example.test", "A") == 1
    stats = fl_client.stats()
    assert stats["lookups/A,memory"] >= 1 and stats["connections"] >= 1


def test_in_process_call_matches_the_socket(fl_service, fl_client):
    """Service.call gives front ends the same results as the socket."""
    assert fl_service.call("a", {"name": "host.example.test"})["records"] == fl_client.a("host.example.test")["records"]
    with pytest.raises(errors.InvalidArgument):
        fl_service.call("ptr", {"ip": "not-an-ip"})


def test_batch_answers_in_call_order_with_per_call_errors(fl_client):
    """batch returns one [error, result] per call, in order; a bad call does not spoil the others."""
    out = fl_client.batch([("a", {"name": "host.example.test"}), ("ptr", {"ip": "nope"}), ("ping",), ("nosuch", {})])
    results = out["results"]
    assert results[0][0] is None and results[0][1]["records"] == ["192.0.2.1"]
    assert results[1][0]["code"] == "invalid_argument"
    assert results[2][1]["ok"] is True
    assert results[3][0]["code"] == "unknown_method"


# --- volume: pipelining, threads, batch --------------------------------------------------


def _add_hosts(dns_server, n: int) -> list[tuple[str, str]]:
    hosts = [(f"h{i}.example.test", f"10.0.{i >> 8}.{i & 255}") for i in range(n)]
    for name, ip in hosts:
        dns_server.add(name, "A", [ip])
    return hosts


def test_pipelining_1000_requests_on_one_connection(make_service, dns_server):
    """1,000 requests in flight on one connection are all answered and matched by msgid."""
    hosts = _add_hosts(dns_server, 500)
    calls = [("a", {"name": name}) for name, _ in hosts] + [("a", {"name": name}) for name, _ in hosts]
    svc = make_service(server={"deadline_s": 10.0})
    with svc.client(timeout=20) as client:
        results = client.pipeline(calls)
    assert len(results) == 1000
    for (name, ip), first, second in zip(hosts, results[:500], results[500:]):
        assert first["records"] == [ip] and second["records"] == [ip], name


def test_pipeline_answers_arrive_out_of_order_on_the_wire(loop_service, dns_server):
    """A slow miss does not hold back the hits sent after it: answers leave when ready."""
    dns_server.set_faults("slow.example.test", delay_s=0.3)
    raw = Raw(loop_service.socket)
    raw.send(wire.encode_request(1, "a", {"name": "slow.example.test"}) + wire.encode_request(2, "ping"))
    first, second = raw.recv(2)
    assert (first[1], second[1]) == (2, 1)
    raw.close()


def test_50_threads_share_one_client(fl_service, dns_server):
    """One Client used by 50 threads at once gives every thread its own right answers."""
    hosts = _add_hosts(dns_server, 200)
    client = fl_service.client(timeout=10.0)
    failures: list = []

    def worker(k: int) -> None:
        try:
            for j in range(20):
                name, ip = hosts[(k * 7 + j) % len(hosts)]
                got = client.a(name)
                if got["records"] != [ip]:
                    failures.append((name, got))
        except Exception as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    client.close()
    assert failures == []


def test_batch_of_1000_calls_and_one_over_the_limit(make_service, dns_server):
    """A batch of max_batch calls is answered in order; one call more is too_large."""
    hosts = _add_hosts(dns_server, 250)
    calls = [hosts[(i * 7) % len(hosts)] for i in range(1000)]
    svc = make_service(server={"deadline_s": 10.0})
    with svc.client(timeout=20) as client:
        out = client.batch([("a", {"name": name}) for name, _ in calls])
        assert [r[1]["records"] for r in out["results"]] == [[ip] for _, ip in calls]
        with pytest.raises(errors.TooLarge):
            client.batch([("ping",)] * 1001)


# --- bad input ------------------------------------------------------------------------------

WRONG_SHAPES = [
    # (object sent, expected error code, expected msgid in the reply)
    ("hello", "bad_request", None),
    (None, "bad_request", None),
    (42, "bad_request", None),
    ({"method": "ping"}, "bad_request", None),
    ([0, 1, "ping"], "bad_request", None),
    ([0, 1, "ping", [], 5], "bad_request", None),
    ([1, 1, None, None], "bad_request", None),
    ([3, 1, "ping", []], "bad_request", None),
    ([0, -1, "ping", []], "bad_request", None),
    ([0, 2**32, "ping", []], "bad_request", None),
    ([0, "1", "ping", []], "bad_request", None),
    ([0, 1.5, "ping", []], "bad_request", None),
    ([0, 7, 5, []], "bad_request", 7),
    ([0, 7, b"ping", []], "bad_request", 7),
    ([0, 7, "ping", {}], "bad_request", 7),
    ([0, 7, "ping", [1]], "bad_request", 7),
    ([0, 7, "ping", [{}, {}]], "bad_request", 7),
    ([0, 7, "ping", None], "bad_request", 7),
    ([0, 7, "nosuch", []], "unknown_method", 7),
    ([0, 7, "a", []], "bad_request", 7),
    ([0, 7, "a", [{"name": 5}]], "bad_request", 7),
    ([0, 7, "a", [{1: 2}]], "bad_request", 7),
    ([0, 7, "a", [{"name": "bad name!"}]], "invalid_argument", 7),
    ([0, 7, "a", [{"name": "x" * 300}]], "invalid_argument", 7),
    ([0, 7, "ptr", [{"ip": "300.1.1.1"}]], "invalid_argument", 7),
    ([0, 7, "query", [{"name": "x.test", "type": "BOGUS"}]], "invalid_argument", 7),
    ([0, 7, "query", [{"name": "x.test", "type": 1}]], "bad_request", 7),
    ([0, 7, "dnsbl", [{"ip": "192.0.2.1", "zones": "bl.test"}]], "bad_request", 7),
    ([0, 7, "dnsbl", [{"ip": "192.0.2.1", "zones": [1]}]], "bad_request", 7),
    ([0, 7, "dnsbl", [{"ip": "192.0.2.1", "zones": []}]], "invalid_argument", 7),
    ([0, 7, "dnsbl", [{"ip": "192.0.2.1", "zones": ["no zone"]}]], "invalid_argument", 7),
    ([0, 7, "check", [{"ip": "192.0.2.1", "policy": "nosuch"}]], "invalid_argument", 7),
    ([0, 7, "check", [{"ip": "192.0.2.1", "helo": 5}]], "bad_request", 7),
    ([0, 7, "batch", [{"calls": "x"}]], "bad_request", 7),
    ([0, 7, "batch", [{"calls": [["batch", {}]]}]], None, 7),  # nested batch: an error inside the results
]


def test_every_wrong_shape_gets_its_error_and_the_connection_survives(loop_service):
    """Valid msgpack of each wrong shape is answered with its error code; the connection keeps working."""
    raw = Raw(loop_service.socket)
    for obj, code, msgid in WRONG_SHAPES:
        raw.send_obj(obj)
        (reply,) = raw.recv(1)
        assert reply[0] == 1 and reply[1] == msgid, (obj, reply)
        if code is None:
            assert reply[2] is None and reply[3]["results"][0][0]["code"] == "bad_request"
        else:
            assert reply[2]["code"] == code and reply[3] is None, (obj, reply)
            assert isinstance(reply[2]["message"], str) and reply[2]["message"]
    raw.send(wire.encode_request(99, "ping"))
    assert raw.recv(1)[0][1] == 99
    raw.close()


def test_notifications_run_without_a_response(fl_service, dns_server):
    """A notification is executed (its lookup fills the cache) and gets no response."""
    raw = Raw(fl_service.socket)
    raw.send_obj([2, "ping", []])
    raw.send_obj([2, "a", [{"name": "host.example.test"}]])
    raw.send_obj([2, "nosuch", []])
    raw.send(wire.encode_request(5, "ping"))
    (reply,) = raw.recv(1)
    assert reply[1] == 5
    wait_until(lambda: dns_server.count("host.example.test", "A") == 1, timeout_s=5, what="the notification's lookup")
    with fl_service.client() as c:
        wait_until(lambda: c.a("host.example.test")["from"] == "memory", timeout_s=5, what="the cached answer")
    raw.close()


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_never_take_the_service_down(fl_service, seed):
    """Random bytes get answers or a closed connection, and other clients are served throughout."""
    rng = random.Random(seed)
    for _ in range(10):
        raw = Raw(fl_service.socket, timeout=2.0)
        try:
            raw.send(rng.randbytes(rng.randint(1, 4096)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw.close()
    assert ping_ok(fl_service.socket)


def test_garbage_closes_only_that_connection(loop_service):
    """Bytes that are not msgpack close their connection; a second connection is unaffected."""
    good = Raw(loop_service.socket)
    bad = Raw(loop_service.socket)
    bad.send(wire.encode_request(1, "ping") + b"\xc1" * 8)  # 0xc1 is never valid msgpack
    assert bad.recv(1)[0][1] == 1  # the frame before the garbage is still answered
    assert bad.is_closed_by_peer()
    good.send(wire.encode_request(2, "ping"))
    assert good.recv(1)[0][1] == 2
    good.close()
    bad.close()


def test_truncated_frames_wait_for_the_rest(fl_service):
    """A frame split across writes is answered once complete; one cut short and dropped harms nothing."""
    frame = wire.encode_request(3, "a", {"name": "host.example.test"})
    raw = Raw(fl_service.socket, timeout=0.2)
    raw.send(frame[:7])
    with pytest.raises(socket.timeout):
        raw.recv(1)
    raw.sock.settimeout(5)
    raw.send(frame[7:])
    assert raw.recv(1)[0][1] == 3
    raw.close()
    cut = Raw(fl_service.socket)
    cut.send(frame[:-3])
    cut.close()
    assert ping_ok(fl_service.socket)


def test_oversized_frames(make_service):
    """A frame over max_frame_bytes is answered too_large by msgid; one too big to buffer closes the connection."""
    svc = make_service(server={"max_frame_bytes": 65536})
    raw = Raw(svc.socket)
    raw.send(wire.encode_request(11, "a", {"name": "x" * 100_000}))
    (reply,) = raw.recv(1)
    assert reply[1] == 11 and reply[2]["code"] == "too_large"
    raw.send(wire.encode_request(12, "ping"))
    assert raw.recv(1)[0][1] == 12
    huge = Raw(svc.socket)
    try:
        huge.send(wire.encode_request(13, "a", {"name": "x" * 1_000_000}))
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert huge.is_closed_by_peer()
    raw.send(wire.encode_request(14, "ping"))
    assert raw.recv(1)[0][1] == 14
    raw.close()
    huge.close()


def test_nested_array_headers_are_refused(fl_service):
    """A tiny frame announcing huge nested arrays closes the connection instead of allocating them."""
    raw = Raw(fl_service.socket)
    raw.send(b"\xdd\x00\x10\x00\x00" * 1000)
    assert raw.is_closed_by_peer()
    raw.close()
    assert ping_ok(fl_service.socket)


# --- slow and many clients ----------------------------------------------------------------------


def test_a_client_that_does_not_read_is_paused_not_buffered(loop_service):
    """A client that never reads its answers is paused at a bounded buffer; others are still served."""
    slow = Raw(loop_service.socket, timeout=0.5)
    request = wire.encode_request(1, "batch", {"calls": [["ping", {}]] * 1000})
    sent = 0
    try:
        for _ in range(2000):
            slow.send(request)
            sent += 1
    except socket.timeout:
        pass
    assert sent < 2000, "the service kept reading a client that reads nothing"

    def connection_state():
        conns = list(loop_service.service.server.connections)
        return [(c.paused, c.transport.get_write_buffer_size()) for c in conns if c.transport is not None]

    states = loop_service.run(connection_state)
    assert any(paused for paused, _ in states)
    assert max(size for _, size in states) < 32 << 20
    assert ping_ok(loop_service.socket)
    slow.close()
    assert ping_ok(loop_service.socket)


def test_1000_connections_opened_and_dropped_while_a_client_is_served(fl_service, dns_server):
    """Opening and dropping 1,000 connections never disturbs a well-behaved client on another one."""
    stop = threading.Event()
    seen = {"ok": 0, "bad": []}

    def steady() -> None:
        with fl_service.client(timeout=5.0) as c:
            while not stop.is_set():
                try:
                    got = c.a("host.example.test")
                    if got["records"] == ["192.0.2.1"]:
                        seen["ok"] += 1
                    else:
                        seen["bad"].append(got)
                except Exception as exc:  # reported below
                    seen["bad"].append(exc)

    worker = threading.Thread(target=steady)
    worker.start()
    try:
        frame = wire.encode_request(1, "a", {"name": "host.example.test"})
        for round_ in range(4):
            conns = [Raw(fl_service.socket) for _ in range(250)]
            for i, raw in enumerate(conns):
                if i % 3 == 0:
                    raw.send(frame[:5])  # half a frame, then gone
                elif i % 3 == 1:
                    raw.send(frame)  # a request whose answer nobody reads
            for raw in conns:
                raw.close()
    finally:
        stop.set()
        worker.join(10)
    assert seen["bad"] == [] and seen["ok"] > 0
    wait_until(lambda: fl_service.run(lambda: len(fl_service.service.server.connections)) <= 1, timeout_s=5, what="dropped connections to be closed")


def test_overloaded_when_in_flight_limit_reached_but_hits_still_answer(make_service, dns_server):
    """Past server.max_in_flight, misses get overloaded while memory hits and ping are still answered."""
    dns_server.set_faults("slow1.example.test", delay_s=0.3)
    svc = make_service(server={"max_in_flight": 1})
    with svc.client(timeout=5) as c:
        c.a("host.example.test")
        out = c.pipeline(
            [("a", {"name": "slow1.example.test"}), ("a", {"name": "other.example.test"}), ("a", {"name": "host.example.test"}), ("ping",)],
            return_exceptions=True,
        )
    assert out[0]["status"] == "nxdomain"
    assert isinstance(out[1], errors.Overloaded)
    assert out[2]["from"] == "memory" and out[3]["ok"] is True


def test_deadline_turns_a_slow_upstream_into_timeout(make_service, fl_config, dns_server):
    """A lookup whose upstream is slower than server.deadline_s answers timeout by the deadline."""
    from fastlookup.testing.service import RoutedUpstream

    dns_server.set_faults("slow2.example.test", delay_s=2.0)
    # The upstream itself waits 5 s, so a "timeout" at all can only come from the 0.3 s deadline.
    import dataclasses

    config = fl_config(server={"deadline_s": 0.3})
    config = dataclasses.replace(config, upstream=dataclasses.replace(config.upstream, timeout_s=5.0, attempts=1))
    svc = make_service(config=config, upstream=RoutedUpstream({}, dns_server.address, timeout_s=5.0, attempts=1))
    with svc.client(timeout=10) as c:
        t0 = time.monotonic()
        answer = c.a("slow2.example.test")
        elapsed = time.monotonic() - t0
    assert answer["status"] == "timeout"
    assert 0.25 < elapsed < 1.9  # not before the deadline; generous, and before the 2 s answer


# --- the socket file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["0660", "0600"])
def test_socket_mode_is_applied(make_service, mode):
    """The socket file gets server.socket_mode."""
    svc = make_service(server={"socket_mode": mode})
    assert stat.S_IMODE(os.stat(svc.socket).st_mode) == int(mode, 8)


def test_stale_socket_is_replaced_and_live_one_refused(fl_config, routed_upstream):
    """A stale socket file is removed at start; a socket a live instance answers on is refused."""
    config = fl_config()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(config.server.socket)
    stale.close()  # the file stays, nobody listens
    with ServiceThread(config, upstream=routed_upstream()) as first:
        assert ping_ok(first.socket)
        with pytest.raises(ServerStartError, match="another fastlookup instance"):
            ServiceThread(config, upstream=routed_upstream()).start()
        assert ping_ok(first.socket)
    assert not os.path.exists(config.server.socket)


def test_socket_directory_is_created(short_tmp, dns_server):
    """The socket's directory is created when missing."""
    config = service_config(f"{short_tmp}/sub/dir/fl.sock", [dns_server.address])
    with ServiceThread(config) as svc:
        assert ping_ok(svc.socket)


def test_stop_finishes_calls_in_flight_and_removes_the_socket(make_service, dns_server):
    """A graceful stop answers the calls in flight, then closes connections and removes the socket."""
    dns_server.set_faults("slow3.example.test", delay_s=0.3)
    svc = make_service()
    raw = Raw(svc.socket)
    raw.send(wire.encode_request(21, "a", {"name": "slow3.example.test"}))
    wait_until(lambda: dns_server.count("slow3.example.test") >= 1, timeout_s=5, what="the query to reach upstream")
    stopper = threading.Thread(target=svc.stop)
    stopper.start()
    (reply,) = raw.recv(1)
    assert reply[1] == 21 and reply[3]["status"] == "nxdomain"
    assert raw.is_closed_by_peer()
    stopper.join(10)
    assert not os.path.exists(svc.config.server.socket)
    raw.close()


# --- the process: signals ----------------------------------------------------------------------------


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTLOOKUP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def test_sigterm_drains_and_removes_the_socket(short_tmp, dns_server):
    """SIGTERM answers the call in flight, exits 0 and removes the socket file."""
    dns_server.set_faults("slow4.example.test", delay_s=0.3)
    sock = f"{short_tmp}/fl.sock"
    args = ["--socket", sock, "--upstream", f"127.0.0.1:{dns_server.port}"]
    with ServiceProcess(args, socket=sock, env=_env()) as proc:
        raw = Raw(sock)
        raw.send(wire.encode_request(31, "a", {"name": "slow4.example.test"}))
        wait_until(lambda: dns_server.count("slow4.example.test") >= 1, timeout_s=5, what="the query to reach upstream")
        proc.signal(signal.SIGTERM)
        (reply,) = raw.recv(1)
        assert reply[1] == 31 and reply[3]["status"] == "nxdomain"
        assert proc.wait() == 0
        raw.close()
    assert not os.path.exists(sock)


CONFIG_V1 = """
[server]
socket = "{sock}"
[upstream]
servers = ["127.0.0.1:{port}"]
[health]
interval_s = 0
"""

CONFIG_V2 = CONFIG_V1 + """
[policy.strict]
allow = []
block = ["192.0.2.0/24"]
"""


def test_sighup_reloads_without_dropping_connections(short_tmp, dns_server):
    """SIGHUP applies a new policy on the open connection; a bad file is logged and the old config kept."""
    sock = f"{short_tmp}/fl.sock"
    path = f"{short_tmp}/fastlookup.toml"
    with open(path, "w") as fh:
        fh.write(CONFIG_V1.format(sock=sock, port=dns_server.port))
    with ServiceProcess(["--config", path], socket=sock, env=_env()) as proc, Client(sock, timeout=2) as client:
        with pytest.raises(errors.InvalidArgument):
            client.check("192.0.2.1", policy="strict")
        accepted = client.stats()["connections_accepted"]
        with open(path, "w") as fh:
            fh.write(CONFIG_V2.format(sock=sock, port=dns_server.port))
        proc.signal(signal.SIGHUP)
        assert proc.output.wait_for_count("configuration reloaded", 1, 10), proc.output.tail()
        assert client.check("192.0.2.1", policy="strict")["action"] == "reject"
        with open(path, "w") as fh:
            fh.write("[server\nthis is not toml")
        proc.signal(signal.SIGHUP)
        assert proc.output.wait_for_count("reload failed", 1, 10), proc.output.tail()
        assert client.check("192.0.2.1", policy="strict")["action"] == "reject"
        assert client.stats()["connections_accepted"] == accepted  # the same connection all along
    assert not os.path.exists(sock)


# --- service composition: bugs, reload, listeners, the shared tier ---------------------------------


def test_a_bug_in_a_method_answers_internal_and_the_service_keeps_serving(fl_service, monkeypatch):
    """An exception inside a method, on the sync or the async path, is answered internal; serving goes on."""
    from fastlookup import rpc

    def boom_now(ctx, args):
        raise ZeroDivisionError("sync bug")

    def boom_later(ctx, args):
        def evaluate(get):
            if get("host.example.test", "A") is None:
                return None
            raise KeyError("async bug")

        return evaluate

    monkeypatch.setitem(rpc.METHODS, "boom_now", boom_now)
    monkeypatch.setitem(rpc.METHODS, "boom_later", boom_later)
    with fl_service.client() as c:
        with pytest.raises(errors.InternalError, match="ZeroDivisionError"):
            c.call("boom_now")
        with pytest.raises(errors.InternalError, match="KeyError"):
            c.call("boom_later")
        assert c.ping()["ok"] is True
        assert c.stats()["rpc_errors/internal"] == 2


def test_reload_swaps_upstream_zones_and_clamps_live(short_tmp, dns_server):
    """reload() points new lookups at new upstream servers and applies new cache clamps, connections kept."""
    from fastlookup.testing.dnsserver import DnsServer

    with DnsServer({("moved.example.test", "A"): ["203.0.113.5"]}) as other:
        config = service_config(f"{short_tmp}/fl.sock", [dns_server.address])
        with ServiceThread(config) as svc, svc.client() as client:
            assert client.a("moved.example.test")["status"] == "nxdomain"
            new = service_config(f"{short_tmp}/fl.sock", [other.address], cache={"min_ttl_s": 1000, "max_ttl_s": 2000})
            assert svc.reload(new) is True
            answer = client.a("moved.example.test")
            # The old nxdomain is cached; a new name goes to the new server with the new clamp.
            assert answer["status"] == "nxdomain" and answer["from"] == "memory"
            other.add("fresh.example.test", "A", ["203.0.113.6"])
            fresh = client.a("fresh.example.test")
            assert fresh["records"] == ["203.0.113.6"] and fresh["ttl"] == 1000
            assert client.stats()["connections_accepted"] == 2  # the start-up probe and this client


def test_reload_with_a_bad_config_keeps_the_running_one(fl_service):
    """A reload that fails validation returns False and leaves the running config in place."""
    from fastlookup.config import load_config

    before = fl_service.service.config
    bad = load_config(environ={}, overrides={"server": {"socket": fl_service.socket}, "policy": {"default": {"dnsbl": ["bl.test=not-a-code"]}}})
    assert fl_service.reload(bad) is False
    assert fl_service.service.config is before
    assert ping_ok(fl_service.socket)


def test_optional_listeners_start_and_stop_with_the_service(make_service, short_tmp):
    """Listeners set in the config start with the service and answer; each is closed at stop."""
    import urllib.request

    svc = make_service(
        metrics={"listen": "127.0.0.1:0"},
        postfix={"listen": f"unix:{short_tmp}/policy.sock", "socketmap": f"unix:{short_tmp}/sm.sock", "exim": f"unix:{short_tmp}/exim.sock"},
    )
    listeners = svc.service.listeners
    assert set(listeners) == {"metrics.listen", "postfix.listen", "postfix.socketmap", "postfix.exim"}
    with urllib.request.urlopen(f"http://127.0.0.1:{listeners['metrics.listen'].port}/metrics", timeout=5) as resp:
        assert resp.status == 200 and b"fastlookup_" in resp.read()
    for name in ("policy.sock", "sm.sock", "exim.sock"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(f"{short_tmp}/{name}")
        conn.close()


def test_a_listener_whose_module_is_missing_fails_start_clearly(fl_config, routed_upstream, monkeypatch):
    """A configured listener that cannot be imported stops the start with a message naming the key."""
    from fastlookup import service as service_module

    monkeypatch.setitem(service_module.LISTENERS, "metrics.listen", ("fastlookup.no_such_module", "serve"))
    config = fl_config(metrics={"listen": "127.0.0.1:0"})
    with pytest.raises(ServerStartError, match="metrics.listen is set but fastlookup.no_such_module is not available"):
        ServiceThread(config, upstream=routed_upstream()).start()
    assert not os.path.exists(config.server.socket)


def test_redis_url_shares_answers_between_services(fl_config, routed_upstream, redis_server, dns_server):
    """With redis.url set, a second service answers from the shared tier what the first one fetched."""
    a = ServiceThread(fl_config("a.sock", redis={"url": redis_server.url, "timeout_s": 0.5}), upstream=routed_upstream())
    b = ServiceThread(fl_config("b.sock", redis={"url": redis_server.url, "timeout_s": 0.5}), upstream=routed_upstream())
    import redis

    store = redis.Redis.from_url(redis_server.url)
    with a, b, a.client() as ca, b.client() as cb:
        assert ca.a("host.example.test")["from"] == "upstream"
        # a stores its answer in the background: wait until Redis holds it.
        wait_until(lambda: bool(store.keys("*host.example.test*")), timeout_s=5, what="the answer to reach Redis")
        assert cb.a("host.example.test")["from"] == "redis"
        assert cb.a("host.example.test")["from"] == "memory"
    store.close()
    assert dns_server.count("host.example.test", "A") == 1


def test_idle_connections_hold_no_decoder_and_split_frames_keep_theirs(fl_service):
    """Between frames a connection holds no decoder (they are pooled); one mid-frame keeps its own."""
    frame = wire.encode_request(41, "a", {"name": "host.example.test"})
    idle = [Raw(fl_service.socket) for _ in range(20)]
    for i, raw in enumerate(idle):
        raw.send(wire.encode_request(i, "ping"))
        assert raw.recv(1)[0][1] == i
    half = Raw(fl_service.socket)
    half.send(frame[:9])
    wait_until(
        lambda: fl_service.run(lambda: sum(c.decoder is not None for c in fl_service.service.server.connections)) == 1,
        timeout_s=5, what="only the mid-frame connection to hold a decoder",
    )
    for i, raw in enumerate(idle):  # the pooled decoders serve the others meanwhile
        raw.send(frame[:9])
        raw.send(frame[9:])
        assert raw.recv(1)[0][3]["records"] == ["192.0.2.1"]
    half.send(frame[9:])
    assert half.recv(1)[0][1] == 41
    for raw in idle + [half]:
        raw.close()


def test_socket_group_is_applied_and_an_unknown_group_refused(make_service, fl_config, routed_upstream):
    """server.socket_group sets the socket file's group; a group that does not exist fails the start clearly."""
    import grp

    if os.geteuid() != 0:
        pytest.skip("needs root to give the socket a group other than the process's own")
    group = grp.getgrgid(65534)  # not the gid a new socket already has
    assert group.gr_gid != os.getegid()
    svc = make_service(server={"socket_group": group.gr_name})
    assert os.stat(svc.socket).st_gid == 65534
    config = fl_config("other.sock", server={"socket_group": "no-such-group-fl"})
    with pytest.raises(ServerStartError, match="socket_group"):
        ServiceThread(config, upstream=routed_upstream()).start()
    assert not os.path.exists(config.server.socket)
