"""The in-service fronts: Postfix policy, socketmap and Exim line protocols, pure and on real sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from types import SimpleNamespace

import pytest

from fastlookup.adapters import exim, postfix_policy, socketmap
from fastlookup.adapters.connection import Violation
from fastlookup.adapters.listen import parse_listen
from fastlookup.adapters.replies import smtp_reply, tag_header
from fastlookup.errors import ConfigError, InternalError, InvalidArgument

REJECT = {"action": "reject", "smtp_code": 554, "text": "192.0.2.99 listed on bl.test", "score": 1.0,
          "reasons": [{"check": "dnsbl", "zone": "bl.test", "detail": "127.0.0.2"}], "fail_open": False}
DEFER_PTR = {"action": "defer", "smtp_code": 451, "text": "no PTR", "reasons": [{"check": "ptr", "zone": None, "detail": "no PTR record"}]}
NULL_MX = {"action": "reject", "smtp_code": 550, "text": "Sender address rejected",
           "reasons": [{"check": "sender_domain", "zone": "x.example", "detail": "null MX"}]}
NO_DOMAIN = {"action": "defer", "smtp_code": 450, "text": "Sender address rejected",
             "reasons": [{"check": "sender_domain", "zone": "x.example", "detail": "domain not found"}]}
TAG = {"action": "accept", "smtp_code": None, "text": "listed on bl.test", "score": 1.0, "tag": True,
       "reasons": [{"check": "dnsbl", "zone": "bl.test", "detail": "127.0.0.2"}]}
ACCEPT = {"action": "accept", "smtp_code": None, "text": "", "score": 0.0, "reasons": [], "fail_open": False}


# --- pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, host, port",
    [
        ("unix:/run/fastlookup/policy.sock", "unix", "/run/fastlookup/policy.sock", None),
        ("/run/x.sock", "unix", "/run/x.sock", None),
        ("inet:127.0.0.1:10040", "inet", "127.0.0.1", 10040),
        ("127.0.0.1:10040", "inet", "127.0.0.1", 10040),
        ("inet:[::1]:10040", "inet", "::1", 10040),
        ("localhost:0", "inet", "localhost", 0),
    ],
)
def test_listen_addresses(text, kind, host, port):
    """Listen addresses are written as in Postfix: unix:/path, inet:host:port, host:port, [v6]:port."""
    address = parse_listen(text)
    assert (address.kind, address.host, address.port) == (kind, host, port)


@pytest.mark.parametrize("text", ["", "unix:relative.sock", "inet:127.0.0.1", "127.0.0.1:99999", "host:port", ":25"])
def test_bad_listen_addresses_name_the_key(text):
    """A bad address fails at start with the config key in the message."""
    with pytest.raises(ConfigError, match="postfix.listen"):
        parse_listen(text, "postfix.listen")


@pytest.mark.parametrize(
    "verdict, reply",
    [
        (REJECT, (554, "5.7.1", "192.0.2.99 listed on bl.test")),
        (DEFER_PTR, (451, "4.7.1", "no PTR")),
        (NULL_MX, (550, "5.7.27", "Sender address rejected")),
        (NO_DOMAIN, (450, "4.1.8", "Sender address rejected")),
        ({**REJECT, "smtp_code": 451}, (554, "5.7.1", "192.0.2.99 listed on bl.test")),  # class must match
        ({**REJECT, "text": "a\r\nb", "reasons": []}, (554, "5.7.1", "a b")),
        ({**REJECT, "text": ""}, (554, "5.7.1", "Access denied")),
        (ACCEPT, None),
        (TAG, None),
    ],
)
def test_smtp_reply_parts(verdict, reply):
    """Reply code, RFC 3463 status by the deciding reason, and a one-line text."""
    assert smtp_reply(verdict) == reply


def test_tag_header():
    """A tag verdict becomes one X-Fastlookup header line with score, text and reasons."""
    assert tag_header(TAG) == "X-Fastlookup: score=1.0; listed on bl.test; dnsbl bl.test 127.0.0.2"
    assert tag_header(ACCEPT) is None and tag_header(REJECT) is None


@pytest.mark.parametrize(
    "verdict, action",
    [
        (REJECT, "554 5.7.1 192.0.2.99 listed on bl.test"),
        (DEFER_PTR, "451 4.7.1 no PTR"),
        (TAG, "PREPEND X-Fastlookup: score=1.0; listed on bl.test; dnsbl bl.test 127.0.0.2"),
        (ACCEPT, "DUNNO"),
    ],
)
def test_postfix_actions(verdict, action):
    """Verdicts map to Postfix access(5) actions."""
    assert postfix_policy.action_for(verdict) == action


def test_postfix_attributes_parsed_unknown_ignored():
    """Wanted attributes are read, unknown ones and lines without '=' ignored, values may hold '='."""
    lines = [b"request=smtpd_access_policy", b"client_address=192.0.2.1", b"ccert_subject=x", b"junk",
             b"sender=a=b@example.test", b"HELO_NAME=mx.example"]
    assert postfix_policy.parse_block(lines) == {
        "request": "smtpd_access_policy", "client_address": "192.0.2.1", "sender": "a=b@example.test",
        "helo_name": "mx.example",
    }


@pytest.mark.parametrize(
    "data, requests, rest",
    [
        (b"9:a 1.2.3.4,", [b"a 1.2.3.4"], b""),
        (b"9:a 1.2.3.4,3:b c,1", [b"a 1.2.3.4", b"b c"], b"1"),
        (b"9:a 1.2", [], b"9:a 1.2"),
        (b"0:,", [b""], b""),
    ],
)
def test_netstrings(data, requests, rest):
    """Netstrings are cut from the buffer as they complete."""
    buffer = bytearray(data)
    assert socketmap.parse_netstrings(buffer) == requests
    assert bytes(buffer) == rest


@pytest.mark.parametrize("data", [b"x:abc,", b"3:abcd", b"99999:", b"01:a,", b"12345678901", b"-1:a,"])
def test_bad_netstrings_are_violations(data):
    """A malformed or oversized netstring is a protocol violation."""
    with pytest.raises(Violation):
        socketmap.parse_netstrings(bytearray(data))


@pytest.mark.parametrize(
    "verdict, reply",
    [
        (REJECT, b"41:OK 554 5.7.1 192.0.2.99 listed on bl.test,"),
        (DEFER_PTR, b"19:OK 451 4.7.1 no PTR,"),
        (ACCEPT, b"9:NOTFOUND ,"),
    ],
)
def test_socketmap_replies(verdict, reply):
    """Socketmap replies are OK with an access(5) action, or NOTFOUND."""
    assert socketmap.reply_for(verdict) == reply


@pytest.mark.parametrize(
    "line, args",
    [
        ("ip=192.0.2.1 helo=mx.example sender=a@b.example", {"ip": "192.0.2.1", "helo": "mx.example", "sender": "a@b.example"}),
        ('ip=192.0.2.1 helo="my host" sender="\\"q\\"@x" junk=1 word', {"ip": "192.0.2.1", "helo": "my host", "sender": '"q"@x'}),
        ('ip=192.0.2.1 helo="a\\nb" recipient= policy=strict', {"ip": "192.0.2.1", "helo": "a\nb", "recipient": "", "policy": "strict"}),
        ("  IP=::1\t", {"ip": "::1"}),
        ("", {}),
    ],
)
def test_exim_request_line(line, args):
    """The Exim line is key=value pairs; values may be quoted as ${quote:} writes them."""
    assert exim.parse_line(line) == args


@pytest.mark.parametrize(
    "verdict, answer",
    [
        (REJECT, b"reject 554 5.7.1 192.0.2.99 listed on bl.test\n"),
        (DEFER_PTR, b"defer 451 4.7.1 no PTR\n"),
        (TAG, b"tag score=1.0; listed on bl.test; dnsbl bl.test 127.0.0.2\n"),
        (ACCEPT, b"accept\n"),
    ],
)
def test_exim_answers(verdict, answer):
    """The Exim answer is one line: accept, tag, reject or defer with code, status and text."""
    assert exim.answer_for(verdict) == answer


# --- connections, with a stand-in service -----------------------------------------------


class StubService:
    """Answers ``check`` from a function of the args; records the calls."""

    def __init__(self, answer=lambda args: ACCEPT, policies=("default", "strict")) -> None:
        self.answer = answer
        self.calls: list[dict] = []
        self.config = SimpleNamespace(
            postfix=SimpleNamespace(policy="default"),
            policy={p: None for p in policies},
            server=SimpleNamespace(socket_mode="0660", socket_group="", grace_s=1.0),
        )
        self.stats = None

    async def call(self, method: str, args: dict) -> dict:
        assert method == "check"
        self.calls.append(args)
        result = self.answer(args)
        if isinstance(result, BaseException):
            raise result
        if asyncio.iscoroutine(result):
            return await result
        return result


async def exchange(path: str, data: bytes, *, until: bytes | None = None, count: int = 1, timeout: float = 3.0) -> bytes:
    """Send ``data`` on a new connection and read until ``until`` was seen ``count`` times or the server closes."""
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(data)
    out = b""
    try:
        async with asyncio.timeout(timeout):
            while until is None or out.count(until) < count:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                out += chunk
    finally:
        writer.close()
    return out


def run_front(tmp_path, module, service, scenario):
    """Serve ``module``'s front for ``service`` on a unix socket and run ``scenario(path)``."""
    path = str(tmp_path / "front.sock")

    async def main():
        listener = await module.serve("unix:" + path, service)
        try:
            return await scenario(path, listener)
        finally:
            listener.close()
            await listener.wait_closed()

    return asyncio.run(main())


