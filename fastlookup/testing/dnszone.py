"""Zone data for the test DNS server: records by (name, type), SOAs, and lookup.

A ``Zone`` is built from a plain mapping so tests read like a zone file::

    Zone({("host.example.com", "A"): ["192.0.2.1"],
          ("1.2.0.192.in-addr.arpa", "PTR"): ["host.example.com"],
          ("example.com", "TXT"): ["v=spf1 -all"],
          ("example.com", "MX"): {"values": ["0 ."], "ttl": 60}},
         ttl=300, soa=Soa("example.com", ttl=3600, minimum=60))

Values are rdata in zone-file text (names are absolute, the trailing dot is
optional) except TXT, where a value is the raw text: a ``str``/``bytes`` is
one record split into 255-byte strings (RFC 1035 section 3.3.14 limits one
character-string to 255 octets), a list of strings is one record with exactly
those strings. A value may be a dict ``{"values": [...], "ttl": N}`` to give
that RRset its own TTL.

Negative answers (RFC 2308): a name that does not exist is NXDOMAIN, a name
that exists with other types (or only has names below it, RFC 8020) is
NODATA; both carry the SOA of the closest enclosing ``Soa`` origin in the
authority section. There is always a fallback SOA for the root, so every name
is "ours". The SOA is served with its configured TTL verbatim, not
``min(TTL, MINIMUM)``, so tests can check that the resolver takes the minimum.

The zone is shared between the serving thread and the test thread: every
change replaces whole RRsets under a lock, so a lookup never sees a half
changed RRset and rendering needs no lock.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

__all__ = ["Soa", "Zone", "Lookup", "RecordValues"]

RecordValues: TypeAlias = "str | bytes | Sequence[str | bytes | Sequence[str | bytes]] | Mapping[str, Any]"
NameLike: TypeAlias = "str | dns.name.Name"
TypeLike: TypeAlias = "str | int"

_IN = dns.rdataclass.IN
_MAX_CNAME_CHAIN = 8
_TXT_CHUNK = 255


class Soa(NamedTuple):
    """An SOA for negative answers: owner ``origin``, RR ``ttl`` and MINIMUM field (seconds)."""

    origin: str = "."
    ttl: int = 300
    minimum: int = 300


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of looking a question up in a ``Zone``."""

    rcode: dns.rcode.Rcode
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()


def to_name(name: NameLike) -> dns.name.Name:
    """Return ``name`` as an absolute ``dns.name.Name`` (text names need no trailing dot)."""
    return name if isinstance(name, dns.name.Name) else dns.name.from_text(name)


def to_rdtype(rdtype: TypeLike) -> dns.rdatatype.RdataType:
    """Return ``rdtype`` ("A", "txt", 16) as an ``RdataType``."""
    if isinstance(rdtype, str):
        return dns.rdatatype.from_text(rdtype.upper())
    return dns.rdatatype.RdataType.make(rdtype)


