"""Control queries of the test DNS server, for the process form's counters.

A server in another process cannot be asked ``srv.count()``, so it answers two
CHAOS-class TXT questions that are never counted and never faulted:

- ``queries.fastlookup. CH TXT`` -> the total of counted queries, as text;
- ``reset.fastlookup. CH TXT``   -> resets every count and answers ``"0"``.

CHAOS class keeps them out of the way of any IN data a test might serve.
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

__all__ = ["COUNT_NAME", "RESET_NAME", "query_count", "reset_count"]

COUNT_NAME = dns.name.from_text("queries.fastlookup.")
RESET_NAME = dns.name.from_text("reset.fastlookup.")


def _control(address: tuple[str, int], name: dns.name.Name, timeout_s: float) -> int:
    query = dns.message.make_query(name, dns.rdatatype.TXT, dns.rdataclass.CH)
    host, port = address[0], address[1]
    response = dns.query.udp(query, host, port=port, timeout=timeout_s)
    if response.rcode() != dns.rcode.NOERROR or not response.answer:
        raise RuntimeError(f"control query {name} to {host}/{port}: {dns.rcode.to_text(response.rcode())}")
    return int(response.answer[0][0].strings[0])


def query_count(address: tuple[str, int], timeout_s: float = 2.0) -> int:
    """Return how many queries the test DNS server at ``address`` has counted."""
    return _control(address, COUNT_NAME, timeout_s)


def reset_count(address: tuple[str, int], timeout_s: float = 2.0) -> None:
    """Reset the query counts of the test DNS server at ``address``."""
    _control(address, RESET_NAME, timeout_s)
