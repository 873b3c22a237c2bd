"""The fronts obey the global max_in_flight (issue 12 item 6), on a real service with rbldnsd and the test DNS server."""

from __future__ import annotations

import threading

import pytest

from fastlookup.testing._proc import wait_until

from test_adapters import unix_exchange


@pytest.mark.parametrize(
    "front, request_, listed, fallback, until",
    [
        ("policy.sock", b"request=smtpd_access_policy\nclient_address=192.0.2.99\n\n", b"action=554", b"action=DUNNO\n\n", b"\n\n"),
        ("socketmap.sock", b"18:default 192.0.2.99,", b"OK 554", b"9:NOTFOUND ,", b","),
        ("exim.sock", b"ip=192.0.2.99\n", b"reject 554", b"accept\n", b"\n"),
    ],
    ids=["postfix-policy", "socketmap", "exim"],
)
def test_fronts_answer_their_safe_default_over_max_in_flight(make_service, short_tmp, dns_server, front, request_, listed, fallback, until):
    """With max_in_flight calls already waiting on upstream, a front answers its safe default at once and counts it."""
    svc = make_service(
        server={"max_in_flight": 1},
        postfix={"listen": f"unix:{short_tmp}/policy.sock", "socketmap": f"unix:{short_tmp}/socketmap.sock",
                 "exim": f"unix:{short_tmp}/exim.sock"},
        policy={"default": {"allow": [], "dnsbl": ["bl.test"], "rhsbl": [], "deadline_s": 1.0}},
    )
    path = f"{short_tmp}/{front}"
    assert listed in unix_exchange(path, request_, until)  # below the limit: the real verdict
    dns_server.set_faults("slow.example.test", delay_s=3.0)
    holder = threading.Thread(target=lambda: svc.client(timeout=10).call("a", {"name": "slow.example.test"}), daemon=True)
    holder.start()
    wait_until(lambda: dns_server.count("slow.example.test") >= 1, timeout_s=5, what="the slow call to be in flight")
    before = svc.call("stats").get("overloaded", 0)
    assert unix_exchange(path, request_, until) == fallback
    assert svc.call("stats").get("overloaded", 0) == before + 1
    holder.join(10)
