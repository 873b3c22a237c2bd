"""Turning cells into the rows of results.json: percentiles, rates, ratios, goals.

Percentiles are nearest-rank (the smallest sample with at least q of the
samples at or below it), over the latency of whole checks (all the lookups
of one SMTP connection) -- successes *and* failures, a failure (an unknown
answer, a timeout, a wrong answer) counted at the client timeout or at what
it took when that was longer, so timing out never improves the tail. The
row reports ``unknown`` and ``errors`` as counts of their own. A skipped contender still gets a row, with every
figure None and ``skipped`` saying why, so a reader never mistakes a missing
row for a fast one.
"""

from __future__ import annotations

import math

from .load import Cell

__all__ = ["FIGURES", "percentile", "cdf_points", "make_row", "skipped_row", "add_ratios", "goals"]

#: The figures every row carries (the issue's names), in table order.
FIGURES = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "checks_per_s", "upstream_queries_per_check", "cpu_s")
#: Counts every measured row carries next to the figures.
COUNTS = ("checks", "unknown", "errors", "excluded")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def cdf_points(sorted_ms: list[float]) -> list[list[float]]:
    """The CDF as ``[[ms, fraction], ...]``: every percent, plus the tail to p99.99 in fine steps."""
    n = len(sorted_ms)
    if n == 0:
        return []
    body = {i / 100 for i in range(1, 101)}
    tail = {round(1 - 10 ** (-k / 20), 6) for k in range(40, 81)}  # p99 .. p99.99
    return [[round(percentile(sorted_ms, q), 4), q] for q in sorted(body | tail)]


def _r(value: float | None, digits: int = 3) -> float | None:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return None
    return round(value, digits)


def skipped_row(name: str, concurrency: int, reason: str, note: str = "") -> dict:
    row: dict = {"name": name, "concurrency": concurrency}
    row.update({f: None for f in FIGURES})
    row.update({"skipped": reason, "note": note, "checks": 0})
    return row


def make_row(
    name: str,
    concurrency: int,
    cell: Cell,
    *,
    upstream: dict[str, int],
    cpu_s: float,
    cpu_of: str,
    client_cpu_s: float,
    upstream_cpu_s: float,
    distinct_questions: int,
    fail_s: float = 0.0,
    note: str = "",
    extra: dict | None = None,
) -> dict:
    """One contender at one concurrency level."""
    lat_ms = sorted(x * 1000.0 for x in [*cell.latencies_s, *cell.failed_s])
    checks = cell.checks  # successes: complete, correct answers
    started = cell.started  # every check asked (the work per check is divided by this)
    total_upstream = sum(upstream.values())
    row: dict = {
        "name": name,
        "concurrency": concurrency,
        "p50_ms": _r(percentile(lat_ms, 0.50), 4),
        "p90_ms": _r(percentile(lat_ms, 0.90), 4),
        "p99_ms": _r(percentile(lat_ms, 0.99), 4),
        "p999_ms": _r(percentile(lat_ms, 0.999), 4),
        "checks_per_s": _r(checks / cell.wall_s if cell.wall_s > 0 else None, 1),
        "upstream_queries_per_check": _r(total_upstream / started if started else None, 4),
        "cpu_s": _r(cpu_s, 3),
        "skipped": None,
        "note": note,
        "checks": checks,
        "started": started,
        "unknown": cell.unknown,
        "first_unknown": cell.first_unknown,
        "errors": cell.errors,
        "first_error": cell.first_error,
        "excluded": cell.excluded,
        "failures_counted_at_ms": _r(fail_s * 1000.0, 1),
        "marked": bool(cell.unknown or cell.errors or cell.incomplete),
        "incomplete": cell.incomplete,
        "wall_s": _r(cell.wall_s, 3),
        "mean_ms": _r(sum(lat_ms) / len(lat_ms) if lat_ms else None, 4),
        "max_ms": _r(lat_ms[-1] if lat_ms else None, 4),
        "upstream_queries": dict(upstream),
        "upstream_counted_at": "the authoritative servers: the test DNS server's own counter (PTR/A) "
        "and rbldnsd's query log (DNSBL/RHSBL A and TXT)",
        "distinct_questions": distinct_questions,
        "distinct_questions_per_check": _r(distinct_questions / started if started else None, 4),
        "cpu_s_of": cpu_of,
        "cpu_ms_per_check": _r(cpu_s * 1000.0 / started if started else None, 4),
        "client_cpu_s": _r(client_cpu_s, 3),
        "upstream_cpu_s": _r(upstream_cpu_s, 3),
        "cdf_ms": cdf_points(lat_ms),
    }
    if extra:
        row.update(extra)
    return row


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def floor_for(name: str) -> str:
    """The floor a row is compared with: batched rows with the batched floor (like with like)."""
    return "floor-batched" if name.endswith("-batched") else "floor"


