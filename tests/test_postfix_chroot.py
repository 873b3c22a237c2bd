"""docs/postfix.md followed word for word on Debian's stock master.cf (smtpd chrooted): a listed client is rejected."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from fastlookup.config import load_config
from fastlookup.testing import DnsServer, Rbldnsd, ServerNotFound, free_port, rfc5782_dnset, rfc5782_ip4set, soa_line
from fastlookup.testing._proc import find_binary
from fastlookup.testing.service import RoutedUpstream, ServiceThread

from docsnippets import blocks, console
from fixtures_servers import dns_zone, skip_or_fail
from test_postfix import BASE_MAIN_CF, PREFIX, PostfixInstance, rcpt

pytestmark = pytest.mark.slow

DEBIAN_MASTER_CF = "/usr/share/postfix/master.cf.dist"  # what Debian installs as /etc/postfix/master.cf

# The lists' test point as Spamhaus serves it ("$" is the queried address in rbldnsd data).
ZEN_TXT = "https://www.spamhaus.org/query/ip/$"
ZONES = {
    "zen.spamhaus.org": [("ip4set", soa_line("zen.spamhaus.org") + rfc5782_ip4set(test_txt=ZEN_TXT))],
    "dbl.spamhaus.org": [("dnset", soa_line("dbl.spamhaus.org") + rfc5782_dnset())],
}


def debian_master_cf() -> str:
    """Debian's master.cf with only the public smtp listener moved to a loopback port (chroot stays "y")."""
    try:
        with open(DEBIAN_MASTER_CF, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ServerNotFound(f"{DEBIAN_MASTER_CF} (Debian's postfix package)") from None
    text = text.replace("{", "{{").replace("}", "}}")
    text, count = re.subn(r"^smtp(\s+)inet(\s+n\s+-\s+)y(\s+)", r"127.0.0.1:{port}\1inet\2y\3", text, count=1, flags=re.M)
    assert count == 1, "Debian's master.cf no longer has a chrooted 'smtp inet' line"
    return text


def docs_config(directory: str, ports: dict[str, int], extra: str = ""):
    """The TOML block of docs/postfix.md (``extra`` TOML laid over it), ports and the queue moved, through the real loader."""
    import tomllib

    (toml,) = blocks("postfix.md", "toml")
    for old, new in ports.items():
        toml = toml.replace(old, str(new))
    path = os.path.join(directory, "fastlookup.toml")
    with open(path, "w") as fh:
        fh.write(toml)
    overrides = tomllib.loads(extra.replace("/var/spool/postfix/", f"{directory}/queue/"))
    overrides.setdefault("server", {})["socket"] = f"{directory}/fastlookup.sock"
    return load_config(path, environ={}, overrides=overrides)


def docs_main_cf(ports: dict[str, int], doc: str, index: int) -> str:
    """The tests' shared main.cf plus main.cf block ``index`` of ``docs/<doc>``."""
    text = BASE_MAIN_CF + blocks(doc, "main.cf")[index].replace("{", "{{").replace("}", "}}")
    for old, new in ports.items():
        text = text.replace(old, str(new))
    return text


# (doc, main.cf block) -> how Postfix words a reject from it. access.md's block is the
# "socket inside the jail" alternative, with that page's TOML laid over postfix.md's.
FRONTS = {
    ("postfix.md", 0): PREFIX,
    ("postfix.md", 1): "<unknown[127.0.0.2]>: Client host rejected: ",
    ("access.md", 0): PREFIX,
}


@pytest.fixture(scope="module", params=list(FRONTS), ids=["policy", "socketmap", "socket-in-jail"])
def chrooted(request) -> Iterator[SimpleNamespace]:
    """fastlookup configured from docs/postfix.md and a Postfix with Debian's chrooted master.cf and one main.cf block."""
    directory = tempfile.mkdtemp(prefix="fastlookup-chroot-")
    os.chmod(directory, 0o755)
    ports = {"10040": free_port("tcp"), "10041": free_port("tcp")}
    rbl = Rbldnsd(ZONES, ttl_s=60)
    dns = DnsServer(zone=dns_zone())
    service = postfix = None
    try:
        try:
            master_cf = debian_master_cf()
            doc, index = request.param
            config = docs_config(directory, ports, extra=blocks(doc, "toml")[0] if doc != "postfix.md" else "")
            rbl.start()
            dns.start()
            lists = {zone: rbl.address for zone in ZONES}
            service = ServiceThread(config, upstream=RoutedUpstream(lists, dns.address)).start()
            postfix = PostfixInstance(directory, "", main_cf=docs_main_cf(ports, doc, index), master_cf=master_cf)
            postfix.start()
        except ServerNotFound as exc:
            skip_or_fail(f"chrooted postfix fixture: {exc}")
        yield SimpleNamespace(postfix=postfix, service=service, dir=directory, ports=ports, prefix=FRONTS[request.param], doc=doc)
    finally:
        if postfix is not None:
            postfix.stop()
        if service is not None:
            service.stop()
        dns.stop()
        rbl.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_smtpd_really_runs_chrooted(chrooted):
    """The stock master.cf keeps smtpd chrooted, so the set-up is tested where the documented mistake bites."""
    out = subprocess.run([find_binary("postconf"), "-c", chrooted.postfix.conf, "-F", "*/inet/chroot"],
                         capture_output=True, text=True, check=True).stdout
    assert f"127.0.0.1:{chrooted.postfix.port}/inet/chroot = y" in out


def test_listed_client_is_rejected_through_chrooted_smtpd(chrooted):
    """The RFC 5782 test point, outside the documented allow list, is rejected with the list's text."""
    code, reply = rcpt(chrooted.postfix, "127.0.0.2", sender="a@example.test")
    expected = ("5.7.1 " + chrooted.prefix + "Service unavailable; Client host [127.0.0.2] blocked using zen.spamhaus.org; "
                "https://www.spamhaus.org/query/ip/127.0.0.2")
    assert (code, reply) == (554, expected), chrooted.postfix.log()


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("chrooted", [("postfix.md", 0), ("postfix.md", 1)], ids=["policy", "socketmap"], indirect=True)
def test_try_it_commands_print_what_the_page_shows(chrooted, index):
    """Each "Try it" command of docs/postfix.md, run as written (ports moved), prints exactly the output shown."""
    command, shown = console(blocks("postfix.md", "console")[index])
    for old, new in chrooted.ports.items():
        command = command.replace(old, str(new))
    if command.startswith("postmap"):
        command = command.replace("postmap ", f"postmap -c {chrooted.postfix.conf} ", 1)
    if shutil.which("socat") is None and "socat" in command:
        pytest.fail("socat is missing (scripts/install-system.sh installs it)")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, shown), done.stderr
