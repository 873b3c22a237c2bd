"""A zone mirrored by zone transfer (``mirror = "axfr:HOST[:PORT]"``), kept fresh by its SOA.

The secondary's side of RFC 1034 §4.3.5 / RFC 1996 timers, without NOTIFY:

* first an AXFR (RFC 5936); then every SOA *refresh* seconds a SOA query,
  and when the primary's serial is newer (RFC 1982 serial arithmetic) an
  IXFR (RFC 1995) from the serial we hold; a primary that does not keep
  differences answers it with the whole zone, which dnspython applies as an
  AXFR (``last_transfer`` says which it was);
* after a failure, the next try is *retry* seconds later;
* when nothing succeeded for *expire* seconds the copy stops answering
  (``answer`` gives None) and the zone is asked by DNS again until a
  transfer succeeds (documented in docs/mirrors.md).

The transfer and the index build run in a worker thread (dnspython's sync
``inbound_xfr`` over TCP, each message bounded by ``timeout_s``, the whole
by ``lifetime_s``); the event loop only swaps the finished copy in.

Answers follow DNS, not rbldnsd: the A and TXT records of the name, or of
the wildcard at its closest encloser (RFC 4592) when the name does not exist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.serial
import dns.xfr
import dns.zone

from .source import Mirror
from .spec import MirrorSpec

__all__ = ["AxfrMirror", "DnsZoneData", "MIN_TIMER_S", "MAX_TIMER_S"]

log = logging.getLogger("fastlookup.mirror")

#: SOA timers are clamped to this range (a zone may say 0 or years).
MIN_TIMER_S = 1.0
MAX_TIMER_S = 7 * 86400.0
_EMPTY: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


class DnsZoneData:
    """An immutable index of a transferred zone: A/TXT by relative name, and every name that exists."""

    __slots__ = ("records", "exists", "entries", "nbytes", "loaded_at", "mtime", "serial", "warnings", "timers")
    #: What ``Mirror.answer`` reads of a copy (as of a ``ZoneData``): no IPv4-set shortcut here.
    quick = None

    def __init__(self, zone: dns.zone.Zone, loaded_at: float) -> None:
        records: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        exists: set[str] = set()
        interned: dict[Any, Any] = {}
        for name, node in zone.nodes.items():
            rel = name.to_text().lower() if name != dns.name.empty else ""
            if rel == "@":
                rel = ""
            # The name and every ancestor up to the apex exist (empty non-terminals too).
            part = rel
            while part and part not in exists:
                exists.add(part)
                j = part.find(".")
                part = part[j + 1 :] if j >= 0 else ""
            codes: tuple[str, ...] = ()
            txts: tuple[str, ...] = ()
            for rdataset in node.rdatasets:
                if rdataset.rdtype == dns.rdatatype.A:
                    codes = tuple(dict.fromkeys(rd.address for rd in rdataset))
                elif rdataset.rdtype == dns.rdatatype.TXT:
                    txts = tuple(dict.fromkeys(b"".join(rd.strings).decode("utf-8", errors="replace") for rd in rdataset))
            if codes:
                value = (codes, txts)
                records[rel] = interned.setdefault(value, value)
        soa = zone.get_soa()
        self.records = records
        self.exists = frozenset(exists)
        self.entries = len(records)
        self.nbytes = sum(len(k) + 120 for k in records) + 60 * len(exists)
        self.loaded_at = loaded_at
        self.mtime = 0.0
        self.serial = soa.serial
        self.warnings = 0
        self.timers = tuple(min(max(float(t), MIN_TIMER_S), MAX_TIMER_S) for t in (soa.refresh, soa.retry, soa.expire))

    def answer(self, sub: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        found = self.records.get(sub)
        if found is not None:
            return found
        if sub in self.exists:
            return _EMPTY  # the name exists without A records: NODATA, no wildcard
        name = sub
        while name:
            j = name.find(".")
            parent = name[j + 1 :] if j >= 0 else ""
            if not parent or parent in self.exists:  # the closest encloser
                return self.records.get("*." + parent if parent else "*", _EMPTY)
            name = parent
        return _EMPTY

    general = answer  # every query form takes this one way


class _Recorder:
    """A transaction manager around a zone that notes whether a transfer replaced it whole (AXFR form)."""

    def __init__(self, zone: dns.zone.Zone) -> None:
        self.zone = zone
        self.replaced = False

    def reader(self):
        return self.zone.reader()

    def writer(self, replacement: bool = False):
        self.replaced = self.replaced or replacement
        return self.zone.writer(replacement)

    def origin_information(self):
        return self.zone.origin_information()

    def get_class(self):
        return self.zone.get_class()

    def from_wire_origin(self):
        return self.zone.from_wire_origin()


class AxfrMirror(Mirror):
    """A zone copied from a primary by AXFR/IXFR and refreshed on its SOA timers."""

    def __init__(self, kind: str, zone: str, spec: MirrorSpec, *, timeout_s: float = 10.0, lifetime_s: float = 600.0,
                 max_names: int = 20_000_000, monotonic: Callable[[], float] = time.monotonic, **kw: Any) -> None:
        super().__init__(kind, zone, spec, **kw)
        self.timeout_s = timeout_s
        self.lifetime_s = lifetime_s
        self.max_names = max_names
        self.monotonic = monotonic
        self._zone: dns.zone.Zone | None = None  # touched only by the worker thread
        self.last_ok: float | None = None  # monotonic time of the last successful refresh
        self.last_transfer = ""  # "axfr", "ixfr" or "" (nothing new)
        self.failures = 0
        self.expired = False

    # --- the worker-thread part ----------------------------------------------------------

    def _soa_serial(self) -> int:
        query = dns.message.make_query(self.zone + ".", dns.rdatatype.SOA)
        reply = dns.query.tcp(query, self.spec.host, port=self.spec.port, timeout=self.timeout_s)
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return rrset[0].serial
        raise dns.exception.FormError(f"no SOA for {self.zone} in the primary's answer (rcode {reply.rcode()})")

    def _transfer(self) -> DnsZoneData | None:
        """One refresh in the worker thread: a new index, or None when the serial did not move."""
        zone = self._zone
        if zone is not None:
            current = zone.get_soa().serial
            serial = self._soa_serial()
            if not dns.serial.Serial(serial) > current:
                self.last_transfer = ""
                return None
            work = zone
            query, _ = dns.xfr.make_query(zone, serial=current)  # IXFR from the serial we hold
        else:
            work = dns.zone.Zone(self.zone + ".")
            query = None  # AXFR
        recorder = _Recorder(work)
        try:
            dns.query.inbound_xfr(self.spec.host, recorder, query=query, port=self.spec.port,
                                  timeout=self.timeout_s, lifetime=self.lifetime_s)
        except dns.exception.FormError:
            if query is None:
                raise
            work = dns.zone.Zone(self.zone + ".")  # a broken IXFR: take the whole zone instead
            recorder = _Recorder(work)
            dns.query.inbound_xfr(self.spec.host, recorder, port=self.spec.port, timeout=self.timeout_s,
                                  lifetime=self.lifetime_s)
        if len(work.nodes) > self.max_names:
            raise dns.exception.FormError(f"{len(work.nodes)} names, over the limit of {self.max_names}")
        data = DnsZoneData(work, self.clock())
        self._zone = work
        self.last_transfer = "axfr" if recorder.replaced else "ixfr"
        return data

    # --- the event-loop part ----------------------------------------------------------------

    async def refresh(self) -> bool:
        """Check the serial and transfer what changed (in a thread); True when a new copy was swapped in."""
        try:
            data = await asyncio.to_thread(self._transfer)
        except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
            self.failures += 1
            self.failed(f"zone transfer from {self.spec.host}:{self.spec.port} failed: {type(exc).__name__}: {exc}")
            self.check_expiry()
            return False
        self.failures = 0
        self.last_ok = self.monotonic()
        if data is None:
            if self.expired and self.data is None and self._last_data is not None:
                self._revive()
            return False
        self.expired = False
        self._last_data = data
        self.loaded(data, [])
        return True

    _last_data: DnsZoneData | None = None

    def _revive(self) -> None:
        self.expired = False
        self.swap(self._last_data)
        log.info("mirror %s: the primary answers again; serving serial %s", self.display, self._last_data.serial)

    def check_expiry(self) -> bool:
        """Stop answering once no refresh succeeded for the SOA expire time; True when expired."""
        data = self._last_data
        if data is None or self.last_ok is None:
            return False
        if self.monotonic() - self.last_ok > data.timers[2]:
            if not self.expired:
                self.expired = True
                self.swap(None)
                log.error("mirror %s: no successful refresh for %.0f s (SOA expire): the zone is asked by DNS until a transfer succeeds",
                          self.display, data.timers[2])
            return True
        return False

    def next_delay(self) -> float:
        data = self._last_data
        if data is None:
            return 60.0 if not self.failures else min(60.0 * self.failures, 600.0)
        return data.timers[1] if self.failures else data.timers[0]

    def snapshot(self) -> dict:
        out = super().snapshot()
        out["last_transfer"] = self.last_transfer
        out["expired"] = self.expired
        return out

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.next_delay())  # the SOA refresh/retry timer
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the refreshing
                log.exception("mirror %s: refresh failed: %s", self.display, exc)
