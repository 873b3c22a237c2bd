"""A real unbound (the Debian package) as the recursive resolver in front of the test servers.

fastlookup is a stub resolver: in production it asks the site's resolver.
This starts one unbound on 127.0.0.1 that sends chosen zones to our test
servers (rbldnsd for the lists, the test DNS server for names) as stub
zones. Settings that matter (``perf-facts.md``, ``field-facts.md``):
``qname-minimisation: no`` (else one PTR miss is several upstream
queries, and DNSBL names are asked label by label), ``do-not-query-localhost:
no`` (our servers are on 127.0.0.1), ``local-zone: ... nodefault`` for every
stub zone that unbound serves itself by default (``test.``, the RFC 5737
reverse zones), no chroot, no user switch, no remote control, one thread.
Readiness: unbound answers ``version.server CH TXT`` itself once it serves.

``unbound_config`` is shared with the benchmark (``bench/unbound.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping

import dns.exception
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype

from fastlookup.testing._proc import OutputReader, ServerStartError, end_child, find_binary, popen, start_on_free_port
from fastlookup.testing.ports import free_port

__all__ = ["Unbound", "unbound_config"]

#: Zones unbound answers itself by default (RFC 6761 names, RFC 5737 reverse zones) that a stub may need.
_NODEFAULT = ("test", "2.0.192.in-addr.arpa", "100.51.198.in-addr.arpa", "113.0.203.in-addr.arpa")


def unbound_config(port: int, workdir: str, stubs: Mapping[str, tuple[str, int]]) -> str:
    """unbound.conf text: listen on 127.0.0.1@``port``, ``stubs`` zone -> (host, port)."""
    lines = [
        "server:",
        f"  interface: 127.0.0.1@{port}",
        f"  port: {port}",
        "  interface-automatic: no",
        "  do-ip6: no",
        "  do-not-query-localhost: no",
        "  qname-minimisation: no",
        '  chroot: ""',
        '  username: ""',
        f'  directory: "{workdir}"',
        '  pidfile: ""',
        "  use-syslog: no",
        "  verbosity: 0",
        "  num-threads: 1",
        "  so-reuseport: no",
        "  access-control: 127.0.0.0/8 allow",
        '  module-config: "iterator"',
        "  harden-referral-path: no",
        '  target-fetch-policy: "0 0 0 0 0"',
        "  prefetch: no",
        "  minimal-responses: yes",
        "  msg-cache-size: 64m",
        "  rrset-cache-size: 128m",
        "  num-queries-per-thread: 4096",
        "  outgoing-range: 8192",
    ]
    lines += [f'  local-zone: "{zone}." nodefault' for zone in _NODEFAULT]
    for zone, (host, zport) in stubs.items():
        lines += ["stub-zone:", f'  name: "{zone.rstrip(".")}."', f"  stub-addr: {host}@{zport}"]
    lines += ["remote-control:", "  control-enable: no", ""]
    return "\n".join(lines)


class Unbound:
    """One unbound process with an empty cache: ``Unbound({"bl.test": rbl.address}).start()``; ``stop()``."""

    def __init__(self, stubs: Mapping[str, tuple[str, int]], *, start_timeout_s: float = 10.0) -> None:
        self.stubs = dict(stubs)
        self.port = 0
        self._start_timeout_s = start_timeout_s
        self._dir: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._output: OutputReader | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("Unbound: not started")
        return self._proc.pid

    def _answers(self) -> bool:
        query = dns.message.make_query("version.server.", dns.rdatatype.TXT, dns.rdataclass.CH)
        try:
            dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
        except (OSError, dns.exception.DNSException):
            return False
        return True

    def start(self) -> "Unbound":
        """Write the config, start ``unbound -d``, return once it answers; a busy port is retried."""
        binary = find_binary("unbound")
        self._dir = tempfile.mkdtemp(prefix="fastlookup-unbound-")
        try:
            self._proc, self._output = start_on_free_port(
                lambda: free_port("udp+tcp"),
                lambda port: self._launch(binary, port),
                self._answers,
                timeout_s=self._start_timeout_s,
                what="unbound on 127.0.0.1@{port}",
            )
        except ServerStartError:
            self.stop()
            raise
        return self

    def _launch(self, binary: str, port: int) -> subprocess.Popen[str]:
        assert self._dir is not None
        self.port = port
        path = os.path.join(self._dir, f"unbound-{port}.conf")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(unbound_config(port, self._dir, self.stubs))
        return popen([binary, "-d", "-c", path])

    def stop(self) -> None:
        """Stop unbound by its pid and remove its files; safe to call twice."""
        if self._proc is not None:
            end_child(self._proc, self._output)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.port = 0

    def __enter__(self) -> "Unbound":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
