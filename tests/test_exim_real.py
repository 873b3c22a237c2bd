"""Real Exim 4.96 (-bh): the ACL of docs/exim.md passes fastlookup's reply through unchanged.

Exim runs a whole SMTP session from a posed client address on stdin/stdout
(``exim4 -C FILE -bh IP``) with the ACLs really run, ``${readsocket}`` included.
The ACL is taken from docs/exim.md as written (only the socket path changed),
so the documentation is what is tested. Each reply must carry the code, the
enhanced status and the text that Postfix's own check gives for the same
client (the table of tests/test_postfix_replies.py), without Postfix's
"Client host rejected:" prefix. Exim wraps a text longer than ~75 characters
into a multi-line reply, every line with the same code and status: the text
is the lines joined with a space.

Exim is unpacked from Debian's package (it conflicts with postfix), see
scripts/unpack-exim.sh. It needs no DNS here: host_lookup is unset, and
fastlookup asks the test DNS server itself.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from fastlookup.testing import DnsServer
from fastlookup.testing.service import ServiceThread, service_config

from fixtures_servers import skip_or_fail
from test_postfix_replies import CASES, SOAS, records

pytestmark = pytest.mark.slow

EXIM = Path(os.environ.get("FASTLOOKUP_TEST_EXIM", "/opt/fastlookup-test/exim/usr/sbin/exim4"))
DOC = Path(__file__).resolve().parents[1] / "docs" / "exim.md"
RCPT = "user@example.test"
V6 = "2001:db8::bad:1"  # Exim passes it fully expanded: 2001:0db8:0000:...

CONFIG = """\
primary_hostname = mx.fastlookup.test
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
exim_user = Debian-exim
exim_group = Debian-exim
hostlist relay_from_hosts = 127.0.0.1
acl_smtp_rcpt = acl_check_rcpt

begin acl

{acl}
  accept
"""

def documented_acl(socket_path: str) -> str:
    """The acl_check_rcpt block of docs/exim.md, with the test's socket path."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"```\n(acl_check_rcpt:\n.*?)```", text, re.S)
    assert match, "docs/exim.md lost its acl_check_rcpt block"
    return match.group(1).replace("/run/fastlookup/exim.sock", socket_path)

@pytest.fixture(scope="module")
def exim() -> Iterator[SimpleNamespace]:
    """fastlookup's Exim listener over the test DNS data, and an Exim config holding the documented ACL."""
    if not EXIM.exists():
        why = f"{EXIM} not found: scripts/unpack-exim.sh (run by scripts/install-system.sh test) makes it"
        skip_or_fail(why)
    directory = tempfile.mkdtemp(prefix="fastlookup-exim-")
    os.chmod(directory, 0o755)  # Exim's user must reach the socket in here
    for sub in ("spool", "log"):
        os.makedirs(f"{directory}/{sub}")
        shutil.chown(f"{directory}/{sub}", user="Debian-exim", group="Debian-exim")
    data = records()
    v6 = ipaddress.ip_address(V6).reverse_pointer.removesuffix(".ip6.arpa")
    data[(f"{v6}.bl.test", "A")] = ["127.0.0.2"]
    data[(f"{v6}.bl.test", "TXT")] = [f"Listed v6: see http://bl.test/{V6}"]
    dns = DnsServer(data, soa=SOAS)
    dns.set_faults("5.113.0.203.in-addr.arpa", servfail=True)
    config = f"{directory}/exim.conf"
    service = None
    try:
        dns.start()
        socket_path = f"{directory}/exim.sock"
        conf = service_config(
            f"{directory}/fastlookup.sock", [dns.address], server={"socket_group": "Debian-exim"},
            postfix={"exim": f"unix:{socket_path}"},
            rhsbl={"dbl.test": {"targets": ["client", "helo", "sender"]}},
            policy={"default": {"allow": [], "dnsbl": ["bl.test"], "rhsbl": ["dbl.test"], "require_ptr": "defer",
                                "require_fcrdns": "defer"}},
        )
        service = ServiceThread(conf).start()
        with open(config, "w") as fh:
            fh.write(CONFIG.format(dir=directory, acl=documented_acl(socket_path)))
        os.chmod(config, 0o644)  # Exim refuses a config others may write
        yield SimpleNamespace(config=config, dir=directory, service=service)
    finally:
        if service is not None:
            service.stop()
        dns.stop()
        shutil.rmtree(directory, ignore_errors=True)

def rcpt_reply(exim: SimpleNamespace, ip: str, helo: str, sender: str) -> list[str]:
    """The reply lines to RCPT of one ``exim -bh`` session from ``ip``."""
    session = f"EHLO {helo}\r\nMAIL FROM:<{sender}>\r\nRCPT TO:<{RCPT}>\r\nQUIT\r\n".encode()
    done = subprocess.run([str(EXIM), "-C", exim.config, "-bh", ip], input=session, capture_output=True, timeout=60)
    lines = done.stdout.decode("ascii", "replace").replace("\r\n", "\n").splitlines()
    replies: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if not re.match(r"^\d{3}[ -]", line):
            continue  # -bh's "****" banner
        current.append(line)
        if line[3] == " ":
            replies.append(current)
            current = []
    # 220 greeting, EHLO, MAIL, RCPT, QUIT
    assert len(replies) == 5, (done.stdout, done.stderr[-2000:])
    return replies[3]

def unwrap(lines: list[str]) -> tuple[int, str, str]:
    """(code, enhanced status, text) of a possibly multi-line reply; every line must repeat code and status."""
    code, status = lines[0][:3], lines[0][4:].split(" ", 1)[0]
    texts = []
    for line in lines:
        assert line[:3] == code and line[4:].split(" ", 1)[0] == status, lines
        texts.append(line[4:].split(" ", 1)[1])
    return int(code), status, " ".join(texts)

@pytest.mark.parametrize("ip, helo, sender, names, own", CASES)
def test_exim_passes_the_reply_through_unchanged(exim, ip, helo, sender, names, own):
    """Through the documented ACL, Exim answers Postfix's own code, status and words (without its prefix)."""
    code, status, words = own.split(" ", 2)
    expected = (int(code), status, words.removeprefix("Client host rejected: "))
    assert unwrap(rcpt_reply(exim, ip, helo, sender)) == expected

def test_exim_ipv6_client_is_named_as_postfix_would(exim):
    """An IPv6 client, which Exim passes fully expanded, is looked up and named in its short form."""
    expected = (554, "5.7.1", f"Service unavailable; Client host [{V6}] blocked using bl.test; Listed v6: see http://bl.test/{V6}")
    assert unwrap(rcpt_reply(exim, V6, "client.example", "a@sender.example")) == expected


def test_exim_accepts_a_clean_client(exim):
    """A client with FCrDNS that no list names is accepted (250) through the documented ACL."""
    assert rcpt_reply(exim, "192.0.2.10", "client.example", "a@sender.example") == ["250 Accepted"]

def test_exim_fails_open_when_the_service_is_down(exim, tmp_path):
    """With the socket gone, readsocket's failure string "accept" lets the listed client through."""
    config = tmp_path / "down.conf"
    text = Path(exim.config).read_text().replace(f"{exim.dir}/exim.sock", str(tmp_path / "missing.sock"))
    config.write_text(text)
    os.chmod(config, 0o644)
    down = SimpleNamespace(config=str(config), dir=exim.dir)
    assert rcpt_reply(down, "192.0.2.66", "client.example", "a@sender.example") == ["250 Accepted"]