POLICY_REQ = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.99\nhelo_name=mx.example\n" \
             b"sender=a@b.example\nrecipient=c@d.example\ninstance=1.2.3\n\n"


def test_policy_requests_many_per_connection_in_order(tmp_path):
    """Many requests on one connection are answered in order; attributes map to check arguments."""
    answers = iter([REJECT, DEFER_PTR, ACCEPT])
    service = StubService(lambda args: next(answers))

    async def scenario(path, listener):
        return await exchange(path, POLICY_REQ * 3, until=b"\n\n", count=3)

    out = run_front(tmp_path, postfix_policy, service, scenario)
    assert out == (b"action=554 5.7.1 192.0.2.99 listed on bl.test\n\n"
                   b"action=451 4.7.1 no PTR\n\naction=DUNNO\n\n")
    assert service.calls[0] == {"ip": "192.0.2.99", "policy": "default", "helo": "mx.example", "sender": "a@b.example",
                                "recipient": "c@d.example"}


@pytest.mark.parametrize(
    "request_, answer, called",
    [
        (b"request=smtpd_access_policy\nclient_address=\n\n", b"action=DUNNO\n\n", False),  # local submission
        (b"request=smtpd_access_policy\nclient_address=unknown\n\n", b"action=DUNNO\n\n", False),
        (b"request=junk\nclient_address=192.0.2.1\n\n", b"action=DUNNO\n\n", False),
        (b"\n", b"action=DUNNO\n\n", False),
    ],
)
def test_policy_requests_without_a_client_are_dunno(tmp_path, request_, answer, called):
    """Requests with no client address (or not an access policy request) get DUNNO without a check."""
    service = StubService()
    out = run_front(tmp_path, postfix_policy, service, lambda path, _: exchange(path, request_, until=b"\n\n"))
    assert out == answer and bool(service.calls) is called


