"""Differential test: a mirror answers exactly what a real rbldnsd answers for the same files.

One rbldnsd serves one zone per dataset type (the data has every feature of
the format: defaults per file, own values, ``:A`` only, ``$`` and ``$n``,
short forms, ranges, CIDRs, exclusions, wildcards, comments, bad lines, two
files per dataset); the mirror loads the same files. For every entry, both
edges of every range and the addresses just outside, every exclusion and
thousands of random names, the A records and TXT strings must be equal.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket

import dns.message
import dns.rdatatype
import pytest

from fastlookup.mirror import ip4
from fastlookup.mirror.loader import load_files
from fastlookup.testing.rbldnsd import Rbldnsd

pytestmark = pytest.mark.slow

SEED = 14


def _ip4(a: int) -> str:
    return str(ipaddress.IPv4Address(a))


def _rev4(a: int) -> str:
    return ".".join(reversed(_ip4(a).split(".")))


def _rev6(a: int) -> str:
    return ".".join(reversed(f"{a:032x}"))


IP4SET_1 = """\
# ip4set: every feature of the format, then generated entries
; a comment of the other kind
:3:Listed $ see http://bl.test/lookup?ip=$
127.0.0.2 :2:RFC 5782 test entry
!127.0.0.1
10.1
10.2.3 :4
10.3.0.0/20 :5:cidr $
192.168.1.5-192.168.2.7 :6:range $ here
172.16.0.0-172.31.255.255
20.0.0.1-3 :7:short range
!10.1.2.3
!10.1.3.0/24
10.1.3.7 :8:a /32 inside an excluded /24
1.2.3.4
1.2.3.4 :9:second value
1.2.3.4 :9:second value
$1 variable-one
30.0.0.1 :10:vars $1 $2 $$ end $
40.0.0.0/8 :11
!40.5.0.0/16
40.5.6.0/24 :12
   50.0.0.1   :13:  padded text
