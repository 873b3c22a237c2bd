"""Zone-transfer mirrors against a real primary (nsd): AXFR, serial bump (IXFR asked, AXFR form), expiry."""

from __future__ import annotations

import asyncio

import pytest

from fastlookup.mirror.axfr import AxfrMirror
from fastlookup.mirror.spec import parse_spec
from fastlookup.stats import Stats
from fastlookup.testing.nsd import Nsd, zone_text
from fastlookup.testing.service import ServiceThread, service_config
from fastlookup.upstream.memory import MemoryUpstream

pytestmark = pytest.mark.slow

ZONE = "ax.test"
RECORDS_1 = [
    "2.0.0.127 A 127.0.0.2",
    '2.0.0.127 TXT "RFC 5782 test entry"',
    "*.0.0.10 A 127.0.0.3",
    '*.0.0.10 TXT "the 10.0.0/24 block"',
    "9.0.0.10 TXT \"a name with a TXT but no A\"",
    "4.3.2.1 A 127.0.0.4",
    "4.3.2.1 A 127.0.0.5",
    "test A 127.0.0.2",
]
RECORDS_2 = [r for r in RECORDS_1 if not r.startswith("4.3.2.1")] + ["8.8.8.8 A 127.0.0.6"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def primary():
    with Nsd({ZONE: zone_text(ZONE, 1, RECORDS_1, refresh=300, retry=60, expire=3600)}) as nsd:
        yield nsd


def _mirror(nsd: Nsd, clock: FakeClock, stats: Stats) -> AxfrMirror:
    return AxfrMirror("dnsbl", ZONE, parse_spec(f"axfr:127.0.0.1:{nsd.port}"), stats=stats, monotonic=clock, timeout_s=5.0)


ANSWERS_1 = [
    # (name under the zone, codes, txts)
    ("2.0.0.127", ("127.0.0.2",), ("RFC 5782 test entry",)),
    ("1.0.0.127", (), ()),
    ("7.0.0.10", ("127.0.0.3",), ("the 10.0.0/24 block",)),  # the wildcard at the closest encloser
    ("9.0.0.10", (), ()),  # exists (TXT only): no wildcard, not listed
    ("1.1.0.10", (), ()),  # the closest encloser 0.10 has no wildcard
    ("4.3.2.1", ("127.0.0.4", "127.0.0.5"), ()),
    ("test", ("127.0.0.2",), ()),
]


def test_axfr_then_serial_bump_then_expiry(primary):
    """A mirror copies the zone by AXFR, takes a serial bump (IXFR asked, nsd answers in AXFR form), and stops answering after SOA expire without a refresh."""
    clock, stats = FakeClock(), Stats()
    mirror = _mirror(primary, clock, stats)

    async def scenario() -> None:
        assert await mirror.refresh() is True
        assert mirror.last_transfer == "axfr" and mirror.data.serial == 1
        for sub, codes, txts in ANSWERS_1:
            assert mirror.answer(f"{sub}.{ZONE}") == (codes, txts), sub
        assert await mirror.refresh() is False  # same serial: nothing transferred
        assert mirror.loads == 1

        primary.update(ZONE, zone_text(ZONE, 2, RECORDS_2, refresh=300, retry=60, expire=3600), 2)
        assert await mirror.refresh() is True
        assert mirror.data.serial == 2
        assert mirror.last_transfer == "axfr"  # nsd 4.6 keeps no differences: the IXFR came back whole
        assert mirror.answer(f"4.3.2.1.{ZONE}") == ((), ())
        assert mirror.answer(f"8.8.8.8.{ZONE}") == (("127.0.0.6",), ())
        assert stats.gauges["mirror_serial"][(ZONE,)] == 2

        primary.stop()  # the primary is gone: refreshes fail, the copy answers until SOA expire
        clock.now += 3000
        assert await mirror.refresh() is False
        assert mirror.answer(f"8.8.8.8.{ZONE}") == (("127.0.0.6",), ())
        assert mirror.next_delay() == 60.0  # SOA retry after a failure
        clock.now += 700
        assert await mirror.refresh() is False
        assert mirror.expired is True and mirror.answer(f"8.8.8.8.{ZONE}") is None
        assert stats.gauges["mirror_answering"][(ZONE,)] == 0
        assert stats.counters["mirror_load_errors"][(ZONE,)] == 2

    asyncio.run(scenario())


def test_a_zone_mirrored_by_axfr_answers_dnsbl_checks(primary, short_tmp):
    """``mirror = "axfr:HOST:PORT"`` in config: the service transfers the zone at start and answers it without DNS."""
    upstream = MemoryUpstream()
    config = service_config(f"{short_tmp}/fl.sock", ["127.0.0.1:9"], dnsbl={ZONE: {"mirror": f"axfr:127.0.0.1:{primary.port}"}})
    with ServiceThread(config, upstream=upstream) as svc:
        result = svc.call("dnsbl", {"ip": "10.0.0.7", "zones": [ZONE]})
        assert result["hits"] == [{"zone": ZONE, "codes": ["127.0.0.3"], "text": "the 10.0.0/24 block", "from": "mirror"}]
        assert svc.call("stats")[f"mirror_serial/{ZONE}"] == 1
    assert upstream.queries == []