@pytest.mark.parametrize(
    "failure",
    [InvalidArgument("ip: 'x' is not an IPv4 or IPv6 address"), InternalError("boom"), RuntimeError("bug"), ConnectionError()],
)
def test_policy_answers_dunno_when_anything_inside_fails(tmp_path, failure):
    """Any failure inside answers DUNNO, never an error, and the connection keeps serving."""
    answers = iter([failure, REJECT])
    service = StubService(lambda args: next(answers))
    out = run_front(tmp_path, postfix_policy, service, lambda path, _: exchange(path, POLICY_REQ * 2, until=b"\n\n", count=2))
    assert out == b"action=DUNNO\n\naction=554 5.7.1 192.0.2.99 listed on bl.test\n\n"


def test_policy_context_picks_a_known_policy(tmp_path):
    """check_policy_service's policy_context selects a configured policy; an unknown one falls back."""
    service = StubService()
    data = (b"client_address=192.0.2.1\npolicy_context=strict\n\n"
            b"client_address=192.0.2.1\npolicy_context=nope\n\n")
    run_front(tmp_path, postfix_policy, service, lambda path, _: exchange(path, data, until=b"\n\n", count=2))
    assert [c["policy"] for c in service.calls] == ["strict", "default"]


def test_tag_prepends_once_per_message(tmp_path):
    """A tag verdict prepends the header once per message (instance), not once per recipient."""
    service = StubService(lambda args: TAG)
    other = POLICY_REQ.replace(b"instance=1.2.3", b"instance=1.2.4")
    out = run_front(tmp_path, postfix_policy, service,
                    lambda path, _: exchange(path, POLICY_REQ * 2 + other, until=b"\n\n", count=3))
    header = b"action=PREPEND X-Fastlookup: score=1.0; listed on bl.test; dnsbl bl.test 127.0.0.2\n\n"
    assert out == header + b"action=DUNNO\n\n" + header


