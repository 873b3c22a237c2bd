"""A fleet of real fastlookup services sharing one real Redis, asking the real test DNS server."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest

from fastlookup.testing._proc import wait_until
from fastlookup.testing.redis import RedisServer, redis_command
from fastlookup.testing.service import ServiceThread, service_config
from fixtures_servers import start_or_skip

NAME = "host.example.test"


def fleet_service(dns_server, redis_url: str, **redis) -> ServiceThread:
    """A service on a private socket, asking ``dns_server``, sharing ``redis_url``."""
    settings = {"url": redis_url, "timeout_s": 0.05, "breaker_reset_s": 0.2, **redis}
    return ServiceThread(
        lambda tmp: service_config(
            tmp + "/fl.sock", upstream=[dns_server.address], redis=settings, server={"deadline_s": 1.0}
        )
    )


def answers_ping(port: int) -> bool:
    """Whether the Redis on ``port`` answers PING within 50 ms."""
    try:
        return redis_command(port, "PING", timeout_s=0.05) == "PONG"
    except OSError:  # socket.timeout included
        return False


def stat(svc: ServiceThread, name: str) -> float:
    return svc.call("stats").get(name, 0)


def test_second_service_answers_from_redis_without_asking_upstream(dns_server, redis_server):
    """An answer the first service got upstream is answered by the second from Redis, with no upstream query."""
    with fleet_service(dns_server, redis_server.url) as a, fleet_service(dns_server, redis_server.url) as b:
        with a.client() as ca, b.client() as cb:
            first = ca.a(NAME)
            neg_first = ca.a("nothing-here.example.test")
            asked = dns_server.count()
            a.run(lambda: a.service.shared.drain())  # the write is fire-and-forget: make sure it landed
            second = cb.a(NAME)
            neg_second = cb.a("nothing-here.example.test")
            again = cb.a(NAME)
    assert (first["from"], second["from"], again["from"]) == ("upstream", "redis", "memory")
    assert second["records"] == first["records"] == ["192.0.2.1"]
    assert 0 < first["ttl"] - second["ttl"] <= 1 or first["ttl"] == second["ttl"]
    assert (neg_first["status"], neg_second["status"], neg_second["from"]) == ("nxdomain", "nxdomain", "redis")
    assert dns_server.count() == asked == 2


def test_four_services_asking_one_cold_name_at_once_ask_upstream_at_most_twice(dns_server, redis_server):
    """N=4 services missing the same name at the same moment make at most 2 upstream queries (fleet lock)."""
    n, rounds = 4, 5
    dns_server.set_faults(delay_s=0.08)  # upstream takes a while: the window in which the fleet must coalesce
    per_round: list[int] = []
    sources: list[str] = []
    with ExitStack() as stack:
        services = [stack.enter_context(fleet_service(dns_server, redis_server.url)) for _ in range(n)]
        clients = [stack.enter_context(s.client(timeout=2.0)) for s in services]
        for r in range(rounds):
            name = f"cold{r}.example.test"
            dns_server.add(name, "A", [f"198.51.100.{r + 1}"])
            barrier = threading.Barrier(n)
            answers: list[dict] = []

            def ask(client) -> None:
                barrier.wait()
                answers.append(client.a(name))

            threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join(5)
            assert len(answers) == n and all(a["records"] == [f"198.51.100.{r + 1}"] for a in answers), answers
            per_round.append(dns_server.count(name))
            sources += [a["from"] for a in answers]
        won = sum(stat(s, "fleet_lock_won") for s in services)
        waited = sum(stat(s, "fleet_wait_hits") for s in services)
    print(f"upstream queries per cold name with {n} services: {per_round}; lock won {won}, wait hits {waited}")
    assert max(per_round) <= 2, per_round
    assert sources.count("redis") >= rounds * (n - 2)


def test_redis_killed_and_restarted_mid_run_no_call_fails(dns_server, redis_server):
    """Killing Redis mid-run and restarting it costs no client call; the tier reconnects and shares again."""
    names = [f"h{i}.example.test" for i in range(60)]
    for i, name in enumerate(names):
        dns_server.add(name, "A", [f"198.51.100.{i + 1}"])
    with fleet_service(dns_server, redis_server.url) as svc, svc.client(timeout=2.0) as client:
        answers: list[dict] = []
        for i, name in enumerate(names):
            if i == 15:
                redis_server.kill()
            if i == 30:
                redis_server.restart()
            started = time.monotonic()
            answers.append(client.a(name))
            answers.append(client.a(names[i // 2]))  # some repeats: memory hits through it all
            assert time.monotonic() - started < 1.0  # within server.deadline_s of fleet_service
            time.sleep(0.01)
        errors = stat(svc, "redis_errors")
        deadline = time.monotonic() + 3.0  # the breaker probes every breaker_reset_s
        while stat(svc, "redis_breaker_open") and time.monotonic() < deadline:
            client.a(names[0])
            time.sleep(0.05)
        client.a("after-restart.example.test")
        svc.run(lambda: svc.service.shared.drain())
        stored = redis_server.command("EXISTS", "fl:1:v1:A:after-restart.example.test")
    assert all(a["status"] in ("ok", "nxdomain") for a in answers), [a for a in answers if a["status"] not in ("ok", "nxdomain")]
    assert errors > 0
    assert stored == 1


@pytest.mark.parametrize("fault", ["pause", "debug_sleep"])
def test_hung_redis_does_not_slow_calls_past_their_deadline(dns_server, fault):
    """A Redis that accepts connections but never answers (SIGSTOP, DEBUG SLEEP) leaves every call well inside its deadline."""
    deadline_s = 1.0  # server.deadline_s of fleet_service
    redis = RedisServer(extra_args=["--enable-debug-command", "local"])
    start_or_skip(redis.start, "redis-server")
    try:
        with fleet_service(dns_server, redis.url) as svc, svc.client(timeout=3.0) as client:
            client.a(NAME)  # warm: connections open
            sleeper = None
            if fault == "pause":
                redis.pause()
            else:
                sleeper = threading.Thread(
                    target=redis_command, args=(redis.port, "DEBUG", "SLEEP", "1.5"), kwargs={"timeout_s": 5.0}
                )
                sleeper.start()
                wait_until(lambda: not answers_ping(redis.port), timeout_s=2.0, what="redis DEBUG SLEEP")
            slowest, answers = 0.0, []
            for i in range(20):
                started = time.monotonic()
                answers.append(client.a(f"hung{i}.example.test" if i % 2 else NAME))
                slowest = max(slowest, time.monotonic() - started)
            if fault == "pause":
                redis.resume()
            else:
                sleeper.join(5)
            skipped = stat(svc, "redis_skipped")
    finally:
        redis.stop()
    assert all(a["status"] in ("ok", "nxdomain") for a in answers), answers
    assert slowest < deadline_s, slowest  # generous: every call well inside its deadline, none timed out
    assert skipped > 0  # the breaker took Redis out of the path
