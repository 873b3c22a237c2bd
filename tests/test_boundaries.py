"""The limits the docs promise, tested on both sides of each bound, and the fronts' and server's stop.

docs/exim.md and docs/postfix.md state line and attribute limits, idle
closes and flow control; docs/configuration.md ``server.grace_s``;
docs/metrics.md the metric families. Each is exercised here on a real
socket, just inside and just past the bound.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastlookup.adapters import exim, postfix_policy, socketmap
from fastlookup.errors import ServiceUnavailable
from fastlookup.testing._proc import wait_until
from fastlookup.testing.ports import free_port
from fastlookup.upstream.memory import MemoryUpstream

from test_adapters import run_front, unix_exchange

REJECT = {"action": "reject", "smtp_code": 554, "text": "listed", "score": 1.0,
          "reasons": [{"check": "dnsbl", "zone": "bl.test", "detail": "127.0.0.2"}], "fail_open": False}
POLICY_ANSWER = b"action=554 5.7.1 listed\n\n"


class Stub:
    """A service double for the fronts: answers every ``check`` with REJECT (optionally held)."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls: list[dict] = []
        self.gate = gate
        self.config = SimpleNamespace(postfix=SimpleNamespace(policy="default"), policy={"default": None},
                                      server=SimpleNamespace(socket_mode="0660", socket_group="", grace_s=1.0))
        self.stats = None

    async def call(self, method: str, args: dict) -> dict:
        self.calls.append(args)
        if self.gate is not None:
            await self.gate.wait()
        return REJECT


async def _talk(path: str, data: bytes, until: bytes, count: int = 1, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(data)
    out = b""
    try:
        async with asyncio.timeout(timeout):
            while out.count(until) < count:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                out += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
    return out


# --- Exim: a line of 4096 bytes is answered, 4097 cut; an idle connection closed ---------------------


@pytest.mark.parametrize("length, answered", [(4096, True), (4097, False)])
def test_exim_line_limit_on_both_sides(tmp_path, length, answered):
    """An Exim request line of 4096 bytes is answered; one of 4097 bytes closes the connection unanswered."""
    head = b"ip=192.0.2.99 helo="
    line = head + b"a" * (length - len(head))
    assert len(line) == length
    out = run_front(tmp_path, exim, Stub(), lambda path, _: _talk(path, line + b"\n", b"\n"))
    assert out == (b"reject 554 5.7.1 listed\n" if answered else b"")


def test_exim_idle_connection_is_closed(tmp_path, monkeypatch):
    """An Exim connection that sends nothing is closed by the server after its idle timeout, unanswered."""
    monkeypatch.setattr(exim.EximConnection, "idle_timeout_s", 0.2)

    async def scenario(path, listener):
        reader, writer = await asyncio.open_unix_connection(path)
        async with asyncio.timeout(5):  # generous: the bound is the idle timeout, not this
            data = await reader.read()
        writer.close()
        return data

    service = Stub()
    assert run_front(tmp_path, exim, service, scenario) == b""
    assert service.calls == []


# --- Postfix policy: the line, attribute and partial-line limits on both sides --------------------------


def _attr_line(length: int) -> bytes:
    head = b"helo_name="
    return head + b"h" * (length - len(head))


@pytest.mark.parametrize(
    "request_, answered",
    [
        (b"client_address=192.0.2.99\n" + _attr_line(4096) + b"\n\n", True),
        (b"client_address=192.0.2.99\n" + _attr_line(4097) + b"\n\n", False),
        (b"client_address=192.0.2.99\n" + b"".join(b"a%d=b\n" % i for i in range(255)) + b"\n", True),  # 256
        (b"client_address=192.0.2.99\n" + b"".join(b"a%d=b\n" % i for i in range(256)) + b"\n", False),  # 257
    ],
    ids=["line-4096", "line-4097", "attributes-256", "attributes-257"],
)
def test_postfix_limits_on_both_sides(tmp_path, request_, answered):
    """A 4096-byte attribute line and 256 attributes are answered; 4097 bytes or 257 attributes cut the client off."""
    out = run_front(tmp_path, postfix_policy, Stub(), lambda path, _: _talk(path, request_, b"\n\n"))
    assert out == (POLICY_ANSWER if answered else b"")


@pytest.mark.parametrize("length, answered", [(4096, True), (4097, False)])
def test_postfix_partial_line_limit_on_both_sides(tmp_path, length, answered):
    """A partial line may grow to 4096 bytes and is answered when it ends; at 4097 the client is cut off at once."""

    async def scenario(path, listener):
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"client_address=192.0.2.99\n" + _attr_line(length))
        await writer.drain()
        # Client and front share this loop: step it until the front holds the partial line or cut us off.
        for _ in range(5000):
            conns = list(listener.connections)
            if reader.at_eof() or (conns and (conns[0].transport.is_closing() or len(conns[0].buffer) >= length)):
                break
            await asyncio.sleep(0.001)
        conns = list(listener.connections)
        cut = reader.at_eof() or not conns or conns[0].transport.is_closing()
        out = b""
        if not cut:
            writer.write(b"\n\n")
            async with asyncio.timeout(5):
                while out.count(b"\n\n") < 1:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    out += chunk
        writer.close()
        return cut, out

    cut, out = run_front(tmp_path, postfix_policy, Stub(), scenario)
    assert (cut, out) == ((False, POLICY_ANSWER) if answered else (True, b""))