@pytest.mark.parametrize(
    "abuse",
    [
        b"client_address=" + b"x" * (1 << 20) + b"\n\n",  # a 1 MB line
        b"client_address=192.0.2.1" + b"y" * 10000,  # no newline at all
        b"".join(b"a%d=b\n" % i for i in range(5000)) + b"\n",  # thousands of attributes
    ],
)
def test_abusive_policy_client_is_cut_off_and_others_unaffected(tmp_path, abuse):
    """An abusive client is disconnected without an answer while a good client is served meanwhile."""
    service = StubService(lambda args: REJECT)

    async def scenario(path, listener):
        reader, writer = await asyncio.open_unix_connection(path)
        good = asyncio.ensure_future(exchange(path, POLICY_REQ, until=b"\n\n"))
        try:
            writer.write(abuse)
            await writer.drain()
        except ConnectionError:
            pass
        try:
            async with asyncio.timeout(3):
                got = await reader.read()  # EOF: cut off
        except ConnectionError:
            got = b""  # reset: cut off too
        writer.close()
        return got, await good

    got, good = run_front(tmp_path, postfix_policy, service, scenario)
    assert got == b""
    assert good == b"action=554 5.7.1 192.0.2.99 listed on bl.test\n\n"


def test_idle_policy_client_is_closed(tmp_path, monkeypatch):
    """A connection idle past the idle timeout is closed by the server."""
    monkeypatch.setattr(postfix_policy.PolicyConnection, "idle_timeout_s", 0.2)

    async def scenario(path, listener):
        reader, writer = await asyncio.open_unix_connection(path)
        start = time.monotonic()
        async with asyncio.timeout(3):
            assert await reader.read() == b""
        writer.close()
        return time.monotonic() - start

    assert 0.15 < run_front(tmp_path, postfix_policy, StubService(), scenario) < 2.5


def test_slow_check_is_not_idle(tmp_path, monkeypatch):
    """A request still being answered keeps its connection open past the idle timeout."""
    monkeypatch.setattr(postfix_policy.PolicyConnection, "idle_timeout_s", 0.1)

    async def slow(args):
        await asyncio.sleep(0.3)  # a check that waits on upstream
        return REJECT

    service = StubService(lambda args: slow(args))
    out = run_front(tmp_path, postfix_policy, service, lambda path, _: exchange(path, POLICY_REQ, until=b"\n\n"))
    assert out.startswith(b"action=554")


