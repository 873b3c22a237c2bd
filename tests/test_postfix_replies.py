"""Real Postfix: fastlookup's policy replies against Postfix's own checks, word for word.

One private Postfix serves four smtpd ports:

* ``own``: Postfix's own ``reject_unknown_reverse_client_hostname``,
  ``reject_unknown_client_hostname``, ``reject_rbl_client`` and ``reject_rhsbl_*``
  — what a postmaster sees today without fastlookup;
* ``rcpt`` / ``client``: ``check_policy_service`` asking fastlookup from
  ``smtpd_recipient_restrictions`` / ``smtpd_client_restrictions``;
* ``dead``: the same, asking a second fastlookup whose upstream is blackholed.

Postfix resolves through libc only (port 53 of /etc/resolv.conf), so it runs in a
private mount namespace (``unshare -m``) with a test resolv.conf bind-mounted over
/etc/resolv.conf, naming our test DNS server on port 53 of a spare loopback
address; fastlookup asks the same server. XCLIENT poses as each client; for the
``own`` port it also gives the client name and reverse name that the DNS data
implies (Postfix takes them from XCLIENT instead of looking them up).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import smtplib
import tempfile
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from fastlookup.testing import DnsServer, Faults, ServerNotFound, free_port
from fastlookup.testing._proc import find_binary, wait_until
from fastlookup.testing.ports import port_is_free
from fastlookup.testing.service import ServiceThread, service_config

from fixtures_servers import skip_or_fail
from test_postfix import BASE_MAIN_CF, MASTER_CF, PostfixInstance

pytestmark = pytest.mark.slow

RCPT = "user@example.test"

MAIN_CF = BASE_MAIN_CF + """\
smtpd_recipient_restrictions =
fastlookup_policy = check_policy_service {{ unix:{policy}, timeout=10s, default_action=DUNNO }}
fastlookup_dead = check_policy_service {{ unix:{dir}/dead.sock, timeout=10s, default_action=DUNNO }}
postfix_own_checks = reject_unknown_reverse_client_hostname, reject_unknown_client_hostname,
    reject_rbl_client bl.test, reject_rhsbl_client dbl.test, reject_rhsbl_helo dbl.test,
    reject_rhsbl_sender dbl.test
