"""The sync client: import weight, socket discovery, failing open, reconnecting, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import fastlookup
from fastlookup import client as client_module
from fastlookup import errors
from fastlookup.client import DEFAULT_SOCKET, Client, socket_path
from fastlookup.testing._proc import wait_until
from fastlookup.testing.service import ServiceThread

HEAVY = ("dns", "redis", "uvloop", "asyncio", "prometheus_client", "click", "idna", "hiredis", "typing")


def test_client_import_loads_no_heavy_module():
    """`from fastlookup import Client` loads only the stdlib, msgpack and the light fastlookup modules."""
    code = (
        "import sys, json\n"
        "from fastlookup import Client\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    modules = json.loads(out.stdout)
    heavy = [m for m in modules if m.split(".")[0] in HEAVY]
    assert heavy == []
    assert sorted(m for m in modules if m.startswith("fastlookup")) == ["fastlookup", "fastlookup.client", "fastlookup.errors"]


def test_client_framing_constants_match_wire():
    """The client's copy of the framing constants equals fastlookup.wire's."""
    from fastlookup import wire

    assert (client_module.REQUEST, client_module.RESPONSE, client_module.MAX_MSGID) == (wire.REQUEST, wire.RESPONSE, wire.MAX_MSGID)


def test_client_import_time_is_reported():
    """`python -X importtime` of the client import runs; the fastlookup part is printed for the record."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from fastlookup import Client"],
        capture_output=True, text=True, check=True, env=_env(),
    )
    cumulative = {}
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, name = line.split("|")
            if cum.strip().isdigit():
                cumulative[name.strip()] = int(cum)
    assert "fastlookup.client" in cumulative, out.stderr[-2000:]
    heavy = sorted(n for n in cumulative if n.split(".")[0] in ("dns", "redis", "uvloop", "prometheus_client", "asyncio"))
    assert heavy == []  # the client's import chain, as timed, loads none of the service's libraries
    print(f"\nimport fastlookup: {cumulative.get('fastlookup', 0)} us, fastlookup.client (msgpack included): {cumulative['fastlookup.client']} us")


def test_public_api_is_stable():
    """The public names of the package and the client module do not drift unnoticed."""
    assert fastlookup.__all__ == ["__version__", "Client", "errors"]
    assert client_module.__all__ == ["Client", "socket_path", "DEFAULT_SOCKET", "ENV_SOCKET", "fail_open_verdict"]
    assert fastlookup.Client is Client


@pytest.mark.parametrize(
    "arg, env, expected",
    [
        ("/x/arg.sock", "/x/env.sock", "/x/arg.sock"),
        (None, "/x/env.sock", "/x/env.sock"),
        (None, None, DEFAULT_SOCKET),
        (None, "", DEFAULT_SOCKET),
    ],
)
def test_socket_path_precedence(monkeypatch, arg, env, expected):
    """The socket is the argument, else $FASTLOOKUP_SOCKET, else the default path."""
    if env is None:
        monkeypatch.delenv("FASTLOOKUP_SOCKET", raising=False)
    else:
        monkeypatch.setenv("FASTLOOKUP_SOCKET", env)
    assert socket_path(arg) == expected
    assert Client(arg).path == expected


def test_timeout_must_be_positive():
    """A zero or negative timeout is misuse: ValueError naming the argument."""
    with pytest.raises(ValueError, match="timeout"):
        Client("/x.sock", timeout=0)


# --- a service that is not there ------------------------------------------------------------


def _dead_no_file(tmp: str):
    return f"{tmp}/missing.sock", None


def _dead_stale_file(tmp: str):
    path = f"{tmp}/stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    return path, None


def _dead_silent(tmp: str):
    """Accepts connections (the backlog does) and never answers."""
    path = f"{tmp}/silent.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    return path, sock


def _dead_hangs_up(tmp: str):
    """Accepts and closes every connection at once."""
    path = f"{tmp}/hangup.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return path, sock


DEAD = [_dead_no_file, _dead_stale_file, _dead_silent, _dead_hangs_up]


@pytest.mark.parametrize("dead", DEAD, ids=[d.__name__ for d in DEAD])
def test_dead_service_check_fails_open_within_its_timeout(short_tmp, dead):
    """check() returns an accept verdict with fail_open when the service is gone or mute, within the timeout."""
    path, keep = dead(short_tmp)
    try:
        client = Client(path, timeout=0.3)
        t0 = time.monotonic()
        verdict = client.check("192.0.2.1")
        elapsed = time.monotonic() - t0
        assert elapsed < 3.0  # generous: without the timeout a mute service holds the call forever
        assert verdict["action"] == "accept" and verdict["fail_open"] is True
        assert verdict["smtp_code"] is None and verdict["text"] == "" and verdict["score"] == 0.0
        # elapsed_ms is the call's own time: within what the caller saw, and the whole timeout when it waited.
        assert verdict["reasons"] == [] and verdict["elapsed_ms"] <= elapsed * 1000.0 + 0.001
        if dead is _dead_silent:
            assert verdict["elapsed_ms"] >= 300.0
    finally:
        if keep is not None:
            keep.close()


