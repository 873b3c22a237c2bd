"""The seeded workload: hosts, their DNS data and listings, and a Zipf stream of connections.

Every SMTP connection comes from one client IP; over a run the IPs follow a
Zipf law (rank ``k`` is drawn with weight ``1 / k**s``) over ``ips``
distinct addresses, as a mail server sees a few busy senders and a long tail.
Each connection asks the same five things a hook asks: PTR, FCrDNS (PTR then
A of the name), the IP on every DNSBL zone, and the client's domain on one
RHSBL zone; a zone that lists the item is asked for its TXT too, as
fastlookup does for the reply text.

Addresses come from 198.18.0.0/15 (RFC 2544, "benchmarking"), names from
``.test`` (RFC 6761): nothing here is anyone's real data. Everything is a
pure function of the seed, so two runs see the same hosts and stream.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

__all__ = ["Host", "Workload", "make_workload", "MAX_IPS", "LISTED_CODE"]

#: 198.18.0.0/15 less its first and last address.
MAX_IPS = (1 << 17) - 2
_BASE = int(ipaddress.IPv4Address("198.18.0.0"))
#: Every listing answers this code (in the 127.0.0.0/8 range of RFC 5782 §2.3).
LISTED_CODE = "127.0.0.2"
TTL_S = 3600
DNSBL_SUFFIX = "bench.test"
RHSBL_ZONE = "rhs.bench.test"
#: Shares of hosts whose PTR name resolves back (FCrDNS pass) / whose PTR
#: name points elsewhere (fail); the rest have no PTR at all (none).
SHARE_CONFIRMED = 0.85
SHARE_MISMATCH = 0.08


class Host(NamedTuple):
    """One client IP and everything the upstream servers know about it."""

    index: int
    ip: str
    rev: str  # reversed octets, the DNSBL label part (RFC 5782 §2.1)
    ptr: str | None  # the PTR name, None when the IP has no PTR
    forward: str | None  # the A record of the PTR name (== ip when it confirms)
    domain: str  # the client's domain, asked on the RHSBL zone
    zones: tuple[int, ...]  # indices of the DNSBL zones that list the IP

    @property
    def reverse_name(self) -> str:
        return self.rev + ".in-addr.arpa"


@dataclass(frozen=True)
class Workload:
    """The hosts, zones and listings of one seeded run."""

    seed: int
    zipf_s: float
    listed_share: float
    zones: tuple[str, ...]
    rhsbl_zone: str
    hosts: tuple[Host, ...]
    listed_domains: frozenset[str]

    # --- the stream ---------------------------------------------------------

    def stream(self, count: int, seed_offset: int = 0) -> list[int]:
        """``count`` host indices drawn by the Zipf law (the same list for the same seed)."""
        n = len(self.hosts)
        rng = random.Random(self.seed * 1_000_003 + 17)
        order = list(range(n))
        rng.shuffle(order)  # rank -> host: listed hosts land anywhere in the ranking
        weights = [1.0 / (k**self.zipf_s) for k in range(1, n + 1)]
        draw = random.Random(self.seed * 7_919 + 101 + seed_offset)
        return draw.choices(order, cum_weights=list(accumulate(weights)), k=count)

    # --- questions ----------------------------------------------------------

    def questions(self, host: Host) -> set[tuple[str, str]]:
        """Every distinct DNS question a full check of ``host`` asks upstream."""
        out = {(host.reverse_name, "PTR")}
        if host.ptr is not None:
            out.add((host.ptr, "A"))
        for k, zone in enumerate(self.zones):
            name = host.rev + "." + zone
            out.add((name, "A"))
            if k in host.zones:
                out.add((name, "TXT"))
        name = host.domain + "." + self.rhsbl_zone
        out.add((name, "A"))
        if host.domain in self.listed_domains:
            out.add((name, "TXT"))
        return out

    def distinct_questions(self, indices) -> int:
        """How many distinct questions the connections of ``indices`` ask in all."""
        seen: set[tuple[str, str]] = set()
        hosts = self.hosts
        for i in set(indices):
            seen |= self.questions(hosts[i])
        return len(seen)

    # --- upstream data ------------------------------------------------------

    def dns_records(self) -> dict[tuple[str, str], list[str]]:
        """PTR and A records for the test authoritative server."""
        records: dict[tuple[str, str], list[str]] = {}
        for h in self.hosts:
            if h.ptr is not None:
                records[(h.reverse_name, "PTR")] = [h.ptr + "."]
                records[(h.ptr, "A")] = [h.forward]  # type: ignore[list-item]
        return records

    def rbldnsd_zones(self) -> dict[str, tuple[str, str]]:
        """``{zone: (dataset type, data)}`` for rbldnsd: one ip4set per DNSBL zone, a dnset for RHSBL."""
        soa = f"$SOA {TTL_S} ns.{DNSBL_SUFFIX}. hostmaster.{DNSBL_SUFFIX}. 1 600 300 86400 {TTL_S}\n"
        head = soa + f"$NS {TTL_S} ns.{DNSBL_SUFFIX}.\n$TTL {TTL_S}\n"
        out: dict[str, tuple[str, str]] = {}
        for k, zone in enumerate(self.zones):
            lines = [f"{h.ip} :{LISTED_CODE}:Listed by {zone}: $" for h in self.hosts if k in h.zones]
            out[zone] = ("ip4set", head + "\n".join(lines) + "\n")
        lines = [f"{d} :{LISTED_CODE}:Domain listed by {self.rhsbl_zone}" for d in sorted(self.listed_domains)]
        out[self.rhsbl_zone] = ("dnset", head + "\n".join(lines) + "\n")
        return out

    # --- the answers the service gives (for the floor's dict) -----------------

    def expected(self, host: Host) -> dict[str, dict]:
        """The wire results of ptr/fcrdns/dnsbl/rhsbl for ``host`` (protocol.md shapes)."""
        if host.ptr is None:
            ptr = {"status": "nxdomain", "records": [], "ttl": TTL_S, "from": "memory"}
            fcrdns = {"result": "none", "names": [], "confirmed": None}
        else:
            ptr = {"status": "ok", "records": [host.ptr], "ttl": TTL_S, "from": "memory"}
            ok = host.forward == host.ip
            fcrdns = {"result": "pass" if ok else "fail", "names": [host.ptr], "confirmed": host.ptr if ok else None}
        hits = [
            {"zone": z, "codes": [LISTED_CODE], "text": f"Listed by {z}: {host.ip}"}
            for k, z in enumerate(self.zones)
            if k in host.zones
        ]
        dnsbl = {"listed": bool(hits), "hits": hits, "unknown": []}
        rhits = []
        if host.domain in self.listed_domains:
            rhits = [{"zone": self.rhsbl_zone, "codes": [LISTED_CODE], "text": f"Domain listed by {self.rhsbl_zone}"}]
        rhsbl = {"listed": bool(rhits), "hits": rhits, "unknown": []}
        return {"ptr": ptr, "fcrdns": fcrdns, "dnsbl": dnsbl, "rhsbl": rhsbl}

    def describe(self) -> dict:
        """The workload's parameters and shape, for results.json."""
        listed = sum(1 for h in self.hosts if h.zones)
        return {
            "seed": self.seed,
            "distinct_ips": len(self.hosts),
            "zipf_s": self.zipf_s,
            "listed_share": self.listed_share,
            "listed_ips": listed,
            "dnsbl_zones": list(self.zones),
            "rhsbl_zone": self.rhsbl_zone,
            "distinct_domains": len({h.domain for h in self.hosts}),
            "listed_domains": len(self.listed_domains),
            "share_fcrdns_pass": SHARE_CONFIRMED,
            "share_fcrdns_fail": SHARE_MISMATCH,
            "share_no_ptr": round(1 - SHARE_CONFIRMED - SHARE_MISMATCH, 4),
            "ttl_s": TTL_S,
            "lookups_per_check": "ptr + fcrdns + dnsbl (all zones) + rhsbl",
            "distinct_questions_all_ips": self.distinct_questions(range(len(self.hosts))),
        }


