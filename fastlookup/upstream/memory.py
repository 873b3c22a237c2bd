"""``MemoryUpstream``: an in-memory ``Upstream`` for unit tests of the resolver's logic.

House rule 5: every seam has a real implementation and an in-memory double.
This one answers from a table, records every call, can hold answers back
until the test releases them, answer late (``delay_s``) or play a dead
upstream (``failing``), so coalescing, deadlines, stale answers and prefetch
can be tested by stepping, without sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ..model import Answer

__all__ = ["MemoryUpstream"]

_NXDOMAIN = Answer("nxdomain")


class MemoryUpstream:
    """Answers ``(name, rdtype)`` from ``answers`` (else ``default``) and records each call in ``calls``."""

    def __init__(
        self,
        answers: Mapping[tuple[str, str], Answer] | None = None,
        *,
        default: Answer = _NXDOMAIN,
        hold: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        self.answers: dict[tuple[str, str], Answer] = dict(answers or {})
        self.default = default
        self.delay_s = delay_s
        self.failing = False  # True: answer "timeout" to everything, as a dead upstream does
        self.calls: list[tuple[str, str, float]] = []
        self.closed = False
        self._gate = asyncio.Event() if hold else None

    @property
    def queries(self) -> list[tuple[str, str]]:
        """The ``(name, rdtype)`` of every call so far, in order."""
        return [(name, rdtype) for name, rdtype, _ in self.calls]

    def set(self, name: str, rdtype: str, answer: Answer) -> None:
        """Answer ``name``/``rdtype`` with ``answer`` from now on."""
        self.answers[(name, rdtype)] = answer

    def release(self) -> None:
        """With ``hold=True``: let every held and future query answer."""
        if self._gate is not None:
            self._gate.set()

    def hold_answers(self) -> None:
        """Hold back every query from now on, until ``release()``."""
        if self._gate is None:
            self._gate = asyncio.Event()
        self._gate.clear()

    async def query(self, name: str, rdtype: str, deadline: float) -> Answer:
        if self.closed:
            raise RuntimeError("MemoryUpstream.query() called after close()")
        self.calls.append((name, rdtype, deadline))
        if self._gate is not None:
            await self._gate.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing:
            return Answer("timeout")
        return self.answers.get((name, rdtype), self.default)

    async def close(self) -> None:
        self.closed = True
