"""Run the test DNS server as its own process (the benchmark's form).

A server thread in the benchmark's process would compete with the code under
measurement for the GIL, so ``bench/`` runs ``python -m
fastlookup.testing.dnsserver`` in a child and reads its counts with CHAOS
control queries. The child exits when its stdin closes, so a killed parent
leaves no stray server behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping

from fastlookup.testing._proc import OutputReader, ServerStartError, end_child, start_python_module
from fastlookup.testing.dnscontrol import query_count, reset_count
from fastlookup.testing.dnszone import NameLike, RecordValues, Soa, TypeLike, Zone

__all__ = ["DnsServerProcess"]


class DnsServerProcess:
    """Controller for ``python -m fastlookup.testing.dnsserver`` in a child process."""

    def __init__(
        self,
        records: Mapping[tuple[NameLike, TypeLike], RecordValues] | None = None,
        *,
        ttl: int = 300,
        soa: Soa | tuple[str, int, int] | Iterable[Soa | tuple[str, int, int]] | None = None,
        zone: Zone | None = None,
        port: int = 0,
        delay_s: float = 0.0,
        start_timeout_s: float = 10.0,
    ) -> None:
        if zone is not None and records is not None:
            raise ValueError("DnsServerProcess: give records (and ttl/soa) or a zone, not both")
        self.zone = zone if zone is not None else Zone(records, ttl=ttl, soa=soa)
        self._want_port = port
        self._delay_s = delay_s
        self._start_timeout_s = start_timeout_s
        self._port = 0
        self._dir: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._output: OutputReader | None = None

    @property
    def pid(self) -> int:
        """The child's pid (for benchmarks that pin or inspect it)."""
        if self._proc is None:
            raise RuntimeError("DnsServerProcess: not started")
        return self._proc.pid

    @property
    def port(self) -> int:
        """The port from the child's ``READY <port>`` line."""
        if not self._port:
            raise RuntimeError("DnsServerProcess: not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", port)``."""
        return ("127.0.0.1", self.port)

    def count(self) -> int:
        """Total counted queries, read with a control query."""
        return query_count(self.address)

    def reset_counts(self) -> None:
        """Reset the child's counts with a control query."""
        reset_count(self.address)

    def start(self) -> DnsServerProcess:
        """Write the zone JSON, start the child, and return after its ``READY`` line."""
        if self._proc is not None:
            raise RuntimeError("DnsServerProcess: already started")
        self._dir = tempfile.mkdtemp(prefix="fastlookup-dns-")
        records = os.path.join(self._dir, "zone.json")
        with open(records, "w", encoding="utf-8") as fh:
            json.dump(self.zone.to_json(), fh)
        args = ["--port", str(self._want_port), "--records", records]
        args += ["--delay-ms", str(self._delay_s * 1000.0), "--exit-on-stdin-eof"]
        try:
            self._proc, self._output, self._port = start_python_module(
                "fastlookup.testing.dnsserver", args, timeout_s=self._start_timeout_s, what="DnsServerProcess")
        except ServerStartError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the child by pid (SIGTERM, then SIGKILL) and remove its files. Safe to call twice."""
        if self._proc is not None:
            end_child(self._proc, self._output)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._port = 0

    def __enter__(self) -> DnsServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