def make_workload(ips: int, listed_share: float, zones: int, seed: int, zipf_s: float = 1.1) -> Workload:
    """Build the hosts of one run; raises ValueError naming a bad parameter."""
    if not 1 <= ips <= MAX_IPS:
        raise ValueError(f"--ips: {ips} is out of range (1..{MAX_IPS}, the size of 198.18.0.0/15)")
    if not 0.0 <= listed_share <= 1.0:
        raise ValueError(f"--listed-share: {listed_share} is not a share between 0 and 1")
    if not 1 <= zones <= 32:
        raise ValueError(f"--zones: {zones} is out of range (1..32)")
    rng = random.Random(seed)
    zone_names = tuple(f"bl{k}.{DNSBL_SUFFIX}" for k in range(zones))
    n_domains = max(2, ips // 8)
    domains = [f"d{j}.test" for j in range(n_domains)]
    listed = set(rng.sample(range(ips), round(listed_share * ips)))
    hosts = []
    for i in range(ips):
        ip = str(ipaddress.IPv4Address(_BASE + 1 + i))
        rev = ".".join(reversed(ip.split(".")))
        domain = domains[rng.randrange(n_domains)]
        roll = rng.random()
        if roll < SHARE_CONFIRMED:
            ptr, forward = f"h{i}.{domain}", ip
        elif roll < SHARE_CONFIRMED + SHARE_MISMATCH:
            ptr, forward = f"h{i}.{domain}", "192.0.2.1"
        else:
            ptr, forward = None, None
        in_zones: tuple[int, ...] = ()
        if i in listed:
            in_zones = tuple(k for k in range(zones) if rng.random() < 0.5) or (rng.randrange(zones),)
        hosts.append(Host(i, ip, rev, ptr, forward, domain, in_zones))
    listed_domains = frozenset(rng.sample(domains, round(listed_share * n_domains)))
    return Workload(seed, zipf_s, listed_share, zone_names, RHSBL_ZONE, tuple(hosts), listed_domains)