"""

PORTS = """\
127.0.0.1:{own} inet n - n - - smtpd -o smtpd_recipient_restrictions=$postfix_own_checks
127.0.0.1:{rcpt} inet n - n - - smtpd -o smtpd_recipient_restrictions=$fastlookup_policy
127.0.0.1:{client} inet n - n - - smtpd -o smtpd_client_restrictions=$fastlookup_policy
127.0.0.1:{dead} inet n - n - - smtpd -o smtpd_recipient_restrictions=$fastlookup_dead
"""

LISTED_TXT = "Domain listed by dbl.test: see http://dbl.test/"


def records() -> dict:
    """The DNS data both Postfix and fastlookup see: hosts, PTRs and the two lists as plain records."""
    out: dict = {}

    def host(ip: str, name: str, forward: str | None = None) -> None:
        out[(".".join(reversed(ip.split("."))) + ".in-addr.arpa", "PTR")] = [name]
        out[(name, "A")] = [forward or ip]

    for ip in ("192.0.2.66", "192.0.2.68", "192.0.2.10", "192.0.2.11"):
        host(ip, f"host{ip.rsplit('.', 1)[1]}.example.test")
    host("192.0.2.12", "mx.spammer.example")
    host("192.0.2.20", "forged.example.test", forward="198.51.100.20")  # the PTR name does not point back
    # 192.0.2.30: no PTR at all; 203.0.113.5: its reverse zone answers SERVFAIL (a fault, below)
    out[("66.2.0.192.bl.test", "A")] = ["127.0.0.2"]
    out[("66.2.0.192.bl.test", "TXT")] = ["Listed: see http://bl.test/192.0.2.66"]
    out[("68.2.0.192.bl.test", "A")] = ["127.0.0.2"]  # listed, no TXT
    for name, listed in (("mx.spammer.example", "spammer.example"), ("x.badhelo.example", "badhelo.example"),
                         ("spammer.example", "spammer.example"), ("test", "test")):
        out[(f"{name}.dbl.test", "A")] = ["127.0.1.2"]
        out[(f"{name}.dbl.test", "TXT")] = [LISTED_TXT + listed]
    return out


SOAS = [(origin, 300, 60) for origin in ("bl.test", "dbl.test", "example.test", "spammer.example", "badhelo.example",
                                         "sender.example", "2.0.192.in-addr.arpa", "113.0.203.in-addr.arpa")]


class NamespacedPostfix(PostfixInstance):
    """A PostfixInstance with our main.cf, four ports, started in its own mount namespace with a test resolv.conf."""

    def __init__(self, directory: str, nameserver: str) -> None:
        self.ports = {name: free_port("tcp") for name in ("own", "rcpt", "client", "dead")}
        services = MASTER_CF.split("\n", 1)[1]  # the stock internal services, without the test port
        super().__init__(directory, f"{directory}/policy.sock", main_cf=MAIN_CF,
                         master_cf=PORTS.format(**self.ports) + services)
        self.port = self.ports["rcpt"]
        self.nameserver = nameserver

    def _start_command(self, postfix: str) -> list[str]:
        """``postfix start`` inside ``unshare -m`` with our resolv.conf bind-mounted over /etc/resolv.conf."""
        resolv = os.path.join(self.dir, "resolv.conf")
        with open(resolv, "w") as fh:
            fh.write(f"nameserver {self.nameserver}\noptions timeout:1 attempts:1\n")
        script = 'mount --bind "$1" /etc/resolv.conf && exec "$2" -c "$3" start'
        return [find_binary("unshare"), "-m", "--propagation", "private", "sh", "-c", script, "sh", resolv, postfix,
                self.conf]

    def _wait_ready(self) -> None:
        for name, port in self.ports.items():
            wait_until(lambda: self._answers(port), timeout_s=10, what=f"postfix smtpd {name} on 127.0.0.1:{port}",
                       output=self.log)


@pytest.fixture(scope="module")
def mta() -> Iterator[SimpleNamespace]:
    """Test DNS on a spare 127.x:53, fastlookup (healthy and blackholed) and a Postfix with its own checks beside."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        why = "needs root and unshare(1) for Postfix's private resolv.conf"
        skip_or_fail(why)
    address = next((f"127.54.0.{i}" for i in range(1, 20) if port_is_free(53, "udp", f"127.54.0.{i}")), None)
    if address is None:
        pytest.fail("no spare 127.54.0.x:53 for the test DNS server")
    directory = tempfile.mkdtemp(prefix="fastlookup-pfreply-")
    os.chmod(directory, 0o755)  # smtpd runs as 'postfix' and must reach the policy sockets in here
    dns = DnsServer(records(), soa=SOAS, hosts=(address,), port=53)
    dns.set_faults("5.113.0.203.in-addr.arpa", servfail=True)
    blackhole = DnsServer({}, faults=Faults(drop=True))
    policy = {"allow": [], "dnsbl": ["bl.test"], "rhsbl": ["dbl.test"], "require_ptr": "defer",
              "require_fcrdns": "defer"}
    healthy = service_config(f"{directory}/fastlookup.sock", [(address, 53)], server={"socket_group": "postfix"},
                             postfix={"listen": f"unix:{directory}/policy.sock"},
                             rhsbl={"dbl.test": {"targets": ["client", "helo", "sender"]}},
                             policy={"default": policy})
    postfix = NamespacedPostfix(directory, address)
    services: list[ServiceThread] = []
    try:
        try:
            dns.start()
            blackhole.start()
            dead = service_config(f"{directory}/dead-fastlookup.sock", [blackhole.address],
                                  server={"socket_group": "postfix"}, postfix={"listen": f"unix:{directory}/dead.sock"},
                                  policy={"default": dict(policy, deadline_s=0.5)})
            dead = dataclasses.replace(dead, upstream=dataclasses.replace(dead.upstream, timeout_s=0.1, attempts=1))
            services.append(ServiceThread(healthy).start())
            services.append(ServiceThread(dead).start())
            postfix.start()
        except ServerNotFound as exc:
            skip_or_fail(f"postfix fixture: {exc}")
        yield SimpleNamespace(postfix=postfix, healthy=services[0], dead=services[1], dns=dns)
    finally:
        postfix.stop()
        for service in services:
            service.stop()
        dns.stop()
        blackhole.stop()
        shutil.rmtree(directory, ignore_errors=True)


def session(postfix: NamespacedPostfix, port: str, ip: str, helo: str, sender: str, xclient: str = "") -> tuple[int, str]:
    """Pose as ``ip`` by XCLIENT on one port; the first refusal (or DATA's reply) as ``(code, text)``."""
    with smtplib.SMTP("127.0.0.1", postfix.ports[port], timeout=30) as smtp:
        smtp.ehlo("test")
        code, msg = smtp.docmd("XCLIENT", f"ADDR={ip} {xclient or 'NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]'}")
        assert code == 220, msg
        smtp.ehlo(helo)
        code, msg = smtp.mail(sender)
        if code == 250:
            code, msg = smtp.rcpt(RCPT)
            if code == 250:
                code, msg = smtp.data(b"Subject: test\r\n\r\nhello\r\n")
    return code, msg.decode()


OK_NAMES = "NAME={0} REVERSE_NAME={0}"

