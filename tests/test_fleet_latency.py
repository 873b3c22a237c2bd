"""A fleet of real fastlookup processes on one real redis-server, at WAN-like upstream delays.

Counts only (upstream queries per cold name, takeovers); the latencies are
measured by ``bench/wan.py``. Few names, asked concurrently, keep these short.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import ExitStack

import pytest

from fastlookup.client import Client
from fastlookup.testing import DnsServer, RedisServer
from fastlookup.testing._proc import wait_until
from fastlookup.testing.service import ServiceProcess
from fixtures_servers import start_or_skip

pytestmark = pytest.mark.slow

CONFIG = """
[server]
socket = "{sock}"
deadline_s = {deadline_s}
[upstream]
servers = ["127.0.0.1:{port}"]
timeout_s = {timeout_s}
attempts = 2
[redis]
url = "{redis}"
# Redis answers in ~0.1 ms; 0.5 s (not 50 ms) keeps a full test run on 2 shared CPUs from timing
# a round trip out, which makes an instance ask upstream itself (fail soft) and is not what is tested.
timeout_s = 0.5
[health]
interval_s = 0
"""


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTLOOKUP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def start_service(tmp: str, i: int, dns: DnsServer, redis: RedisServer, *, timeout_s: float = 0.8, deadline_s: float = 2.0) -> ServiceProcess:
    """``fastlookup serve`` as its own process, with the default fleet lock settings (no lock tuning)."""
    sock = f"{tmp}/fl{i}.sock"
    path = f"{tmp}/fl{i}.toml"
    with open(path, "w") as fh:
        fh.write(CONFIG.format(sock=sock, port=dns.port, redis=redis.url, timeout_s=timeout_s, deadline_s=deadline_s))
    return ServiceProcess(["--config", path], socket=sock, env=_env())


@pytest.fixture
def redis_and_dns():
    """A private redis-server and test DNS server for one fleet test."""
    redis = RedisServer()
    start_or_skip(redis.start, "redis-server")
    try:
        with DnsServer({}) as dns:
            yield redis, dns
    finally:
        redis.stop()


def ask_all_at_once(services: list[ServiceProcess], names: list[str], timeout_s: float) -> list[dict]:
    """Every service asks every name, all calls released by one barrier; the answers."""
    jobs = [(svc, name) for svc in services for name in names]
    barrier = threading.Barrier(len(jobs))
    answers: list[dict] = []
    lock = threading.Lock()

    def ask(svc: ServiceProcess, name: str) -> None:
        with svc.client(timeout=timeout_s) as client:
            barrier.wait()
            answer = client.a(name)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=ask, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 5)
    return answers


@pytest.mark.parametrize("delay_s", [0.3, 0.7])
def test_four_instances_ask_upstream_once_per_cold_name_at_wan_delays(short_tmp, redis_and_dns, delay_s):
    """4 instances asking the same cold names at once, upstream answering in 300 or 700 ms, ask upstream once per name."""
    redis, dns = redis_and_dns
    names = [f"cold{i}.example.test" for i in range(5)]
    for i, name in enumerate(names):
        dns.add(name, "A", [f"198.51.100.{i + 1}"])
        dns.set_faults(name, delay_s=delay_s)
    with ExitStack() as stack:
        services = [stack.enter_context(start_service(short_tmp, i, dns, redis)) for i in range(4)]
        answers = ask_all_at_once(services, names, timeout_s=5.0)
        stats = []
        for svc in services:
            with svc.client(timeout=2.0) as c:
                stats.append(c.stats())
    assert len(answers) == 20 and {a["status"] for a in answers} == {"ok"}, answers
    per_name = [dns.count(name) for name in names]
    assert sum(per_name) / len(names) <= 1.05, per_name
    assert [a["from"] for a in answers].count("redis") == 15  # every loser got the winner's answer
    assert sum(s.get("fleet_wait_hits", 0) for s in stats) == 15
    assert sum(s.get("fleet_takeovers", 0) for s in stats) == 0


def test_winner_killed_mid_fetch_one_waiter_takes_over(short_tmp, redis_and_dns):
    """When the instance holding the fleet lock dies mid-fetch, the lock expires and exactly one waiter asks upstream."""
    redis, dns = redis_and_dns
    name = "victim.example.test"
    dns.add(name, "A", ["198.51.100.77"])
    dns.set_faults(name, delay_s=0.4)
    # timeout_s 0.5 x attempts 2 + 0.1: a 1.1 s budget, a 1.3 s lock; callers wait up to 5 s.
    with ExitStack() as stack:
        winner, b, c = (
            stack.enter_context(start_service(short_tmp, i, dns, redis, timeout_s=0.5, deadline_s=5.0)) for i in range(3)
        )
        doomed = threading.Thread(target=_ask_ignoring_errors, args=(winner, name), daemon=True)
        doomed.start()
        wait_until(lambda: dns.count(name) >= 1, timeout_s=5, what="the winner to ask upstream")
        results: dict[str, dict] = {}
        waiters = [threading.Thread(target=lambda s=s, k=k: results.__setitem__(k, _ask(s, name))) for k, s in (("b", b), ("c", c))]
        for t in waiters:
            t.start()
        wait_until(lambda: _stat(b, "fleet_lock_lost") + _stat(c, "fleet_lock_lost") == 2, timeout_s=5, what="b and c to wait")
        winner.signal(signal.SIGKILL)
        for t in waiters:
            t.join(10)
        takeovers = _stat(b, "fleet_takeovers") + _stat(c, "fleet_takeovers")
        hits = _stat(b, "fleet_wait_hits") + _stat(c, "fleet_wait_hits")
    assert results["b"]["records"] == results["c"]["records"] == ["198.51.100.77"], results
    assert dns.count(name) == 2  # the dead winner's query and the one takeover
    assert (takeovers, hits) == (1, 1)


def _ask(svc: ServiceProcess, name: str) -> dict:
    with svc.client(timeout=8.0) as client:
        return client.a(name)


def _ask_ignoring_errors(svc: ServiceProcess, name: str) -> None:
    try:
        _ask(svc, name)
    except Exception:  # noqa: BLE001 - this service is killed mid-call on purpose
        pass


def _stat(svc: ServiceProcess, key: str) -> float:
    with Client(svc.socket, timeout=2.0) as client:
        return client.stats().get(key, 0)


def test_failed_fetch_releases_the_lock_so_waiters_answer_within_their_deadline(short_tmp, redis_and_dns):
    """A winner whose answer is a failure (SERVFAIL, not shared) releases the lock: the waiters ask upstream at once, not at the lock's end."""
    redis, dns = redis_and_dns
    name = "lame.example.test"
    dns.set_faults(name, servfail=True, delay_s=0.1)  # a fetch: 2 tries (attempts) of 100 ms
    # deadline 1.0 s is shorter than the 1.9 s lock: only a released lock lets every caller get the SERVFAIL.
    with ExitStack() as stack:
        services = [stack.enter_context(start_service(short_tmp, i, dns, redis, deadline_s=1.0)) for i in range(3)]
        answers = ask_all_at_once(services, [name], timeout_s=5.0)
        takeovers = sum(_stat(s, "fleet_takeovers") for s in services)
    assert sorted(a["status"] for a in answers) == ["servfail"] * 3, answers
    assert dns.count(name) == 3 * 2  # one fetch after the other: each failure is the next one's cue
    assert takeovers == 2