def _txt_strings(value: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    if isinstance(value, (str, bytes)):
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        return [raw[i : i + _TXT_CHUNK] for i in range(0, len(raw), _TXT_CHUNK)] or [b""]
    return [s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s for s in value]


def make_rdata(rdtype: dns.rdatatype.RdataType, value: Any) -> dns.rdata.Rdata:
    """Build one rdata of ``rdtype`` from a test value (see the module docstring)."""
    if isinstance(value, dns.rdata.Rdata):
        return value
    if rdtype == dns.rdatatype.TXT:
        return dns.rdtypes.ANY.TXT.TXT(_IN, rdtype, _txt_strings(value))
    return dns.rdata.from_text(_IN, rdtype, str(value), origin=dns.name.root, relativize=False)


def _split_values(values: RecordValues, default_ttl: int | None) -> tuple[list[Any], int | None]:
    if isinstance(values, Mapping):
        return _split_values(values["values"], values.get("ttl", default_ttl))
    if isinstance(values, (str, bytes)):
        return [values], default_ttl
    return list(values), default_ttl


def _soa_rdata(soa: Soa) -> dns.rdata.Rdata:
    origin = to_name(soa.origin)
    text = f"ns.{origin} hostmaster.{origin} 1 3600 600 86400 {soa.minimum}"
    return dns.rdata.from_text(
        _IN, dns.rdatatype.SOA, text.replace("..", "."), origin=dns.name.root, relativize=False
    )


class Zone:
    """Records and SOAs the test server answers from; safe to change while serving."""

    def __init__(
        self,
        records: Mapping[tuple[NameLike, TypeLike], RecordValues] | None = None,
        *,
        ttl: int = 300,
        soa: Soa | tuple[str, int, int] | Iterable[Soa | tuple[str, int, int]] | None = None,
    ) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._nodes: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        # Names that exist because they own data or have names below them (RFC 8020).
        self._exists: collections.Counter[dns.name.Name] = collections.Counter()
        self._soas: dict[dns.name.Name, dns.rrset.RRset] = {}
        self.version = 0  # bumped by every change; the engine's reply cache checks it
        self.set_soa(".", ttl, ttl)
        soas: Iterable[Any]
        if soa is None:
            soas = ()
        elif isinstance(soa, tuple) and soa and isinstance(soa[0], str):
            soas = (soa,)
        else:
            soas = soa  # type: ignore[assignment]
        for one in soas:
            self.set_soa(*Soa(*one))
        for (name, rdtype), values in (records or {}).items():
            self.add(name, rdtype, values)

    # -- changing data -------------------------------------------------------

    def add(self, name: NameLike, rdtype: TypeLike, values: RecordValues, ttl: int | None = None) -> None:
        """Add ``values`` to the RRset (``name``, ``rdtype``), creating it; ``ttl`` sets its TTL."""
        owner, kind = to_name(name), to_rdtype(rdtype)
        items, rr_ttl = _split_values(values, ttl)
        with self._lock:
            old = self._nodes.get(owner, {}).get(kind)
            new = dns.rrset.RRset(owner, _IN, kind)
            if old is not None:
                new.update(old)
            for value in items:
                new.add(make_rdata(kind, value))
            new.ttl = rr_ttl if rr_ttl is not None else (old.ttl if old is not None else self.ttl)
            self._put(owner, kind, new)

    def remove(self, name: NameLike, rdtype: TypeLike | None = None, values: RecordValues | None = None) -> None:
        """Remove ``values`` from an RRset, the whole RRset, or (``rdtype=None``) every RRset of ``name``."""
        owner = to_name(name)
        with self._lock:
            node = self._nodes.get(owner, {})
            kinds = list(node) if rdtype is None else [to_rdtype(rdtype)]
            for kind in kinds:
                old = node.get(kind)
                if old is None:
                    continue
                new = None
                if values is not None:
                    drop = {make_rdata(kind, v) for v in _split_values(values, None)[0]}
                    new = dns.rrset.RRset(owner, _IN, kind)
                    for rd in old:
                        if rd not in drop:
                            new.add(rd, old.ttl)
                self._put(owner, kind, new if new else None)

    def set_soa(self, origin: NameLike, ttl: int, minimum: int) -> None:
        """Serve an SOA at ``origin`` (also for SOA queries) and use it in negative answers below it."""
        owner = to_name(origin)
        rrset = dns.rrset.RRset(owner, _IN, dns.rdatatype.SOA)
        rrset.add(_soa_rdata(Soa(str(owner), ttl, minimum)))
        rrset.ttl = ttl
        with self._lock:
            self._soas[owner] = rrset
            self._put(owner, dns.rdatatype.SOA, rrset)

    def _put(self, owner: dns.name.Name, kind: dns.rdatatype.RdataType, rrset: dns.rrset.RRset | None) -> None:
        """Replace one RRset (None deletes it) and keep the existence counts right; lock held."""
        self.version += 1
        node = self._nodes.setdefault(owner, {})
        had = bool(node)
        if rrset is None:
            node.pop(kind, None)
        else:
            node[kind] = rrset
        if had == bool(node):
            return
        step = 1 if node else -1
        if not node:
            del self._nodes[owner]
        name = owner
        while True:
            self._exists[name] += step
            if self._exists[name] <= 0:
                del self._exists[name]
            if name == dns.name.root:
                break
            name = name.parent()

    # -- reading -------------------------------------------------------------

    def rrsets(self) -> list[dns.rrset.RRset]:
        """Every RRset, for serialising (``to_json``) and debugging."""
        with self._lock:
            return [rr for node in self._nodes.values() for rr in node.values()]

    def _soa_for(self, name: dns.name.Name) -> dns.rrset.RRset:
        while name not in self._soas:
            name = name.parent()  # the root SOA always exists, so this ends
        return self._soas[name]

    def lookup(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Lookup:
        """Answer one question from the data, following CNAMEs inside it (RFC 1034 section 4.3.2)."""
        answer: list[dns.rrset.RRset] = []
        name = qname
        with self._lock:
            for _ in range(_MAX_CNAME_CHAIN):
                node = self._nodes.get(name)
                if node is None:
                    if name in self._exists:  # an empty non-terminal: NODATA (RFC 8020)
                        return Lookup(dns.rcode.NOERROR, tuple(answer), (self._soa_for(name),))
                    return Lookup(dns.rcode.NXDOMAIN, tuple(answer), (self._soa_for(name),))
                if rdtype == dns.rdatatype.ANY:
                    return Lookup(dns.rcode.NOERROR, tuple(answer) + tuple(node.values()))
                found = node.get(rdtype)
                if found is not None:
                    return Lookup(dns.rcode.NOERROR, (*answer, found))
                cname = node.get(dns.rdatatype.CNAME)
                if cname is None or rdtype == dns.rdatatype.CNAME:
                    return Lookup(dns.rcode.NOERROR, tuple(answer), (self._soa_for(name),))
                answer.append(cname)
                name = cname[0].target
        return Lookup(dns.rcode.SERVFAIL, tuple(answer))  # a CNAME loop or a chain too long

    # -- JSON (the process form reads its data from a file) ------------------

    def to_json(self) -> dict[str, Any]:
        """Serialise to the JSON shape ``from_json`` reads (see ``dnsserver --records``)."""
        records: dict[str, dict[str, Any]] = {}
        soas = []
        with self._lock:
            soa_items = list(self._soas.items())
        for owner, rrset in soa_items:
            soas.append({"origin": owner.to_text(), "ttl": rrset.ttl, "minimum": rrset[0].minimum})
        for rrset in self.rrsets():
            if rrset.rdtype == dns.rdatatype.SOA and rrset.name in self._soas:
                continue
            if rrset.rdtype == dns.rdatatype.TXT:
                values: list[Any] = [[s.decode("utf-8", "surrogateescape") for s in rd.strings] for rd in rrset]
            else:
                values = [rd.to_text() for rd in rrset]
            entry: Any = values if rrset.ttl == self.ttl else {"values": values, "ttl": rrset.ttl}
            records.setdefault(rrset.name.to_text(), {})[dns.rdatatype.to_text(rrset.rdtype)] = entry
        return {"ttl": self.ttl, "soa": soas, "records": records}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Zone:
        """Build a zone from JSON data.

        The shape: ``{"ttl": N, "soa": [{"origin": .., "ttl": .., "minimum": ..}],
        "records": {name: {type: values}}}``; values as in ``Zone.add``.
        """
        unknown = set(data) - {"ttl", "soa", "records"}
        if unknown:
            raise ValueError(f"zone JSON: unknown keys {sorted(unknown)}; expected ttl, soa, records")
        ttl = int(data.get("ttl", 300))
        soas = [Soa(s["origin"], int(s["ttl"]), int(s["minimum"])) for s in data.get("soa", ())]
        zone = cls(ttl=ttl, soa=soas)
        for name, types in data.get("records", {}).items():
            for rdtype, values in types.items():
                zone.add(name, rdtype, values)
        return zone
