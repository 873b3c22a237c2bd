"""A progress bar on stderr, with no dependency: one line redrawn in place.

On a terminal the bar shows the cell (contender and concurrency), the cells
done and the checks of the cell so far; elsewhere (a log, CI) it prints one
line per finished cell instead, so logs stay readable.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Cells done out of ``total``; ``tick`` redraws at most 10 times a second."""

    def __init__(self, total: int, *, stream=None, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.label = ""
        self._last = 0.0
        self._t0 = time.monotonic()

    def start(self, label: str) -> None:
        self.label = label
        self._cell_t0 = time.monotonic()
        self.tick(0, force=True)

    def tick(self, checks: int, *, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        width = 28
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "." * (width - filled)
        line = (
            f"\r[{bar}] {self.done}/{self.total} {self.label:<28.28} "
            f"{checks:>7} checks {now - self._cell_t0:5.1f}s  total {now - self._t0:5.0f}s"
        )
        self.stream.write(line)
        self.stream.flush()

    def finish_cell(self, summary: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.write(f"[{self.done}/{self.total}] {self.label}: {summary}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()