def add_ratios(rows: list[dict]) -> None:
    """Latency and rate ratios against the matching floor and ``dnspython-direct`` at the same concurrency."""
    by = {(r["name"], r["concurrency"]): r for r in rows}
    for row in rows:
        row["floor_ref"] = floor_for(row["name"])
        floor = by.get((row["floor_ref"], row["concurrency"]), {})
        direct = by.get(("dnspython-direct", row["concurrency"]), {})
        row["p50_vs_floor"] = _ratio(row["p50_ms"], floor.get("p50_ms"))
        row["p99_vs_floor"] = _ratio(row["p99_ms"], floor.get("p99_ms"))
        row["p50_vs_direct"] = _ratio(row["p50_ms"], direct.get("p50_ms"))
        row["p99_vs_direct"] = _ratio(row["p99_ms"], direct.get("p99_ms"))
        row["checks_per_s_vs_direct"] = _ratio(row["checks_per_s"], direct.get("checks_per_s"))


def goals(rows: list[dict]) -> list[dict]:
    """The goal figures of docs/benchmarks.md, judged on this run's rows.

    Latency goals are judged at the lowest concurrency of the run: one call
    at a time is where a hit's latency shows; at higher levels latency is
    mostly queueing behind the CPU (those rows are shown, not judged).
    """
    out = []
    for row in rows:
        if row.get("skipped"):
            continue
        sent, distinct = row.get("service_upstream_queries"), row.get("distinct_questions")
        if row.get("service_upstream_queries") is not None and distinct:
            row["upstream_queries_per_distinct_question"] = round(sent / distinct, 4)
        if row["name"] == "fastlookup-fleet" and distinct:
            ratio = round(sent / distinct, 4)
            out.append({
                "goal": "a fleet of 4 on one Redis asks upstream at most 1.05 queries per distinct question",
                "contender": row["name"], "concurrency": row["concurrency"], "value": ratio, "limit": 1.05,
                "met": ratio <= 1.05 and not (row.get("unknown") or row.get("errors")),
                "counted": "queries the 4 services sent to their resolver, summed, over the cell's distinct questions",
            })
    levels = [r["concurrency"] for r in rows]
    lowest = min(levels) if levels else None

    def judge(goal: str, name: str, field: str, limit: float) -> None:
        for row in rows:
            if row["name"] != name or row["concurrency"] != lowest:
                continue
            value = row.get(field)
            out.append(
                {
                    "goal": goal,
                    "contender": name,
                    "concurrency": row["concurrency"],
                    "value": value,
                    "limit": limit,
                    "met": None if value is None else value <= limit,
                }
            )

    judge("memory hit through the socket within 2x of the floor (p50)", "fastlookup-memory", "p50_vs_floor", 2.0)
    judge("memory hit batched within 2x of the batched floor (p50)", "fastlookup-batched", "p50_vs_floor", 2.0)
    judge("Redis-only hit within 3x of the floor (p50)", "fastlookup-redis", "p50_vs_floor", 3.0)
    for row in rows:
        if row["name"] != "fastlookup-cold" or row.get("skipped"):
            continue
        sent = row.get("service_upstream_queries")
        distinct = row.get("distinct_questions")
        complete = not (row.get("unknown") or row.get("errors") or row.get("incomplete"))
        out.append(
            {
                "goal": "upstream queries on the Zipf workload equal to the distinct questions, every answer complete",
                "contender": row["name"],
                "concurrency": row["concurrency"],
                "value": sent,
                "limit": distinct,
                "met": None if sent is None or distinct is None else (sent == distinct and complete),
                "counted": "queries the service sent to its resolver (its own upstream_queries counter); "
                "met needs sent == distinct and 0 unknown, 0 errors",
            }
        )
    return out
