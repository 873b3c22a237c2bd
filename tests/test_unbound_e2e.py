"""End to end through a real recursive resolver: the service asks unbound, unbound asks the test servers.

Production puts fastlookup in front of the site's resolver, not in front of
the authoritative servers. Here a real unbound (qname minimisation off, stub
zones) sends ``example.test`` and ``2.0.192.in-addr.arpa`` to the test DNS
server and the ``bl.test`` / ``dbl.test`` lists to rbldnsd, and the service's
only upstream is that unbound.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fastlookup.testing.service import ServiceThread, service_config
from fastlookup.testing.unbound import Unbound
from fixtures_servers import start_or_skip

pytestmark = pytest.mark.slow


@pytest.fixture
def unbound(dns_server, rbldnsd) -> Iterator[Unbound]:
    """A real unbound whose stub zones are the test DNS server and rbldnsd."""
    server = Unbound({
        "example.test": dns_server.address,
        "2.0.192.in-addr.arpa": dns_server.address,
        "bl.test": rbldnsd.address,
        "dbl.test": rbldnsd.address,
    })
    start_or_skip(server.start, "unbound")
    yield server
    server.stop()


@pytest.fixture
def through_unbound(unbound, short_tmp) -> Iterator[ServiceThread]:
    """A service whose one upstream server is the unbound above (no routing of its own)."""
    config = service_config(
        f"{short_tmp}/fl.sock", [unbound.address],
        dnsbl={"bl.test": {}}, rhsbl={"dbl.test": {}},
        policy={"default": {"dnsbl": ["bl.test"], "rhsbl": ["dbl.test"], "allow": [], "deadline_s": 3.0}},
    )
    with ServiceThread(config) as svc:
        yield svc


def test_ptr_fcrdns_and_dnsbl_through_a_real_resolver(through_unbound, dns_server):
    """PTR, FCrDNS (pass and a forged PTR) and DNSBL/RHSBL hits and misses come right through unbound."""
    with through_unbound.client(timeout=5) as client:
        ptr = client.ptr("192.0.2.1")
        assert (ptr["status"], ptr["records"], ptr["from"]) == ("ok", ["host.example.test"], "upstream")
        assert client.fcrdns("192.0.2.1") == {"result": "pass", "names": ["host.example.test"],
                                              "confirmed": "host.example.test"}
        assert client.fcrdns("192.0.2.66")["result"] == "fail"  # its PTR name does not resolve back
        listed = client.dnsbl("192.0.2.99")
        assert listed == {"listed": True, "unknown": [],
                          "hits": [{"zone": "bl.test", "codes": ["127.0.0.2"], "text": "Listed: see https://bl.test/192.0.2.99"}]}
        assert client.dnsbl("192.0.2.1") == {"listed": False, "hits": [], "unknown": []}
        assert client.rhsbl("spam.example")["hits"] == [{"zone": "dbl.test", "codes": ["127.0.0.2"], "text": "Spam domain"}]
        assert client.rhsbl("example.test") == {"listed": False, "hits": [], "unknown": []}
        verdict = client.check("192.0.2.99")
        assert (verdict["action"], verdict["fail_open"]) == ("reject", False)
    # The names went through unbound to the test DNS server, each asked there once.
    assert dns_server.count("1.2.0.192.in-addr.arpa", "PTR") == 1
    assert dns_server.count("host.example.test", "A") == 1
