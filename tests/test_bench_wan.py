"""The issue-13 benchmark scripts (bench/wan.py, bench/upstream_rate.py) run end to end on tiny settings.

No timing is asserted: the figures depend on the machine. What is checked is
that each script runs against its real servers and reports the counts it
exists to show.
"""

from __future__ import annotations

import pytest

from bench import upstream_rate, wan

pytestmark = pytest.mark.slow


def test_upstream_rate_runs_and_every_query_is_answered(capsys):
    """upstream_rate sends its queries with and without socket reuse and every one is answered."""
    assert upstream_rate.main(["--queries", "1000", "--concurrency", "16", "--uses", "1,100"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1")]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "100"]
    for row in rows:
        statuses = row.split("|")[7]
        assert "timeout" not in statuses and "error" not in statuses, row


def test_notify_table_measures_every_trial():
    """The notify table's loser gets the winner's answer in every trial (the script asserts it)."""
    rows = wan.notify_table(10)
    assert len([r for r in rows if r.startswith("| uniform")]) == 2


def test_dead_table_answers_everything_with_one_dead_server():
    """With a blackholed server first in the list, the dead-server table's run answers every call (no timeouts)."""
    rows = wan.dead_table(good_ms=0, misses=20)
    dead_good = next(r for r in rows if r.startswith("| `DEAD,GOOD`"))
    cells = [c.strip() for c in dead_good.split("|")]
    assert cells[6] == "0" and cells[7] == "20", dead_good  # timeouts, queries to GOOD