@pytest.mark.parametrize("dead", DEAD, ids=[d.__name__ for d in DEAD])
@pytest.mark.parametrize("method, args", [("ping", ()), ("a", ("host.example.test",)), ("dnsbl", ("192.0.2.1",)), ("stats", ())])
def test_dead_service_other_methods_raise_service_unavailable(short_tmp, dead, method, args):
    """Methods other than check raise ServiceUnavailable, with the socket path in the message."""
    path, keep = dead(short_tmp)
    try:
        with pytest.raises(errors.ServiceUnavailable, match="fastlookup at"):
            getattr(Client(path, timeout=0.3), method)(*args)
    finally:
        if keep is not None:
            keep.close()


def test_fail_open_false_raises_for_check(short_tmp):
    """With fail_open=False, check raises ServiceUnavailable like every other method."""
    with pytest.raises(errors.ServiceUnavailable):
        Client(f"{short_tmp}/missing.sock", timeout=0.2, fail_open=False).check("192.0.2.1")


# --- a live service ------------------------------------------------------------------------------


def test_wire_errors_raise_their_own_class(fl_client):
    """An error answer raises the RpcError subclass of its code."""
    with pytest.raises(errors.InvalidArgument, match="ip"):
        fl_client.ptr("not-an-ip")
    with pytest.raises(errors.UnknownMethod):
        fl_client.call("nosuch")
    with pytest.raises(errors.BadRequest):
        fl_client.call("a", {"name": 5})
    with pytest.raises(errors.InvalidArgument):
        fl_client.check("192.0.2.1", policy="nosuch")  # misuse is raised, never failed open
    assert fl_client.ping()["ok"] is True


def test_pipeline_raises_first_error_or_returns_it_in_place(fl_client):
    """pipeline raises the first error after reading every answer, or puts errors in place on request."""
    calls = [("ping",), ("ptr", {"ip": "bad"}), ("a", {"name": "host.example.test"})]
    with pytest.raises(errors.InvalidArgument):
        fl_client.pipeline(calls)
    out = fl_client.pipeline(calls, return_exceptions=True)
    assert out[0]["ok"] and isinstance(out[1], errors.InvalidArgument) and out[2]["records"] == ["192.0.2.1"]
    assert fl_client.pipeline([]) == []


def test_msgid_wraps_around(fl_client):
    """msgids wrap from 2**32-1 back to 0 and answers still match."""
    fl_client._msgid = 2**32 - 2
    assert [fl_client.ping()["ok"] for _ in range(4)] == [True] * 4
    assert fl_client._msgid == 2


def test_per_call_timeout_then_recovers(make_service, dns_server):
    """A call over its own timeout raises ServiceUnavailable in time; the next call works."""
    dns_server.set_faults("slow.example.test", delay_s=1.0)
    svc = make_service()
    with svc.client(timeout=5.0) as client:
        t0 = time.monotonic()
        with pytest.raises(errors.ServiceUnavailable, match="no answer within"):
            client.a("slow.example.test", timeout=0.2)
        # Only the client's own timer raises this (the service would answer, at worst "timeout").
        assert time.monotonic() - t0 < 5.0
        assert client.a("host.example.test")["records"] == ["192.0.2.1"]


def test_check_fails_open_when_the_service_is_slow(make_service, dns_server):
    """check fails open when the service does not answer within the client's timeout."""
    dns_server.set_faults(delay_s=1.0)  # every query is slow
    svc = make_service()
    with svc.client(timeout=0.2) as client:
        verdict = client.check("192.0.2.1")
    assert verdict["fail_open"] is True and verdict["action"] == "accept"


def test_check_fails_open_when_the_service_is_overloaded(make_service, dns_server):
    """check fails open on an overloaded answer, instead of raising into the MTA."""
    dns_server.set_faults("slow5.example.test", delay_s=0.5)
    svc = make_service(server={"max_in_flight": 1})
    with svc.client(timeout=2.0) as busy, svc.client(timeout=2.0) as client:
        blocker = threading.Thread(target=busy.a, args=("slow5.example.test",))
        blocker.start()
        wait_until(lambda: dns_server.count("slow5.example.test") >= 1, timeout_s=5, what="the blocking miss")
        verdict = client.check("192.0.2.99")  # listed: a real answer would be a reject
        blocker.join()
    assert verdict["action"] == "accept" and verdict["fail_open"] is True


def test_client_reconnects_after_the_service_restarts(fl_config, routed_upstream):
    """After a restart on the same socket, the next call retries once on a new connection and succeeds."""
    config = fl_config()
    client = Client(config.server.socket, timeout=2.0)
    with ServiceThread(config, upstream=routed_upstream()):
        assert client.ping()["ok"] is True
    with pytest.raises(errors.ServiceUnavailable):
        client.ping()
    with ServiceThread(config, upstream=routed_upstream()):
        assert client.ping()["ok"] is True
        assert client.a("host.example.test")["records"] == ["192.0.2.1"]
    client.close()


def test_client_survives_a_restart_while_connected(fl_config, routed_upstream):
    """A client whose connection died with the old service gets an answer from the new one."""
    config = fl_config()
    client = Client(config.server.socket, timeout=2.0)
    svc = ServiceThread(config, upstream=routed_upstream()).start()
    client.ping()
    svc.stop()
    svc2 = ServiceThread(config, upstream=routed_upstream()).start()
    try:
        assert client.ping()["ok"] is True  # the old connection is broken: one retry on a new one
    finally:
        svc2.stop()
        client.close()


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTLOOKUP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env
