"""The benchmark harness: its pure parts, and a tiny real run whose output files are checked.

No timing is asserted anywhere: the figures depend on the machine. The real
run starts rbldnsd, the test DNS server, redis-server, unbound and the
services, so it is marked slow (it takes some seconds).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.contenders import CONTENDERS
from bench.contenders import Unknown, WrongAnswer
from bench.contenders.verify import judge, service_facts
from bench.figures import FIGURES, add_ratios, goals, make_row, percentile, skipped_row
from bench.load import EXCLUDE, Cell, run_threads
from bench.report import table
from bench.workload import make_workload

ROOT = Path(__file__).resolve().parents[1]
ISSUE_NAMES = {"floor", "dnspython-direct", "unbound", "pydnsbl", "fastlookup-cold", "fastlookup-memory", "fastlookup-redis"}


def test_workload_is_repeatable_for_a_seed():
    """The same seed gives the same hosts and the same Zipf stream; another seed does not."""
    a, b, c = (make_workload(500, 0.2, 3, seed) for seed in (7, 7, 8))
    assert a.hosts == b.hosts and a.stream(1000) == b.stream(1000)
    assert a.stream(1000) != c.stream(1000)


def test_workload_lists_the_requested_share():
    """The listed share of IPs is listed on at least one zone, and the stream is Zipf-skewed."""
    w = make_workload(1000, 0.25, 4, 1)
    assert sum(1 for h in w.hosts if h.zones) == 250
    stream = w.stream(20000)
    top = max(stream.count(i) for i in set(stream))
    assert top > 20000 / 1000 * 20  # the busiest IP is far above the mean of 20


def test_distinct_questions_count_every_question_once():
    """A host with a PTR, listed on one of two zones, asks PTR, A, two DNSBL A, one TXT and the RHSBL A."""
    w = make_workload(400, 0.5, 2, 3)
    host = next(h for h in w.hosts if h.ptr and len(h.zones) == 1 and h.domain not in w.listed_domains)
    assert len(w.questions(host)) == 6
    assert w.distinct_questions([host.index, host.index]) == 6


@pytest.mark.parametrize("bad", [dict(ips=0), dict(listed_share=1.5), dict(zones=0)])
def test_workload_refuses_bad_parameters(bad):
    """A parameter out of range is refused with the flag's name in the message."""
    args = dict(ips=10, listed_share=0.1, zones=2, seed=1) | bad
    with pytest.raises(ValueError, match="--"):
        make_workload(**args)


def test_percentile_is_nearest_rank():
    """p50 of 1..10 is 5, p90 is 9, p99 and p99.9 are 10."""
    values = [float(v) for v in range(1, 11)]
    assert [percentile(values, q) for q in (0.5, 0.9, 0.99, 0.999)] == [5.0, 9.0, 10.0, 10.0]


def test_hotpath_answers_every_method_from_memory():
    """bench.hotpath answers each method's calls from memory through the server's read callback, with no error."""
    from bench import hotpath

    world = hotpath.World(64)
    for method in hotpath.METHODS:
        assert hotpath.measure(world, method, calls=1000, repeat=1) > 0


def test_table_shows_skipped_rows_with_their_reason():
    """A skipped contender is a row that says why, and ratios stay empty for it."""
    rows = [skipped_row("fastlookup-redis", 1, "no Redis tier yet")]
    add_ratios(rows)
    text = table({"contenders": rows})
    assert "fastlookup-redis" in text and "skipped: no Redis tier yet" in text
    assert rows[0]["p50_vs_floor"] is None


def _answers(w, host):
    exp = w.expected(host)
    return exp["ptr"], exp["fcrdns"], exp["dnsbl"], exp["rhsbl"]


def _listed_host(w):
    return next(h for h in w.hosts if h.ptr and h.forward == h.ip and h.zones)


@pytest.mark.parametrize(
    "part, change",
    [
        ("ptr", lambda a: a[0].update(records=["other.test"])),
        ("fcrdns", lambda a: a[1].update(result="fail")),
        ("dnsbl", lambda a: a[2].update(hits=[])),
        ("dnsbl", lambda a: a[2]["hits"][0].update(text=None)),  # no TXT fetched
        ("rhsbl", lambda a: a[3].update(listed=True, hits=[{"zone": "rhs.bench.test", "codes": [], "text": "x"}])),
    ],
)
def test_every_part_of_a_check_is_judged(part, change):
    """A check whose PTR, FCrDNS, DNSBL hits, hit text or RHSBL answer differs from the workload is a wrong answer."""
    w = make_workload(400, 0.5, 2, 3)
    host = _listed_host(w)
    judge(w, host, service_facts(*_answers(w, host)))  # the truth passes
    answers = [dict(a) for a in _answers(w, host)]
    answers[2]["hits"] = [dict(h) for h in answers[2]["hits"]]
    change(answers)
    with pytest.raises(WrongAnswer, match=part):
        judge(w, host, service_facts(*answers))


