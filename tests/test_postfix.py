"""Real Postfix with check_policy_service pointing at fastlookup, driven over SMTP with XCLIENT."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from fastlookup.testing import DnsServer, ServerNotFound, free_port
from fastlookup.testing._proc import find_binary, wait_until
from fastlookup.testing.service import RoutedUpstream, ServiceThread, service_config

from fixtures_servers import dns_zone, skip_or_fail

pytestmark = pytest.mark.slow

# What every test Postfix shares: private directories, loopback only, XCLIENT from loopback, discard delivery.
BASE_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.fastlookup.test
mydomain = fastlookup.test
mydestination =
relay_domains = example.test
mynetworks = 127.0.0.1/32
default_transport = discard:
relay_transport = discard:
local_transport = discard:
alias_maps =
alias_database =
biff = no
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = reject_unauth_destination
"""

MAIN_CF = BASE_MAIN_CF + """\
smtpd_recipient_restrictions =
    check_policy_service {{ unix:{policy}, timeout=2s, default_action=DUNNO }}
"""

# chroot off everywhere ("n" in the fifth column): the policy socket lives in a temp dir.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class PostfixInstance:
    """A private Postfix (own config, queue and data directories) on a loopback port."""

    def __init__(self, directory: str, policy_socket: str, main_cf: str | None = None, master_cf: str | None = None) -> None:
        self.dir = directory
        self.port = free_port("tcp")
        self.conf = os.path.join(directory, "conf")
        self.policy_socket = policy_socket
        self.master_pid: int | None = None
        # Other tests give their own files ({dir} and {port} are filled in).
        self.main_cf = MAIN_CF if main_cf is None else main_cf
        self.master_cf = MASTER_CF if master_cf is None else master_cf

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "maillog"), encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-30:])
        except FileNotFoundError:
            return "(no maillog)"

    def start(self) -> "PostfixInstance":
        postfix = find_binary("postfix")
        self._write_config()
        done = subprocess.run(self._start_command(postfix), capture_output=True, text=True, timeout=30)
        pid_file = os.path.join(self.dir, "queue", "pid", "master.pid")
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed ({done.returncode}): {done.stderr}\n{self.log()}")
        with open(pid_file) as fh:
            self.master_pid = int(fh.read().strip())
        self._wait_ready()
        return self

    def _write_config(self) -> None:
        os.makedirs(self.conf)
        os.makedirs(os.path.join(self.dir, "queue"), exist_ok=True)  # a socket may already live in the jail
        os.makedirs(os.path.join(self.dir, "data"))
        shutil.chown(os.path.join(self.dir, "data"), user="postfix")  # master.lock is made as the mail owner
        with open(os.path.join(self.conf, "main.cf"), "w") as fh:
            fh.write(self.main_cf.format(dir=self.dir, policy=self.policy_socket))
        with open(os.path.join(self.conf, "master.cf"), "w") as fh:
            fh.write(self.master_cf.format(port=self.port))

    def _start_command(self, postfix: str) -> list[str]:
        """``postfix start`` on our config (a subclass may wrap it)."""
        return [postfix, "-c", self.conf, "start"]

    def _wait_ready(self) -> None:
        wait_until(lambda: self._answers(self.port), timeout_s=10, what=f"postfix smtpd on 127.0.0.1:{self.port}",
                   output=self.log)

    def _answers(self, port: int) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=2) as smtp:
                return smtp.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def stop(self) -> None:
        if self.master_pid is None:
            return
        subprocess.run([find_binary("postfix"), "-c", self.conf, "stop"], capture_output=True, timeout=30)
        pid, self.master_pid = self.master_pid, None

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        try:
            wait_until(gone, timeout_s=10, what=f"postfix master {pid} to exit")
        except Exception:
            os.kill(pid, 9)  # our own master, by pid