# What Postfix's own checks answer (issue #11), and the XCLIENT names the DNS data implies for them.
CASES = [
    ("192.0.2.66", "client.example", "a@sender.example", OK_NAMES.format("host66.example.test"),
     "554 5.7.1 Service unavailable; Client host [192.0.2.66] blocked using bl.test; Listed: see http://bl.test/192.0.2.66"),
    ("192.0.2.68", "client.example", "a@sender.example", OK_NAMES.format("host68.example.test"),
     "554 5.7.1 Service unavailable; Client host [192.0.2.68] blocked using bl.test"),
    ("192.0.2.12", "client.example", "a@sender.example", OK_NAMES.format("mx.spammer.example"),
     "554 5.7.1 Service unavailable; Client host [mx.spammer.example] blocked using dbl.test; "
     "Domain listed by dbl.test: see http://dbl.test/spammer.example"),
    ("192.0.2.10", "x.badhelo.example", "a@sender.example", OK_NAMES.format("host10.example.test"),
     "554 5.7.1 Service unavailable; Helo command [x.badhelo.example] blocked using dbl.test; "
     "Domain listed by dbl.test: see http://dbl.test/badhelo.example"),
    ("192.0.2.10", "client.example", "bob@spammer.example", OK_NAMES.format("host10.example.test"),
     "554 5.7.1 Service unavailable; Sender address [bob@spammer.example] blocked using dbl.test; "
     "Domain listed by dbl.test: see http://dbl.test/spammer.example"),
    ("192.0.2.11", "client.example", "someone@test", OK_NAMES.format("host11.example.test"),
     "554 5.7.1 Service unavailable; Sender address [someone@test] blocked using dbl.test; "
     "Domain listed by dbl.test: see http://dbl.test/test"),
    ("192.0.2.30", "client.example", "a@sender.example", "NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]",
     "450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.30]"),
    ("192.0.2.20", "client.example", "a@sender.example", "NAME=[UNAVAILABLE] REVERSE_NAME=forged.example.test",
     "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.20]"),
    # The client's reverse zone SERVFAILs while upstream answers the list queries: 450, the client may retry.
    ("203.0.113.5", "client.example", "a@sender.example", "NAME=[TEMPUNAVAIL] REVERSE_NAME=[TEMPUNAVAIL]",
     "450 4.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.5]"),
]

# What Postfix itself puts before a policy's text, by the restriction list the policy sits in.
PREFIX = {"rcpt": f"<{RCPT}>: Recipient address rejected: ", "client": "<unknown[{ip}]>: Client host rejected: "}


@pytest.mark.parametrize("ip, helo, sender, names, own", CASES)
def test_policy_replies_match_postfix_own_checks(mta, ip, helo, sender, names, own):
    """In recipient and client restrictions, fastlookup's reply is Postfix's own check's, behind Postfix's policy prefix."""
    code, text = session(mta.postfix, "own", ip, helo, sender, names)
    assert f"{code} {text}" == own, mta.postfix.log()  # Postfix answers what the issue says it does
    status, words = own.split(" ", 2)[1:]
    bare = words.removeprefix("Client host rejected: ")  # the policy's text: Postfix adds its own prefix
    for port in ("rcpt", "client"):
        got = session(mta.postfix, port, ip, helo, sender)
        assert got == (code, f"{status} {PREFIX[port].format(ip=ip)}{bare}"), (port, mta.postfix.log())


def test_clean_client_is_accepted(mta):
    """A client with FCrDNS that no list names passes every port."""
    for port in ("own", "rcpt", "client"):
        code, text = session(mta.postfix, port, "192.0.2.10", "client.example", "a@sender.example",
                             OK_NAMES.format("host10.example.test") if port == "own" else "")
        assert code == 250 and text.startswith("2.0.0 Ok: queued as "), (port, mta.postfix.log())


def test_blackholed_upstream_accepts_with_fail_open(mta):
    """With upstream blackholed, the same checks fail open: Postfix accepts and the verdict says fail_open."""
    code, text = session(mta.postfix, "dead", "192.0.2.30", "client.example", "a@sender.example")
    assert code == 250, mta.postfix.log()
    verdict = mta.dead.call("check", {"ip": "192.0.2.30", "helo": "client.example", "sender": "a@sender.example"})
    assert (verdict["action"], verdict["fail_open"]) == ("accept", True)
    assert any("upstream not answering" in r["detail"] for r in verdict["reasons"]), verdict["reasons"]


@pytest.mark.parametrize("port", ["rcpt", "client"])
def test_authenticated_submission_skips_the_lists(mta, port):
    """A SASL-authenticated client (XCLIENT LOGIN: Postfix sends sasl_username) on a list is accepted without lookups."""
    code, text = session(mta.postfix, port, "192.0.2.66", "client.example", "a@sender.example",
                         "NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] LOGIN=alice")
    assert code == 250 and text.startswith("2.0.0 Ok: queued as "), mta.postfix.log()
