"""Told apart: the client's DNS is broken, or ours is (policy key ``tempfail``).

A PTR that answers SERVFAIL while every other question is answered means the
client's reverse zone is broken: Postfix answers ``450`` and the client
retries (``reject_unknown_reverse_client_hostname``). When upstream itself is
unreachable, every question fails and deferring would turn our outage into
everybody's: the check fails open instead. "Upstream healthy" is a fact
measured here, not configured: some other question got a real answer from
upstream (ok, NXDOMAIN or NODATA) within the last ``WINDOW_S`` seconds, and
upstream has not failed every question since (``MAX_STREAK`` failed
questions in a row mean an outage started, even inside the window). Under
``auto`` only a failure upstream replied to (SERVFAIL, REFUSED) can be the
client's: a timeout is no reply at all, and when upstream has just gone dark
the window still remembers its last answers, so a timeout fails open.

The tracker is fed where answers arrive from upstream: the resolver calls
``saw(status)`` for every answer upstream gives, whichever method asked
(``check``, ``ptr``, ``dnsbl``, ``query``, ``batch``, a front end, a prefetch,
a zone health probe). Cache hits (memory or the shared tier) prove nothing
about upstream now and are not seen; a stale answer served because upstream
failed is seen as the failure it hides. The service owns one tracker for its
lifetime (a reload keeps it); time is injected, so tests step it.
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["UpstreamSeen", "WINDOW_S", "MAX_STREAK", "MODES", "ANSWERED", "REPLIED", "defers"]

#: "Other questions answered in the last minute".
WINDOW_S = 60.0
#: Upstream questions failed in a row (none answered) that mean upstream is down.
MAX_STREAK = 20
MODES = ("auto", "defer", "accept")
#: Real answers (NOERROR with records, NXDOMAIN, NODATA); servfail, refused, timeout and error are failures.
ANSWERED = frozenset({"ok", "nxdomain", "nodata"})
#: Failures upstream replied with: it is reachable, the client's zone fails. A
#: timeout (or a local error) is no reply at all, the first sign of our own outage.
REPLIED = frozenset({"servfail", "refused"})


class UpstreamSeen:
    """When upstream last gave a real answer (not a failure)."""

    __slots__ = ("clock", "window_s", "last_ok", "streak")

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self.clock = clock
        self.window_s = window_s
        self.last_ok: float | None = None
        self.streak = 0  # upstream questions failed since the last answer

    def answered(self) -> None:
        """Upstream just answered a question."""
        self.last_ok = self.clock()
        self.streak = 0

    def saw(self, status: str) -> None:
        """Upstream gave ``status`` for one question (the resolver's ``on_upstream`` hook)."""
        if status in ANSWERED:
            self.answered()
        else:
            self.failed()

    def failed(self, n: int = 1) -> None:
        """Upstream just failed ``n`` questions (SERVFAIL, timeout...) and answered none."""
        self.streak = min(self.streak + n, 1 << 30)

    def healthy(self) -> bool:
        """True when upstream answered some question within the window and has not failed every one since."""
        last = self.last_ok
        return last is not None and self.clock() - last <= self.window_s and self.streak < MAX_STREAK


def defers(mode: str, seen: UpstreamSeen, replied: bool = True) -> tuple[bool, str]:
    """Whether a temporary rDNS failure defers under ``tempfail = mode``, and why (for the reasons).

    ``replied``: upstream answered the failed question with SERVFAIL/REFUSED.
    Under ``auto`` only such a failure can be the client's: when upstream goes
    dark the tracker still remembers the last minute's answers (and hears of
    the timeouts only after upstream's own retries), so a timeout fails open.
    """
    if mode == "defer":
        return True, "tempfail=defer"
    if mode == "accept":
        return False, "tempfail=accept"
    if not replied:
        return False, "upstream not answering it in time: failed open"
    if seen.healthy():
        return True, "upstream answers other questions: the client's DNS fails"
    return False, "upstream not answering: our outage, failed open"