@pytest.fixture(scope="module")
def mail(rbldnsd) -> Iterator[SimpleNamespace]:
    """fastlookup (lists on rbldnsd, PTRs on a DnsServer) and a private Postfix asking it per RCPT."""
    directory = tempfile.mkdtemp(prefix="fastlookup-postfix-")
    os.chmod(directory, 0o755)  # smtpd runs as 'postfix' and must reach the policy socket in here
    policy_socket = f"{directory}/policy.sock"
    config = service_config(
        f"{directory}/fastlookup.sock",
        server={"socket_group": "postfix"},  # smtpd runs as postfix: the policy socket is 0660 root:postfix
        postfix={"listen": f"unix:{policy_socket}"},
        rhsbl={"dbl.test": {"targets": ["sender"], "message": "Sender address <$sender> rejected: listed on $zone ($txt)"}},
        policy={"default": {"allow": [], "dnsbl": ["bl.test"], "rhsbl": ["dbl.test"], "require_ptr": "defer",
                            "reject_text": "Service unavailable; client [$ip] blocked using $zone: $txt"}},
    )
    dns = DnsServer(zone=dns_zone())
    postfix = PostfixInstance(directory, policy_socket)
    service = None
    try:
        try:
            dns.start()
            lists = {"bl.test": rbldnsd.address, "dbl.test": rbldnsd.address}
            service = ServiceThread(config, upstream=RoutedUpstream(lists, dns.address))
            service.start()
            postfix.start()
        except ServerNotFound as exc:
            skip_or_fail(f"postfix fixture: {exc}")
        yield SimpleNamespace(postfix=postfix, service=service, dir=directory)
    finally:
        postfix.stop()
        if service is not None:
            service.stop()
        dns.stop()
        shutil.rmtree(directory, ignore_errors=True)


def rcpt(postfix: PostfixInstance, ip: str, sender: str = "a@sender.example", helo: str = "client.example"):
    """Open a session, pose as ``ip`` by XCLIENT, and return the RCPT reply (and DATA's when accepted)."""
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=15) as smtp:
        smtp.ehlo("test")
        code, msg = smtp.docmd("XCLIENT", f"ADDR={ip} NAME=[UNAVAILABLE]")
        assert code == 220, msg
        smtp.ehlo(helo)
        assert smtp.mail(sender)[0] == 250
        code, msg = smtp.rcpt("user@example.test")
        if code != 250:
            return code, msg.decode()
        code, msg = smtp.data(b"Subject: test\r\n\r\nhello\r\n")
        return code, msg.decode()


# Postfix puts "<recipient>: Recipient address rejected: " before a policy's text in
# smtpd_recipient_restrictions (as for any access(5) action there).
PREFIX = "<user@example.test>: Recipient address rejected: "


@pytest.mark.parametrize(
    "ip, sender, code, reply",
    [
        ("192.0.2.99", "a@sender.example", 554,
         "5.7.1 " + PREFIX + "Service unavailable; client [192.0.2.99] blocked using bl.test: Listed: see https://bl.test/192.0.2.99"),
        ("192.0.2.1", "a@sender.example", 250, "2.0.0 Ok: queued as "),
        ("192.0.2.7", "a@sender.example", 450, "4.7.1 " + PREFIX + "cannot find your reverse hostname, [192.0.2.7]"),
        ("192.0.2.1", "spammer@spam.example", 554,
         "5.7.1 " + PREFIX + "Sender address <spammer@spam.example> rejected: listed on dbl.test (Spam domain)"),
    ],
)
def test_postfix_asks_fastlookup(mail, ip, sender, code, reply):
    """A listed IP is rejected with the templated text, a clean one accepted, no PTR deferred, a listed sender rejected."""
    got_code, got_reply = rcpt(mail.postfix, ip, sender)
    assert (got_code, got_reply[: len(reply)]) == (code, reply), mail.postfix.log()
    if code == 250:
        assert len(got_reply) > len(reply)  # the queue id


def test_mail_is_accepted_while_fastlookup_is_stopped(mail):
    """With the service stopped Postfix falls back to DUNNO and accepts even a listed client."""
    mail.service.stop()
    start = time.monotonic()
    code, text = rcpt(mail.postfix, "192.0.2.99")
    assert code == 250, mail.postfix.log()
    assert time.monotonic() - start < 10