60.0.0.1 # comment after an entry
70.0.0.1 plain text as TXT $
80.0.0.0/7 :14
90.0.0.0-90.0.1.255 :15
100.64.0.0/10
77.77.77.77:16:no blank before the value
88.88.88.88 :127.0.0.17
88.88.88.89 :127.18:two-part A
10.1.2.3/16
300.1.1.1
10
1.2.3.4x
5.6.7.8 :0:bad A
5.6.7.9 :2x
:127.0.0.20:new default $
110.0.0.1
"""

IP4SET_2 = """\
# second file of the same dataset: the default of file 1 does not carry over
120.0.0.1
130.0.0.1 """ + " " * 65530 + """:22:past rbldnsd's longest line: not read
120.0.0.0/24 :21:a /24 under a /32
!120.0.0.2
"""

IP4TRIE = """\
$= base template [$=] for $
:2:trie $
10.0.0.0/8
10.1.0.0/16 :3:nested $
!10.1.2.0/24
10.1.2.128/25 :4
10.1.0.0/16 :9:duplicate, ignored
10.2/16 :5
192.0.2.1/32 :6:host
198.51.100.0/24 :7
!198.51.100.7
10.3.0.0
10.4.0.1/24
$MAXRANGE4 /12
11.0.0.0/8 :8:too big after $MAXRANGE4
11.16.0.0/12 :9:=raw, no base template
"""

IP6TRIE = """\
:2:six $
2001:db8::/32
!2001:db8:1::/48
2001:db8:1:2::/64 :3:inner $
::ffff:7f00:2 :2:RFC 5782 test entry
::1/128 :4
2001:db8:ffff :5:short form
2001:db9::/32 :6
2001:db9::1/64
"""

IP6TSET = """\
:4:tset $
:5:ignored second default
2001:db8:1:2
2001:db8:1:3 :9:values are ignored in ip6tset
!2001:db8:1:2::5
2001:db8:1::/64
!2001:db8:1:3
"""

DNSET = """\
:2:dn $
example.com
.wild.com :3
*.sub.org :4:sub $
!bad.wild.com
!.ex.wild.com
Upper.CASE.net :5
trailing.dot.
test :127.0.0.2:RFC 5782 test entry
!invalid
both.net :6:one
both.net :7:two
a..b
"""


COMBINED = """\
# combined: several datasets on subzones of one zone
$1 zone-variable
$DATASET ip4set @
:2:base $ $1
1.2.3.4
10.0.0.0/8 :3
!10.1.2.3
$DATASET dnset dbl
:4:dn $
example.com
.wild.net :5
$DATASET ip4trie:named sub.deeper
10.0.0.0/8 :6:trie $
$DATASET ip4trie sub
10.0.0.0/8 :7:shallower $
$2 set-inside
$DATASET ip4set @
1.2.3.4 :8:second dataset at the base $2
"""


def _random4(rng: random.Random) -> tuple[str, list[int]]:
    """Generated ip4set lines (single IPs, ranges, CIDRs, exclusions) and the addresses they touch."""
    lines = []
    probes = []
    for _ in range(1500):
        a = rng.randrange(1 << 32)
        lines.append(f"{_ip4(a)}" + (f" :{rng.randrange(2, 12)}:gen $" if rng.random() < 0.3 else ""))
        probes.append(a)
    for _ in range(150):
        a = rng.randrange(1 << 32)
        b = min(a + rng.randrange(1, 5000), (1 << 32) - 1)
        lines.append(f"{_ip4(a)}-{_ip4(b)} :{rng.randrange(2, 12)}")
        probes += [a - 1, a, b, b + 1]
    for _ in range(100):
        bits = rng.randrange(12, 31)
        a = rng.randrange(1 << 32) & (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        lines.append(f"{_ip4(a)}/{bits}")
        b = a | ((1 << (32 - bits)) - 1)
        probes += [a - 1, a, b, b + 1]
        x = rng.randrange(a, b + 1)
        lines.append(f"!{_ip4(x)}")
        probes.append(x)
    return "\n".join(lines) + "\n", [p & 0xFFFFFFFF for p in probes]


def _data_probes4(text: str) -> list[int]:
    """Both edges of every listed range and the addresses just outside (parsed leniently for probing)."""
    out = []
    for line in text.splitlines():
        word = line.strip().lstrip("!").split(" ")[0].split(":")[0]
        try:
            if "-" in word:
                lo, hi = word.split("-")
                if hi.count(".") == 0:
                    hi = lo.rsplit(".", 1)[0] + "." + hi
                a, b = int(ipaddress.IPv4Address(lo)), int(ipaddress.IPv4Address(hi))
            else:
                while word.count(".") < 3 and "/" not in word and word:
                    word += ".0"
                net = ipaddress.IPv4Network(word, strict=False)
                a, b = int(net.network_address), int(net.broadcast_address)
        except ValueError:
            continue
        out += [a - 1, a, b, b + 1, (a + b) // 2]
    return [p & 0xFFFFFFFF for p in out]


def _data_probes6(text: str) -> list[int]:
    out = []
    for line in text.splitlines():
        word = line.strip().lstrip("!").split(" ")[0]
        if word.startswith(":") and not word.startswith("::"):
            continue
        try:
            if "/" not in word and "::" not in word:
                word = word + "::" if word.count(":") < 7 else word
            net = ipaddress.IPv6Network(word if "/" in word else word + "/128" if "::" in word else word, strict=False)
        except ValueError:
            continue
        a = int(net.network_address)
        out += [a - 1, a, a + 5, a + (1 << 64) - 1, a + (1 << 64), a | ((1 << (128 - net.prefixlen)) - 1)]
    return [p & ((1 << 128) - 1) for p in out]


class RbldnsdClient:
    """ANY queries to one rbldnsd over one UDP socket: (sorted A, sorted TXT)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2.0)
        self.sock.connect(("127.0.0.1", port))

    def ask(self, name: str) -> tuple[list[str], list[str]]:
        q = dns.message.make_query(name + ".", dns.rdatatype.ANY)
        self.sock.send(q.to_wire())
        while True:
            r = dns.message.from_wire(self.sock.recv(4096))
            if r.id == q.id:
                break
        assert not r.flags & dns.flags.TC, f"{name}: truncated answer, keep the test data small"
        codes, txts = [], []
        for rrset in r.answer:
            for rd in rrset:
                if rrset.rdtype == dns.rdatatype.A:
                    codes.append(rd.address)
                elif rrset.rdtype == dns.rdatatype.TXT:
                    txts.append(b"".join(rd.strings).decode("utf-8", errors="replace"))
        return sorted(codes), sorted(txts)

    def close(self) -> None:
        self.sock.close()


