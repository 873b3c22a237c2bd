"""A small authoritative DNS server on loopback, for tests and benchmarks.

Thread form (aiosmtpd-controller style: ``start()`` returns only after a real
query over UDP and TCP was answered)::

    with DnsServer({("host.example.com", "A"): ["192.0.2.1"]}) as srv:
        srv.set_faults("slow.example.com", delay_s=0.5)
        host, port = srv.address
        dns.query.udp(dns.message.make_query("host.example.com", "A"), host, port=port)
        assert srv.count("host.example.com", "A") == 1

Process form, so a benchmark does not share its GIL with the server::

    python -m fastlookup.testing.dnsserver --port 0 --records zone.json [--delay-ms 20]

prints ``READY <port>`` once it answers; its counts are read with the CHAOS
control queries of ``dnscontrol`` (``query_count(address)``).
``dnsprocess.DnsServerProcess`` runs it for you.

One thread owns every socket and a timer heap (``dnsloop``): a delayed answer
is a heap entry, never a sleep, so other queries are answered meanwhile, and
UDP sockets are drained between every two answers so 500 queries arriving at
once are not dropped. The ``Engine`` (``dnsengine``) decides every reply and
keeps repeated plain replies as bytes: about 3,000 new or 20,000 repeated
queries a second on one core.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype

from fastlookup.testing._proc import ServerStartError, wait_until
from fastlookup.testing.dnscontrol import COUNT_NAME
from fastlookup.testing.dnsengine import Engine
from fastlookup.testing.dnsfaults import Faults, FaultTable
from fastlookup.testing.dnsloop import Loop
from fastlookup.testing.dnszone import NameLike, RecordValues, Soa, TypeLike, Zone, to_name

__all__ = ["DnsServer", "main"]

_RCVBUF = 4 * 1024 * 1024  # room for a burst of queries (capped by net.core.rmem_max)
_BIND_ATTEMPTS = 50
_STOP_TIMEOUT_S = 5.0


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class DnsServer:
    """An authoritative test DNS server with faults and counters, run in a thread."""

    def __init__(
        self,
        records: Mapping[tuple[NameLike, TypeLike], RecordValues] | None = None,
        *,
        ttl: int = 300,
        soa: Soa | tuple[str, int, int] | Iterable[Soa | tuple[str, int, int]] | None = None,
        zone: Zone | None = None,
        port: int = 0,
        hosts: Sequence[str] = ("127.0.0.1",),
        faults: Faults | None = None,
        start_timeout_s: float = 5.0,
    ) -> None:
        if zone is not None and records is not None:
            raise ValueError("DnsServer: give records (and ttl/soa) or a zone, not both")
        for host in hosts:
            if host not in ("127.0.0.1", "::1") and not host.startswith("127."):
                raise ValueError(f"DnsServer.hosts: {host!r} is not loopback; test servers listen on 127.0.0.1 or ::1")
        self.zone = zone if zone is not None else Zone(records, ttl=ttl, soa=soa)
        self.faults = FaultTable(faults or Faults())
        self.engine = Engine(self.zone, self.faults)
        self._hosts = tuple(hosts)
        self._want_port = port
        self._start_timeout_s = start_timeout_s
        self._port = 0
        self._socks: list[socket.socket] = []
        self._loop: Loop | None = None
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []

    # -- data, faults, counts (safe while serving) ---------------------------

    def add(self, name: NameLike, rdtype: TypeLike, values: RecordValues, ttl: int | None = None) -> None:
        """Add records at runtime (see ``Zone.add``)."""
        self.zone.add(name, rdtype, values, ttl)

    def remove(self, name: NameLike, rdtype: TypeLike | None = None, values: RecordValues | None = None) -> None:
        """Remove records at runtime (see ``Zone.remove``)."""
        self.zone.remove(name, rdtype, values)

    def set_soa(self, origin: NameLike, ttl: int, minimum: int) -> None:
        """Set the SOA used for negative answers at and below ``origin`` (see ``Zone.set_soa``)."""
        self.zone.set_soa(origin, ttl, minimum)

    def set_faults(self, name: NameLike | None = None, faults: Faults | None = None, **fields: Any) -> None:
        """Replace the fault rule for query ``name`` (or the global one): ``set_faults(drop=True)``."""
        self.faults.set(to_name(name) if name is not None else None, faults or Faults(**fields))

    def clear_faults(self, name: NameLike | None = None) -> None:
        """Remove the rule for ``name``; without a name remove every rule."""
        self.faults.clear(to_name(name) if name is not None else None)

    def count(self, name: NameLike | None = None, rdtype: TypeLike | None = None) -> int:
        """Queries received (dropped ones too), optionally for one name and/or type."""
        return self.engine.count(name, rdtype)

    def reset_counts(self) -> None:
        """Forget every count."""
        self.engine.reset_counts()

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised while answering (each left its query unanswered); empty when healthy."""
        return list(self._loop.errors) if self._loop is not None else list(self._errors)

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The UDP and TCP port, the same on every host."""
        if not self._port:
            raise RuntimeError("DnsServer: not started; use `with DnsServer(...) as srv` or srv.start()")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the first host, e.g. ``("127.0.0.1", 53123)``."""
        return (self._hosts[0], self.port)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` for every host served."""
        return [(host, self.port) for host in self._hosts]

    # -- lifecycle -----------------------------------------------------------

    def _bind(self) -> tuple[list[socket.socket], list[socket.socket]]:
        """Bind UDP+TCP on every host to one port, retrying a port 0 pick that collides."""
        for _ in range(_BIND_ATTEMPTS):
            udp: list[socket.socket] = []
            tcp: list[socket.socket] = []
            port = self._want_port
            try:
                for host in self._hosts:
                    t = socket.socket(_family(host), socket.SOCK_STREAM)
                    tcp.append(t)
                    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    t.bind((host, port))
                    port = t.getsockname()[1]
                    u = socket.socket(_family(host), socket.SOCK_DGRAM)
                    udp.append(u)
                    try:
                        u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                    except OSError:
                        pass
                    u.bind((host, port))
            except OSError as exc:
                for s in udp + tcp:
                    s.close()
                if exc.errno == errno.EADDRINUSE and self._want_port == 0:
                    continue
                raise
            for t in tcp:
                t.listen(1024)
            for s in udp + tcp:
                s.setblocking(False)
            self._port = port
            return udp, tcp
        raise ServerStartError(f"DnsServer: no port free for UDP and TCP on {self._hosts} in {_BIND_ATTEMPTS} tries")

    def start(self) -> DnsServer:
        """Bind, start the serving thread, and return once it answered a real query over UDP and TCP."""
        if self._thread is not None:
            raise RuntimeError("DnsServer: already started")
        udp, tcp = self._bind()
        self._socks = udp + tcp
        self._loop = Loop(self.engine, udp, tcp)
        self._thread = threading.Thread(target=self._loop.run, name=f"dnsserver-{self._port}", daemon=True)
        self._thread.start()
        try:
            wait_until(self._answers, timeout_s=self._start_timeout_s, what=f"DnsServer on port {self._port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        """Readiness: a control query (never counted) answered over UDP and TCP on every address."""
        query = dns.message.make_query(COUNT_NAME, dns.rdatatype.TXT, dns.rdataclass.CH)
        try:
            for host, port in self.addresses:
                dns.query.udp(query, host, port=port, timeout=0.5)
                dns.query.tcp(query, host, port=port, timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return False
        return True

    def stop(self) -> None:
        """Stop the thread, join it, and close every socket. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.stopping = True
            loop.wake()
            thread.join(_STOP_TIMEOUT_S)
            if thread.is_alive():
                raise RuntimeError(f"DnsServer: serving thread did not stop in {_STOP_TIMEOUT_S}s")
            self._errors = loop.errors
        for sock in self._socks:
            sock.close()
        self._socks = []
        self._loop = None
        self._thread = None

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server as a process: print ``READY <port>`` once it answers; stop on SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m fastlookup.testing.dnsserver", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port for UDP and TCP (0: pick a free one)")
    parser.add_argument("--host", action="append", help="loopback address to serve (repeatable; default 127.0.0.1)")
    parser.add_argument("--records", help="zone JSON file (see dnszone.Zone.from_json)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay every answer by this much")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (the parent died)")
    args = parser.parse_args(argv)
    zone = Zone()
    if args.records:
        with open(args.records, encoding="utf-8") as fh:
            zone = Zone.from_json(json.load(fh))
    # Block the stop signals in every thread, then wait for them in the main one: no polling.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = DnsServer(
        zone=zone,
        port=args.port,
        hosts=tuple(args.host or ("127.0.0.1",)),
        faults=Faults(delay_s=args.delay_ms / 1000.0),
    )
    server.start()
    print(f"READY {server.port}", flush=True)
    if args.exit_on_stdin_eof:

        def watch_stdin() -> None:
            # os.read on the raw fd: a thread blocked in sys.stdin's buffered reader holds its
            # lock, and interpreter shutdown then waits a full second for it.
            fd = sys.stdin.fileno()
            while os.read(fd, 4096):
                pass
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
    signal.sigwait(stop_signals)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