# --- flow control: a client pipelining past max_queued is no longer read ------------------------------------


def test_postfix_client_pipelining_past_max_queued_is_paused_then_served_in_order(tmp_path):
    """Past max_queued pipelined requests the front stops reading that client; after the answers it resumes."""
    limit = postfix_policy.PolicyConnection.max_queued
    count = limit + 8

    async def scenario(path, listener):
        reader, writer = await asyncio.open_unix_connection(path)
        requests = b"".join(b"client_address=192.0.2.%d\n\n" % (i + 1) for i in range(count))
        writer.write(requests)
        await writer.drain()
        for _ in range(2000):  # until the front has parsed what it read
            conns = list(listener.connections)
            if conns and len(conns[0].queue) + len(service.calls) >= count:
                break
            await asyncio.sleep(0.001)
        (conn,) = listener.connections
        paused = (conn.paused, conn.transport.is_reading(), len(service.calls))
        gate.set()
        out = b""
        async with asyncio.timeout(10):
            while out.count(b"\n\n") < count:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                out += chunk
        resumed = conn.transport.is_reading()
        writer.close()
        return paused, out, resumed

    gate = asyncio.Event()
    service = Stub(gate)

    async def run(path, listener):
        return await scenario(path, listener)

    (is_paused, reading, asked), out, resumed = run_front(tmp_path, postfix_policy, service, run)
    assert (is_paused, reading, asked) == (True, False, 1)  # one answered at a time, the rest queued, reading paused
    assert out == POLICY_ANSWER * count and resumed is True
    assert [c["ip"] for c in service.calls] == [f"192.0.2.{i + 1}" for i in range(count)]


# --- server.grace_s: calls in flight finish within it, are cancelled after it ------------------------------


def _grace_service(fl_config, grace_s: float):
    from fastlookup.model import Answer
    from fastlookup.testing.service import ServiceThread

    upstream = MemoryUpstream({("1.2.0.192.in-addr.arpa", "PTR"): Answer("ok", ("held.example",), 300)}, hold=True)
    config = fl_config(server={"grace_s": grace_s})
    return ServiceThread(config, upstream=upstream).start(), upstream


