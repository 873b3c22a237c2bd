"""What every contender provides to the runner.

A contender makes full checks of a ``Host`` (PTR, FCrDNS, every DNSBL zone,
RHSBL), either as a sync ``check(host)`` run in threads (``mode =
"threads"``) or as ``async check(host)`` on one event loop (``mode =
"async"``). ``prepare`` starts what it needs (or returns why it cannot
run: the runner then writes skipped rows), ``before_level``/``after_level``
bracket one concurrency level (the cold contender restarts its service
there), and ``finish`` stops what it started. ``pids()`` names the server
processes the contender started itself; the runner adds them to the world's
and counts the CPU of all of them plus the client (``cpu_s``), so CPU per
check compares across rows.

A check raises ``WrongAnswer`` when any part of its answer disagrees with
the workload's truth, and ``Unknown`` when an answer is incomplete (a zone
that could not answer, a lookup that timed out): those are reported in
their own column, never as successes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..runner import Run

__all__ = ["Contender", "WrongAnswer", "Unknown"]


class WrongAnswer(Exception):
    """A check's answer disagrees with the workload's data (counted as an error)."""


class Unknown(Exception):
    """A check's answer is incomplete: unknown zone, timeout, temperror (its own column, a failure)."""


class Contender:
    name = ""
    mode = "threads"  # or "async"
    note = ""
    cpu_of = ""

    def prepare(self, run: "Run") -> str | None:
        """Start what this contender needs; a reason string when it cannot run."""
        return None

    def before_level(self, run: "Run", concurrency: int) -> None:
        pass

    def after_level(self, run: "Run", concurrency: int) -> None:
        pass

    def finish(self, run: "Run") -> None:
        pass

    # threads mode
    def worker(self) -> tuple[Any, Any]:
        raise NotImplementedError

    # async mode
    async def aworker(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def pids(self) -> dict[str, int]:
        """Server processes this contender started itself (name -> pid), for the CPU count."""
        return {}

    def cpu_seconds(self) -> float:
        """CPU seconds so far of the process answering the checks (see ``cpu_of``)."""
        return 0.0

    def resolver_cpu_seconds(self) -> float:
        """CPU seconds so far of the resolver behind the service (a fastlookup service's unbound)."""
        return 0.0

    def extra_figures(self, run: "Run", concurrency: int, cell: Any) -> dict:
        """Figures of this contender's own for its row (the fleet's queries per question)."""
        return {}

    def service_stats(self) -> dict:
        """The service's ``stats`` map (fastlookup only), for tier and upstream counts."""
        return {}
