"""A circuit breaker, so a dead or hung Redis costs nothing per call.

Closed: every round trip goes to Redis; ``failures`` consecutive failed
round trips open it. Open: calls skip Redis at once (a miss, a won claim,
a dropped write) for ``reset_s``. Then it half-opens: exactly one round trip
is let through as a probe; its success closes the breaker, its failure opens
it for another ``reset_s``. Time comes from ``clock`` so tests step it.
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["Breaker"]


class Breaker:
    """Counts consecutive failures of round trips; ``allow()`` says whether to try one."""

    __slots__ = ("failures", "reset_s", "clock", "on_change", "_count", "_opened_at", "_probing")

    def __init__(
        self,
        failures: int = 3,
        reset_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self.clock = clock
        self.on_change = on_change  # called with True when it opens, False when it closes
        self._count = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        """True while calls should skip Redis without trying (open, or a probe is out)."""
        opened = self._opened_at
        if opened is None:
            return False
        return self._probing or self.clock() < opened + self.reset_s

    def allow(self) -> bool:
        """May a round trip go out now? In half-open state, True once (the probe)."""
        opened = self._opened_at
        if opened is None:
            return True
        if self._probing or self.clock() < opened + self.reset_s:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._count = 0
        if self._opened_at is not None:
            self._opened_at = None
            self._probing = False
            if self.on_change is not None:
                self.on_change(False)

    def failure(self) -> None:
        self._count += 1
        if self._opened_at is not None:  # the probe failed: open for another period
            self._opened_at = self.clock()
            self._probing = False
        elif self._count >= self.failures:
            self._opened_at = self.clock()
            if self.on_change is not None:
                self.on_change(True)