@pytest.mark.parametrize(
    "index, change",
    [
        (2, {"unknown": [{"zone": "bl0.bench.test", "status": "timeout"}]}),
        (3, {"unknown": [{"zone": "rhs.bench.test", "status": "servfail"}]}),
        (0, {"status": "timeout", "records": []}),
        (1, {"result": "temperror"}),
    ],
)
def test_fail_open_answers_are_unknown_not_success(index, change):
    """A zone in ``unknown``, a timed-out PTR or a temperror FCrDNS makes the check Unknown, not a success."""
    w = make_workload(400, 0.5, 2, 3)
    host = _listed_host(w)
    answers = [dict(a) for a in _answers(w, host)]
    answers[index].update(change)
    with pytest.raises(Unknown):
        service_facts(*answers)


def test_failures_enter_the_percentiles_at_the_timeout():
    """Unknown answers and errors are counted in their own columns and at the timeout in the percentiles."""
    def make_worker():
        def check(n):
            if n % 4 == 0:
                raise Unknown("zone timed out")
            if n % 4 == 1:
                raise WrongAnswer("wrong")
            return EXCLUDE if n % 4 == 2 else None
        return check, lambda: None

    cell = run_threads(make_worker, list(range(32)), 1, 32, 30.0, fail_s=2.5)
    assert (cell.checks, cell.unknown, cell.errors, cell.excluded, cell.started) == (8, 8, 8, 8, 32)
    row = make_row("x", 1, cell, upstream={}, cpu_s=0.0, cpu_of="", client_cpu_s=0.0, upstream_cpu_s=0.0,
                   distinct_questions=1, fail_s=2.5)
    assert row["p90_ms"] == 2500.0 and row["p50_ms"] == 2500.0 and row["marked"]
    assert (row["unknown"], row["errors"], row["excluded"]) == (8, 8, 8)


@pytest.mark.parametrize(
    "sent, unknown, met", [(50, 0, True), (49, 0, False), (51, 0, False), (50, 1, False)],
)
def test_cold_goal_needs_exactly_the_distinct_questions_and_complete_answers(sent, unknown, met):
    """The cold goal is met only when the service sent exactly the distinct questions and no answer was unknown."""
    row = {"name": "fastlookup-cold", "concurrency": 1, "skipped": None, "service_upstream_queries": sent,
           "distinct_questions": 50, "unknown": unknown, "errors": 0, "incomplete": False}
    verdict = [g for g in goals([row]) if g["contender"] == "fastlookup-cold"]
    assert [g["met"] for g in verdict] == [met]


def test_batched_rows_are_compared_with_the_batched_floor():
    """p50_vs_floor of a batched row divides by floor-batched, of an unbatched row by floor."""
    rows = [
        {"name": n, "concurrency": 1, "p50_ms": p, "p99_ms": p, "checks_per_s": 1.0}
        for n, p in (("floor", 0.2), ("floor-batched", 0.05), ("fastlookup-batched", 0.1), ("fastlookup-memory", 0.4))
    ]
    add_ratios(rows)
    by = {r["name"]: r for r in rows}
    assert by["fastlookup-batched"]["p50_vs_floor"] == 2.0 and by["fastlookup-memory"]["p50_vs_floor"] == 2.0