@pytest.mark.parametrize("grace_s, answered", [(10.0, True), (0.0, False)])
def test_grace_s_lets_calls_in_flight_finish_then_cancels(fl_config, grace_s, answered):
    """At stop, a call in flight is answered when it ends within server.grace_s; with no grace it is cut off."""
    svc, upstream = _grace_service(fl_config, grace_s)
    result: dict = {}

    def call():
        with svc.client(timeout=20) as client:
            try:
                result["answer"] = client.ptr("192.0.2.1")
            except ServiceUnavailable as exc:
                result["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: svc.run(lambda: len(upstream.calls)) >= 1, timeout_s=10, what="the call to reach upstream")
    stopper = threading.Thread(target=svc.stop)
    loop = svc.loop
    stopper.start()
    # The stop has begun once the socket file is gone; then the held answer is let through.
    wait_until(lambda: not os.path.exists(svc.socket), timeout_s=10, what="the stop to begin")
    if answered:
        loop.call_soon_threadsafe(upstream.release)
    caller.join(30)
    stopper.join(30)
    assert not caller.is_alive() and not stopper.is_alive()
    if answered:
        assert result.get("answer", {}).get("records") == ["held.example"], result
    else:
        assert "answer" not in result and "error" in result, result


# --- the fronts answer, and their sockets are removed at stop ------------------------------------------------


def test_every_front_answers_and_its_socket_is_removed_at_stop(make_service, short_tmp):
    """The policy, socketmap and Exim fronts each answer a real request; at stop every socket file is gone."""
    paths = {name: f"{short_tmp}/{name}.sock" for name in ("policy", "socketmap", "exim")}
    svc = make_service(postfix={"listen": f"unix:{paths['policy']}", "socketmap": f"unix:{paths['socketmap']}",
                                "exim": f"unix:{paths['exim']}"})
    answers = {
        "policy": unix_exchange(paths["policy"], b"client_address=192.0.2.99\n\n", b"\n\n"),
        "socketmap": unix_exchange(paths["socketmap"], socketmap.netstring(b"default 192.0.2.99"), b","),
        "exim": unix_exchange(paths["exim"], b"ip=192.0.2.99\n", b"\n"),
    }
    assert answers["policy"].startswith(b"action=554 ") and answers["policy"].endswith(b"\n\n")
    assert answers["socketmap"].split(b":", 1)[1].startswith(b"OK 554 ")
    assert answers["exim"].startswith(b"reject 554 ")
    svc.stop()
    assert [name for name, path in paths.items() if os.path.exists(path)] == []
    for path in paths.values():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, pytest.raises(OSError):
            sock.connect(path)


# --- every documented metric family is served with Redis and the fronts on ------------------------------------


def _documented_families() -> set[str]:
    import re

    docs = (os.path.dirname(__file__) + "/../docs/metrics.md")
    with open(docs, encoding="utf-8") as fh:
        names = set(re.findall(r"^\| `(fastlookup_[a-z0-9_]+)`", fh.read(), re.M))
    return {n[: -len("_total")] if n.endswith("_total") else n for n in names}


#: Families this traffic must produce with Redis and the policy front on (a series appears once counted).
REDIS_AND_FRONT_FAMILIES = {
    "fastlookup_redis_keys_read", "fastlookup_redis_misses", "fastlookup_redis_round_trips", "fastlookup_redis_writes",
    "fastlookup_redis_breaker_open", "fastlookup_redis_round_trip_seconds", "fastlookup_fleet_lock_won",
    "fastlookup_verdicts", "fastlookup_lookups", "fastlookup_front_cut_off", "fastlookup_connections",
    "fastlookup_connections_accepted", "fastlookup_in_flight", "fastlookup_memory_entries", "fastlookup_build_info",
}


@pytest.mark.slow
def test_documented_metric_families_are_served_with_redis_and_fronts(make_service, short_tmp, redis_server):
    """With Redis, a front and metrics on, /metrics serves the Redis, fleet and front families, each documented."""
    port = free_port("tcp")
    svc = make_service(
        redis={"url": redis_server.url, "timeout_s": 1.0},
        metrics={"listen": f"127.0.0.1:{port}"},
        postfix={"listen": f"unix:{short_tmp}/policy.sock"},
    )
    with svc.client(timeout=5) as client:
        client.check("192.0.2.99")
    assert unix_exchange(f"{short_tmp}/policy.sock", b"client_address=192.0.2.1\n\n", b"\n\n").startswith(b"action=")
    # A client past the line limit is cut off: the front's own counter.
    assert unix_exchange(f"{short_tmp}/policy.sock", b"x" * 5000 + b"\n\n", b"\n\n") == b""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode("utf-8")
    served = {f.name for f in text_string_to_metric_families(body) if f.name.startswith("fastlookup_")}
    documented = _documented_families()
    assert len(documented) >= 30  # the tables were read
    assert sorted(REDIS_AND_FRONT_FAMILIES - served) == []
    assert sorted(served - documented) == []
