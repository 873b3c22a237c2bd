"""The one greppable log line per non-accept verdict, and rate-limited notes on skipped zones.

Verdict lines go to the ``fastlookup.verdict`` logger, one per call, as
``key=value`` tokens in a fixed order (values never hold spaces)::

    verdict action=reject code=554 ip=192.0.2.1 name=host.example helo=mx.example reasons=dnsbl:zen.spamhaus.org:127.0.0.2 elapsed_ms=1.2 policy=default score=1.0 fail_open=false

``reasons`` is ``check:zone:detail`` per reason, comma-separated (``-`` for
no zone; spaces in a detail become ``_``, commas ``+``). ``action`` is
``tag`` for a tag verdict. An accept is logged too when a log-only zone
(``action = "ignore"``) listed the client: reasons ``ignored:zone:...``. A zone that is skipped (its error codes, a
timeout) is noted on ``fastlookup.policy`` at most once per interval per
zone and reason, however many calls see it.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from ..model import Reason, Verdict
from .templates import clean

__all__ = ["log_verdict", "Notes", "NOTE_INTERVAL_S"]

verdict_log = logging.getLogger("fastlookup.verdict")
log = logging.getLogger("fastlookup.policy")

#: A zone's error codes or timeouts are logged at most once per this many seconds.
NOTE_INTERVAL_S = 300.0
_MAX_NOTES = 4096


def _token(value: str | None) -> str:
    """A log value: one token of printable ASCII, ``-`` when empty."""
    text = clean(value, 128).replace(" ", "_")
    return text or "-"


def _reason_token(reason: Reason) -> str:
    return f"{reason.check}:{reason.zone or '-'}:{_token(reason.detail).replace(',', '+')}"


def log_verdict(verdict: Verdict, ip: object, name: str | None, helo: str | None, policy: str) -> None:
    """Log ``verdict`` when it is not a plain accept (tags are logged too)."""
    if not verdict_log.isEnabledFor(logging.INFO):
        return
    if verdict.action == "accept" and not verdict.tag and not any(r.check == "ignored" for r in verdict.reasons):
        return
    verdict_log.info(
        "verdict action=%s code=%s ip=%s name=%s helo=%s reasons=%s elapsed_ms=%s policy=%s score=%s fail_open=%s",
        "tag" if verdict.tag else verdict.action,
        verdict.smtp_code if verdict.smtp_code is not None else "-",
        ip,
        name or "-",
        _token(helo),
        ",".join(_reason_token(r) for r in verdict.reasons) or "-",
        verdict.elapsed_ms,
        policy,
        verdict.score,
        "true" if verdict.fail_open else "false",
    )


class Notes:
    """Warn about a skipped zone once per ``interval_s`` per (check, zone, status)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, interval_s: float = NOTE_INTERVAL_S) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self._last: dict[tuple[str, str, str], float] = {}

    def __call__(self, check: str, zone: str, status: str) -> None:
        key = (check, zone, status)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return
        if len(self._last) >= _MAX_NOTES:
            self._last.clear()
        self._last[key] = now
        if status == "list_error":
            log.warning(
                "%s zone %s answered one of its error codes (query refused or over quota?); "
                "skipped, mail is not rejected because of it (logged once per %gs)",
                check, zone, self.interval_s,
            )
        elif status != "disabled":  # health monitoring logs its own decisions
            log.warning(
                "%s zone %s could not be checked (%s); skipped, fail open (logged once per %gs)",
                check, zone, status, self.interval_s,
            )