def _is_figure(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_run_writes_well_formed_results(tmp_path):
    """``python -m bench --tiny`` writes results.json with every contender's figures and a PNG plot."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--quiet", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"machine", "workload", "contenders"}
    for key in ("cpu", "cores", "python", "kernel", "placement", "date_utc"):
        assert key in results["machine"], key
    assert results["workload"]["distinct_ips"] > 0

    rows = results["contenders"]
    names = {r["name"] for r in rows}
    assert names == set(CONTENDERS) and ISSUE_NAMES <= names
    levels = results["workload"]["concurrency_levels"]
    assert len(rows) == len(CONTENDERS) * len(levels)
    for row in rows:
        assert {"name", "concurrency", *FIGURES} <= set(row), row["name"]
        if row["skipped"]:
            assert isinstance(row["skipped"], str) and all(row[f] is None for f in FIGURES), row
            continue
        assert row["checks"] > 0, row
        # Every answer complete and correct: an unknown/timeout or a wrong answer fails the smoke run.
        assert (row["unknown"], row["errors"]) == (0, 0), (row["name"], row["first_unknown"], row["first_error"])
        for figure in FIGURES:
            assert _is_figure(row[figure]), (row["name"], figure, row[figure])
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["p999_ms"]
        # cpu_s is the client plus every server process, in every row (so CPU per check compares).
        servers = sum(row["cpu_s_by_process"].values())
        assert abs(row["cpu_s"] - (row["client_cpu_s"] + servers)) < 0.01, row["name"]

    must_run = {"dnspython-direct", "unbound", "pydnsbl"}
    if importlib.util.find_spec("fastlookup.client") is not None:
        must_run |= {"floor", "floor-batched", "fastlookup-cold", "fastlookup-memory", "fastlookup-batched"}
        if importlib.util.find_spec("fastlookup.cache.redis_tier") is not None:
            must_run |= {"fastlookup-redis", "fastlookup-redis-batched", "fastlookup-fleet"}
    skipped = {r["name"]: r["skipped"] for r in rows if r["skipped"]}
    assert not must_run & set(skipped), skipped

    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cold = [g for g in results["goals"] if g["contender"] == "fastlookup-cold"]
    assert cold and all(g["value"] == g["limit"] for g in cold), cold


@pytest.mark.slow
def test_delay_forwarder_delays_every_reply_and_keeps_the_answer(tmp_path):
    """Every reply through the forwarder comes at least the delay minus the spread late, with the client's ID and answer."""
    import time

    import dns.message
    import dns.query

    from fastlookup.testing.rbldnsd import Rbldnsd
    from fastlookup.testing.udpdelay import DelayForwarder

    zone = ("ip4set", "$SOA 60 ns.t. h.t. 1 60 60 60 60\n$NS 60 ns.t.\n192.0.2.7 :127.0.0.2:listed\n")
    with Rbldnsd({"bl.test": zone}) as rbl:
        fwd = DelayForwarder(rbl.address, delay_ms=60, spread_ms=20).start()
        try:
            for name, rcode in (("7.2.0.192.bl.test.", 0), ("8.2.0.192.bl.test.", 3)):
                q = dns.message.make_query(name, "A")
                t0 = time.monotonic()
                r = dns.query.udp(q, fwd.address[0], port=fwd.address[1], timeout=5)
                assert time.monotonic() - t0 >= 0.039
                assert r.id == q.id and r.rcode() == rcode
            # Concurrent clients with the same ID each get their own answer back.
            import socket

            socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
            try:
                for s, name in zip(socks, ("7.2.0.192.bl.test.", "8.2.0.192.bl.test.")):
                    q = dns.message.make_query(name, "A")
                    q.id = 4242
                    s.settimeout(5)
                    s.sendto(q.to_wire(), fwd.address)
                replies = [dns.message.from_wire(s.recv(4096)) for s in socks]
            finally:
                for s in socks:
                    s.close()
            assert [(r.id, r.rcode()) for r in replies] == [(4242, 0), (4242, 3)]
        finally:
            fwd.stop()


@pytest.mark.parametrize("tier, counted", [("redis", True), ("memory", False)])
def test_redis_rows_count_only_checks_answered_by_the_redis_tier(tier, counted):
    """A Redis-only check whose PTR answer came from memory is excluded; one from Redis is counted."""
    from bench.contenders.viaclient import make_check

    w = make_workload(400, 0.5, 2, 3)
    host = _listed_host(w)
    exp = w.expected(host)

    class Answers:
        def ptr(self, ip):
            return dict(exp["ptr"], **{"from": tier})

        def fcrdns(self, ip):
            return exp["fcrdns"]

        def dnsbl(self, ip):
            return exp["dnsbl"]

        def rhsbl(self, domain):
            return exp["rhsbl"]

    assert make_check(Answers(), False, w, redis_only=True)(host) == (None if counted else EXCLUDE)
    assert make_check(Answers(), False, w)(host) is None  # the other rows count every right answer
