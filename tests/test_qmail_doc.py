"""docs/qmail.md's tcpserver line runs as written under real tcpserver as a non-root user."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from fastlookup.config import load_config
from fastlookup.testing import Rbldnsd, ServerNotFound, free_port, rfc5782_ip4set, soa_line
from fastlookup.testing._proc import OutputReader, find_binary, popen, stop_process, wait_until
from fastlookup.testing.ports import port_is_free
from fastlookup.testing.service import ServiceThread

from docsnippets import blocks
from fixtures_servers import skip_or_fail
from nonroot import make_prefix, open_dir

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="tcpserver -u/-g needs root")]

ZONES = {
    "zen.spamhaus.org": [("ip4set", soa_line("zen.spamhaus.org") + rfc5782_ip4set(test_txt="https://www.spamhaus.org/query/ip/$"))],
    "bl.spamcop.net": [("ip4set", soa_line("bl.spamcop.net") + rfc5782_ip4set())],
}
SMTPD = "#!/bin/sh\nprintf '220 real smtpd\\r\\n'\ncat >/dev/null\n"


@pytest.fixture(scope="module")
def qmail() -> Iterator[tuple[int, OutputReader]]:
    """rbldnsd, the service (socket group from qmail.md's TOML), and qmail.md's tcpserver line; yields its port."""
    directory = open_dir("fastlookup-qmail-")
    rbl = Rbldnsd(ZONES, ttl_s=60)
    service = proc = output = None
    try:
        try:
            prefix = make_prefix(os.path.join(directory, "opt"))
            rbl.start()
            tcprules = find_binary("tcprules")
        except (RuntimeError, ServerNotFound) as exc:
            skip_or_fail(str(exc))
        nobody, nogroup = pwd.getpwnam("nobody"), grp.getgrnam("nogroup")
        (toml,) = blocks("qmail.md", "toml")[:1]
        path = os.path.join(directory, "fastlookup.toml")
        with open(path, "w") as fh:
            fh.write(toml.replace('"nofiles"', '"nogroup"'))  # Debian has no qmail users; nogroup stands in
        run_dir = os.path.join(directory, "run")
        os.makedirs(run_dir, mode=0o755)
        config = load_config(path, environ={}, overrides={
            "server": {"socket": f"{run_dir}/fastlookup.sock"},
            "upstream": {"servers": [f"{rbl.address[0]}:{rbl.address[1]}"]},
        })
        service = ServiceThread(config).start()
        cdb = os.path.join(directory, "tcp.smtp.cdb")
        subprocess.run([tcprules, cdb, cdb + ".tmp"], input=b":allow\n", check=True)
        smtpd = os.path.join(directory, "qmail-smtpd")
        with open(smtpd, "w") as fh:
            fh.write(SMTPD)
        os.chmod(smtpd, 0o755)
        port = free_port("tcp")
        (line,) = [b for b in blocks("qmail.md", "sh") if "tcpserver -v" in b]
        line = "\n".join(row for row in line.splitlines() if not row.startswith("#"))
        for old, new in (("/etc/tcp.smtp.cdb", cdb), (" 0 smtp ", f" 127.0.0.1 {port} "), ("/opt/fastlookup", prefix),
                         ("/var/qmail/bin/qmail-smtpd", smtpd)):
            assert old in line, old
            line = line.replace(old, new)
        env = {"PATH": "/usr/bin:/bin", "LOCAL": "mx.test", "QMAILDUID": str(nobody.pw_uid), "NOFILESGID": str(nogroup.gr_gid),
               "FASTLOOKUP_SOCKET": f"{run_dir}/fastlookup.sock"}
        proc = popen(["bash", "-c", "exec " + line], env=env)
        output = OutputReader(proc)
        wait_until(lambda: not port_is_free(port, "tcp"), timeout_s=10, what="tcpserver", proc=proc, output=output.tail)
        yield port, output
    finally:
        if proc is not None:
            stop_process(proc)  # by pid: only the tcpserver we started
            if output is not None:
                output.join()
            proc.stdout.close()
        if service is not None:
            service.stop()
        rbl.stop()
        shutil.rmtree(directory, ignore_errors=True)


def session(port: int, source: str) -> bytes:
    """Connect from ``source``, say QUIT after the greeting, and read to EOF."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"RCPT TO:<a@b.example>\r\nQUIT\r\n")
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize(
    "source, expected",
    [
        ("127.0.0.2", b"220 rblsmtpd.local\r\n451 https://www.spamhaus.org/query/ip/127.0.0.2\r\n221 rblsmtpd.local\r\n"),
        ("127.0.0.1", b"220 real smtpd\r\n"),
    ],
)
def test_tcpserver_line_runs_as_written_as_nobody(qmail, source, expected):
    """The listed test point is blocked (the lookup reached the service as nobody:nogroup); a clean client gets the SMTP program."""
    port, output = qmail
    assert session(port, source) == expected, output.tail(20)
