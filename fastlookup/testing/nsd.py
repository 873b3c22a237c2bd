"""Run a real nsd as a zone-transfer primary on loopback, with zones given as text.

::

    with Nsd({"bl.test": zone_text}) as primary:
        ...  # AXFR/IXFR from primary.address
        primary.update("bl.test", new_text)  # serial bump: SIGHUP, wait for the new serial

How it runs (``man nsd``, ``man nsd.conf``): ``nsd -d -c CONF`` in the
foreground (so we own the pid), with its config, zone files, pid file and
state files in a temp dir of its own; ``username: ""`` so it does not switch
user, no database, no remote control, RRL off (``rrl-ratelimit: 0``: a test
asks the same names again and again), ``provide-xfr: 127.0.0.1 NOKEY`` for
every zone. A changed zone file is read on SIGHUP; ``update`` then waits
until a SOA query shows the new serial. Stopped by pid (SIGTERM, then SIGKILL).

Gotchas: nsd 4.6 answers an IXFR request with the whole zone (AXFR form,
RFC 1995 §4 allows it); nsd wants every zone file to have a SOA and an NS.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping

import dns.message
import dns.query
import dns.rdatatype

from fastlookup.testing._proc import (
    OutputReader,
    ServerStartError,
    end_child,
    find_binary,
    popen,
    start_on_free_port,
    wait_until,
)
from fastlookup.testing.ports import free_port

__all__ = ["Nsd", "zone_text"]

_START_ATTEMPTS = 3


def zone_text(origin: str, serial: int, records: list[str], *, refresh: int = 3600, retry: int = 600,
              expire: int = 86400, minimum: int = 60) -> str:
    """A zone file: SOA (with the given timers), one NS, then ``records`` (``"name TYPE rdata"`` lines)."""
    head = [
        f"$ORIGIN {origin}.",
        "$TTL 60",
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. {serial} {refresh} {retry} {expire} {minimum}",
        f"@ IN NS ns.{origin}.",
        "ns IN A 127.0.0.1",
    ]
    return "\n".join(head + records) + "\n"


class Nsd:
    """Controller for one nsd process serving (and providing transfers of) test zones on 127.0.0.1."""

    def __init__(self, zones: Mapping[str, str], *, start_timeout_s: float = 10.0) -> None:
        if not zones:
            raise ValueError("Nsd: zones is empty; give at least one {zone: zone file text}")
        self._zones = {z.rstrip(".").lower(): text for z, text in zones.items()}
        self._start_timeout_s = start_timeout_s
        self._dir: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._output: OutputReader | None = None
        self._port = 0

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("Nsd: not started; use `with Nsd(...) as nsd` or nsd.start()")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("Nsd: not started")
        return self._proc.pid

    def output(self) -> str:
        return self._output.tail(50) if self._output else ""

    def _config(self) -> str:
        assert self._dir is not None
        lines = [
            "server:",
            f"    ip-address: 127.0.0.1@{self._port}",
            f"    port: {self._port}",
            '    database: ""',
            '    username: ""',
            '    chroot: ""',
            f"    zonesdir: \"{self._dir}\"",
            f"    pidfile: \"{self._dir}/nsd.pid\"",
            f"    xfrdfile: \"{self._dir}/xfrd.state\"",
            f"    zonelistfile: \"{self._dir}/zone.list\"",
            f"    xfrdir: \"{self._dir}\"",
            "    server-count: 1",
            "    verbosity: 1",
            "    rrl-ratelimit: 0",
            "    hide-version: yes",
            "remote-control:",
            "    control-enable: no",
        ]
        for zone in self._zones:
            lines += ["zone:", f"    name: {zone}", f"    zonefile: {zone}.zone", "    provide-xfr: 127.0.0.1 NOKEY"]
        return "\n".join(lines) + "\n"

    def _write_zone(self, zone: str) -> None:
        assert self._dir is not None
        path = os.path.join(self._dir, f"{zone}.zone")
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(self._zones[zone])
        os.replace(path + ".tmp", path)

    def serial(self, zone: str) -> int | None:
        """The serial nsd serves for ``zone`` now (None when it does not answer)."""
        query = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=self._port, timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return None
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return rrset[0].serial
        return None

    def start(self) -> Nsd:
        """Write config and zones, start nsd, return once every zone answers its SOA."""
        if self._proc is not None:
            raise RuntimeError("Nsd: already started")
        binary = find_binary("nsd")
        self._dir = tempfile.mkdtemp(prefix="fastlookup-nsd-")
        for zone in self._zones:
            self._write_zone(zone)
        try:
            self._proc, self._output = start_on_free_port(
                lambda: free_port("udp+tcp"),
                lambda port: self._launch(binary, port),
                lambda: all(self.serial(z) is not None for z in self._zones),
                timeout_s=self._start_timeout_s,
                what="nsd on 127.0.0.1@{port}",
                attempts=_START_ATTEMPTS,
            )
        except ServerStartError:
            self.stop()
            raise
        return self

    def _launch(self, binary: str, port: int) -> subprocess.Popen[str]:
        assert self._dir is not None
        self._port = port
        conf = os.path.join(self._dir, "nsd.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(self._config())
        return popen([binary, "-d", "-c", conf])

    def update(self, zone: str, text: str, serial: int) -> None:
        """Serve new text for ``zone`` (its SOA must say ``serial``): SIGHUP, then wait for the serial."""
        if self._proc is None:
            raise RuntimeError("Nsd: not started")
        self._zones[zone] = text
        self._write_zone(zone)
        os.kill(self._proc.pid, signal.SIGHUP)
        wait_until(lambda: self.serial(zone) == serial, timeout_s=self._start_timeout_s,
                   what=f"nsd serving serial {serial} of {zone}", proc=self._proc, output=self.output)

    def stop(self) -> None:
        """Stop nsd by pid and remove its directory. Safe to call twice."""
        if self._proc is not None:
            end_child(self._proc, self._output)
            self._proc = None
        self._port = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Nsd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