def test_unix_socket_mode_and_stale_file(tmp_path):
    """The socket gets mode 0660; a stale socket file is replaced, a live one refused."""
    path = str(tmp_path / "p.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens

    async def main():
        listener = await postfix_policy.serve("unix:" + path, StubService())
        try:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
            with pytest.raises(ConfigError, match="already serving"):
                await postfix_policy.serve("unix:" + path, StubService())
        finally:
            listener.close()
            await listener.wait_closed()
        assert not os.path.exists(path)

    asyncio.run(main())


def test_close_lets_the_request_in_progress_finish(tmp_path):
    """Stopping the listener answers the request being checked, then closes."""
    async def main():
        gate = asyncio.Event()
        begun = asyncio.Event()

        async def slow(args):
            begun.set()
            await gate.wait()
            return REJECT

        path = str(tmp_path / "p.sock")
        listener = await postfix_policy.serve("unix:" + path, StubService(lambda a: slow(a)))
        answer = asyncio.ensure_future(exchange(path, POLICY_REQ, until=b"\n\n"))
        await begun.wait()
        listener.close()
        asyncio.get_running_loop().call_later(0.1, gate.set)
        await listener.wait_closed()
        return await answer

    assert asyncio.run(main()) == b"action=554 5.7.1 192.0.2.99 listed on bl.test\n\n"


@pytest.mark.parametrize(
    "data, reply",
    [
        (b"default 192.0.2.99", b"OK 554 5.7.1 192.0.2.99 listed on bl.test"),
        (b"default host.example.test", b"NOTFOUND "),  # Postfix also asks the name: not ours
        (b"default 192.0.2", b"NOTFOUND "),  # and the address with octets cut off
        (b"default", b"PERM expected 'NAME KEY'"),
    ],
)
def test_socketmap_over_a_socket(tmp_path, data, reply):
    """The socketmap front checks full IP keys only and answers netstrings."""
    service = StubService(lambda args: REJECT)
    ns = socketmap.netstring
    assert run_front(tmp_path, socketmap, service, lambda path, _: exchange(path, ns(data), until=b",")) == ns(reply)


def test_socketmap_fails_open_and_garbage_is_cut_off(tmp_path):
    """A failing check is NOTFOUND; bytes that are not netstrings close the connection."""
    service = StubService(lambda args: InternalError("boom"))

    async def scenario(path, listener):
        first = await exchange(path, b"18:default 192.0.2.99,", until=b",")
        garbage = await exchange(path, b"GET / HTTP/1.0\r\n\r\n")
        return first, garbage

    assert run_front(tmp_path, socketmap, service, scenario) == (b"9:NOTFOUND ,", b"")


@pytest.mark.parametrize(
    "data, answer, args",
    [
        (b"ip=192.0.2.99 helo=mx.example sender=a@b.example\n", b"reject 554 5.7.1 192.0.2.99 listed on bl.test\n",
         {"ip": "192.0.2.99", "helo": "mx.example", "sender": "a@b.example"}),
        (b"ip=192.0.2.99 sender= policy=strict", b"reject 554 5.7.1 192.0.2.99 listed on bl.test\n",  # half-close, no LF
         {"ip": "192.0.2.99", "policy": "strict"}),
        (b"ip= helo=x\n", b"accept\n", None),
    ],
)
def test_exim_line_over_a_socket(tmp_path, data, answer, args):
    """Exim's readsocket gets one answer line and the connection closes."""
    service = StubService(lambda a: REJECT)

    async def scenario(path, listener):
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(data)
        writer.write_eof()  # Exim shuts down its write side after the request
        async with asyncio.timeout(3):
            out = await reader.read()
        writer.close()
        return out

    assert run_front(tmp_path, exim, service, scenario) == answer
    assert service.calls == ([args] if args else [])


def test_exim_fails_open(tmp_path):
    """When the check fails the Exim front answers accept."""
    service = StubService(lambda a: RuntimeError("bug"))
    out = run_front(tmp_path, exim, service, lambda path, _: exchange(path, b"ip=192.0.2.1\n"))
    assert out == b"accept\n"


# --- against the real service over rbldnsd and the test DNS server ----------------------------------


@pytest.fixture
def live(make_service, short_tmp):
    """A real service whose lists are on rbldnsd and whose PTRs/MX are on the test DNS server."""
    thread = make_service(
        postfix={"listen": f"unix:{short_tmp}/policy.sock", "socketmap": f"unix:{short_tmp}/socketmap.sock",
                 "exim": f"unix:{short_tmp}/exim.sock"},
        rhsbl={"dbl.test": {"targets": ["helo", "sender"]}},
        policy={
            "default": {"allow": ["127.0.0.0/8"], "dnsbl": ["bl.test", "errorcode.test"], "rhsbl": ["dbl.test"],
                        "reject_text": "$ip listed on $zone: $txt"},
            "strict": {"allow": [], "require_fcrdns": "defer", "sender_domain_exists": "reject"},
        },
    )
    return SimpleNamespace(dir=short_tmp, thread=thread)


def unix_exchange(path: str, data: bytes, until: bytes, timeout: float = 5.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(data)
        out = b""
        while until not in out:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


@pytest.mark.parametrize(
    "attrs, action",
    [
        (b"client_address=192.0.2.99\nhelo_name=mx.example.test\n",
         b"action=554 5.7.1 192.0.2.99 listed on bl.test: Listed: see https://bl.test/192.0.2.99"),
        (b"client_address=198.51.100.7\n", b"action=554 5.7.1 198.51.100.7 listed on bl.test: Listed range 198.51.100.7"),
        (b"client_address=192.0.2.1\nsender=a@spam.example\n", b"action=554 5.7.1 192.0.2.1 listed on dbl.test: Spam domain"),
        (b"client_address=192.0.2.1\nhelo_name=x.spammy.example\n",
         b"action=554 5.7.1 192.0.2.1 listed on dbl.test: Spammy subdomain"),
        (b"client_address=192.0.2.1\nhelo_name=[192.0.2.1]\nsender=a@example.test\n", b"action=DUNNO"),
        (b"client_address=127.0.0.2\n", b"action=DUNNO"),  # allowed network: listed 127.0.0.2 never looked up
        (b"client_address=2001:db8:bad::1\n", b"action=554 5.7.1 2001:db8:bad::1 listed on bl.test: Listed v6 2001:db8:bad::1"),
        (b"client_address=192.0.2.66\npolicy_context=strict\n",
         b"action=450 4.7.25 cannot find your hostname, [192.0.2.66]"),  # forged PTR; Postfix adds its prefix
        (b"client_address=192.0.2.1\npolicy_context=strict\nsender=a@nullmx.example.test\n",
         b"action=554 5.7.27 Domain not found"),
        (b"client_address=192.0.2.1\npolicy_context=strict\nsender=a@example.test\n", b"action=DUNNO"),
    ],
)
def test_postfix_policy_against_real_lists(live, attrs, action):
    """Real lookups through the policy front: listings, RHSBL targets, allow networks, FCrDNS, null MX."""
    request = b"request=smtpd_access_policy\nprotocol_state=RCPT\n" + attrs + b"\n"
    out = unix_exchange(f"{live.dir}/policy.sock", request, b"\n\n")
    assert out == action + b"\n\n"


def test_list_error_codes_never_reject_through_the_front(live):
    """errorcode.test answers 127.255.255.254 for everything: the client is not rejected for it."""
    out = unix_exchange(f"{live.dir}/policy.sock", b"client_address=192.0.2.1\n\n", b"\n\n")
    assert out == b"action=DUNNO\n\n"
    verdict = live.thread.call("check", {"ip": "192.0.2.1"})
    assert verdict["fail_open"] is True
    assert {"check": "dnsbl", "zone": "errorcode.test", "detail": "skipped: list_error"} in verdict["reasons"]


def test_socketmap_and_exim_against_real_lists(live):
    """The socketmap and Exim fronts give the same verdicts over the real lists."""
    ns = socketmap.netstring
    sm = unix_exchange(f"{live.dir}/socketmap.sock", ns(b"default 192.0.2.99") + ns(b"default 192.0.2.1"), b"NOTFOUND ,")
    assert sm == ns(b"OK 554 5.7.1 192.0.2.99 listed on bl.test: Listed: see https://bl.test/192.0.2.99") + b"9:NOTFOUND ,"
    line = unix_exchange(f"{live.dir}/exim.sock", b"ip=192.0.2.1 helo=mx.example.test sender=a@spam.example\n", b"\n")
    assert line == b"reject 554 5.7.1 192.0.2.1 listed on dbl.test: Spam domain\n"


@pytest.mark.parametrize(
    "front, request_, answer",
    [
        ("policy.sock", b"client_address=192.0.2.99\n\n", b"action=554 "),
        ("policy.sock", b"client_address=192.0.2.99\nsasl_username=alice\n\n", b"action=DUNNO\n\n"),
        ("policy.sock", b"client_address=192.0.2.99\nsasl_username=\n\n", b"action=554 "),
        ("exim.sock", b"ip=192.0.2.99\n", b"reject 554 "),
        ("exim.sock", b'ip=192.0.2.99 authenticated="alice"\n', b"accept\n"),
        ("exim.sock", b'ip=192.0.2.99 authenticated=""\n', b"reject 554 "),
    ],
)
def test_authenticated_submissions_through_the_fronts(live, front, request_, answer):
    """A SASL user (Postfix sasl_username, Exim authenticated=) is accepted without lookups; empty means not authenticated."""
    until = b"\n\n" if front == "policy.sock" else b"\n"
    assert unix_exchange(f"{live.dir}/{front}", request_, until).startswith(answer)


def test_service_stop_closes_the_fronts(live):
    """Stopping the service closes the fronts and removes their socket files."""
    path = f"{live.dir}/policy.sock"
    assert unix_exchange(path, b"client_address=192.0.2.1\n\n", b"\n\n") == b"action=DUNNO\n\n"
    live.thread.stop()
    assert not os.path.exists(path)
