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
from bench.figures import FIGURES, add_ratios, percentile, skipped_row
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
        for figure in FIGURES:
            assert _is_figure(row[figure]), (row["name"], figure, row[figure])
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["p999_ms"]

    must_run = {"dnspython-direct", "unbound", "pydnsbl"}
    if importlib.util.find_spec("fastlookup.client") is not None:
        must_run |= {"floor", "fastlookup-cold", "fastlookup-memory", "fastlookup-batched"}
        if importlib.util.find_spec("fastlookup.cache.redis_tier") is not None:
            must_run |= {"fastlookup-redis", "fastlookup-redis-batched"}
    skipped = {r["name"]: r["skipped"] for r in rows if r["skipped"]}
    assert not must_run & set(skipped), skipped

    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