def _write(tmp_path, name: str, text: str) -> str:
    path = os.path.join(tmp_path, name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    rng = random.Random(SEED)
    gen4, gen_probes4 = _random4(rng)
    ip4set_files = (IP4SET_1 + gen4, IP4SET_2)
    dn_gen = [f"d{rng.randrange(10**6)}.example.org" for _ in range(300)]
    dn_text = DNSET + "\n".join(("." if i % 3 == 0 else "") + d for i, d in enumerate(dn_gen)) + "\n"
    t6_gen = "\n".join(f"{ipaddress.IPv6Address(rng.randrange(1 << 128) & ~((1 << 64) - 1))}/64 :{rng.randrange(2, 9)}" for _ in range(200))
    ts6_gen = "\n".join(":".join(f"{rng.randrange(1 << 16):x}" for _ in range(4)) for _ in range(200))
    zones = {
        "s4.test": ("ip4set", ip4set_files),
        "t4.test": ("ip4trie", IP4TRIE),
        "t6.test": ("ip6trie", IP6TRIE + t6_gen + "\n"),
        "ts6.test": ("ip6tset", IP6TSET + ts6_gen + "\n"),
        "dn.test": ("dnset", dn_text),
        "c.test": ("combined", COMBINED),
    }
    tmp = tmp_path_factory.mktemp("mirror")
    mirrors = {}
    for zone, (kind, data) in zones.items():
        texts = data if isinstance(data, tuple) else (data,)
        paths = [_write(tmp, f"{zone}.{i}", t) for i, t in enumerate(texts)]
        # Twice: as loaded, and with every ip4set part indexed by second octet (big feeds are).
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ip4, "INDEX_MIN", 1)
            indexed = load_files(kind, paths)[0]
        mirrors[zone] = (load_files(kind, paths)[0], indexed)
    probes: dict[str, list[str]] = {z: [] for z in zones}
    p4 = set(gen_probes4 + _data_probes4(IP4SET_1 + IP4SET_2) + [rng.randrange(1 << 32) for _ in range(2000)])
    probes["s4.test"] = [_rev4(a) for a in sorted(p4)]
    t4 = set(_data_probes4(IP4TRIE) + [rng.randrange(1 << 32) for _ in range(500)])
    probes["t4.test"] = [_rev4(a) for a in sorted(t4)]
    for zone, text in (("t6.test", IP6TRIE + t6_gen), ("ts6.test", IP6TSET + ts6_gen)):
        p6 = set(_data_probes6(text) + [rng.randrange(1 << 128) for _ in range(300)])
        p6 |= {0xFFFF7F000002, 0xFFFF7F000001, 0xFFFF01020304, 0x2002_0102_0304 << 80}
        probes[zone] = [_rev6(a) for a in sorted(p6)]
        probes[zone] += ["2.0.0.127", "4.3.2.1"]
    names = ["example.com", "x.example.com", "wild.com", "a.wild.com", "b.a.wild.com", "bad.wild.com",
             "x.bad.wild.com", "ex.wild.com", "y.ex.wild.com", "sub.org", "a.sub.org", "a.b.sub.org",
             "upper.case.net", "trailing.dot", "test", "invalid", "both.net", "x.both.net", "com",
             "2.0.0.127", "unlisted.example"]
    for d in dn_gen:
        names += [d, "www." + d, d.split(".", 1)[1]]
    names += [f"r{rng.randrange(10**6)}.example.org" for _ in range(300)]
    probes["dn.test"] = names
    probes["c.test"] = ["4.3.2.1", "3.2.1.10", "4.2.1.10", "4.3.2.1.dbl", "example.com.dbl", "a.wild.net.dbl", "wild.net.dbl",
                        "3.2.1.10.sub", "3.2.1.10.sub.deeper", "3.2.1.10.x.sub.deeper", "dbl", "sub", "example.com",
                        "1.1.1.1", "3.2.1.10.other", _rev6(0xFFFF01020304), _rev6(0x2002_0102_0304 << 80),
                        _rev6(0xFFFF0A010203), _rev6(0x20010DB8 << 96)]
    with Rbldnsd(zones, strict=False) as rbl:
        client = RbldnsdClient(rbl.port)
        try:
            yield mirrors, probes, client
        finally:
            client.close()


@pytest.mark.parametrize("zone", ["s4.test", "t4.test", "t6.test", "ts6.test", "dn.test", "c.test"])
def test_mirror_answers_as_rbldnsd(world, zone):
    """For every entry, range edge, exclusion and thousands of random names the mirror's A and TXT equal rbldnsd's."""
    mirrors, probes, client = world
    data, indexed = mirrors[zone]
    diffs = []
    listed = 0
    for sub in probes[zone]:
        theirs = client.ask(f"{sub}.{zone}")
        listed += bool(theirs[0])
        for copy in (data, indexed):
            codes, txts = copy.answer(sub)
            ours = (sorted(codes), sorted(txts))
            if ours != theirs:
                diffs.append((sub, theirs, ours))
    assert not diffs, f"{len(diffs)} of {len(probes[zone])} differ, first: {diffs[:5]}"
    assert listed >= 5, "the probes must hit listed entries too"
