"""Every mirrored zone of a service: built from config, started, refreshed, stopped.

``MirrorSet.table`` maps ``(kind, zone name)`` to the zone's mirror; the
``ZoneRegistry`` hands it to each ``Zone`` it builds, so the checks answer a
mirrored zone from memory and every other zone by DNS. A config reload keeps
the mirrors whose ``mirror`` value did not change (with their data), starts
the new ones and stops the ones that went away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Mapping

from .source import POLL_S, FileMirror, Mirror
from .spec import parse_spec

__all__ = ["MirrorSet"]

log = logging.getLogger("fastlookup.mirror")

Display = Callable[[str, str], str]


class MirrorSet:
    """The mirrors of one service and their refresh tasks."""

    def __init__(self, stats: Any = None, *, poll_s: float = POLL_S, clock: Callable[[], float] = time.time) -> None:
        self.stats = stats
        self.poll_s = poll_s
        self.clock = clock
        self.table: dict[tuple[str, str], Mirror] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}
        self.running = False

    def _make(self, kind: str, zone: str, text: str, display: Display) -> Mirror:
        spec = parse_spec(text, f"{kind}.{zone}.mirror")
        common = {"display": display(kind, zone), "stats": self.stats, "clock": self.clock}
        if spec.kind == "axfr":
            from .axfr import AxfrMirror  # dnspython is loaded only for zone transfers

            return AxfrMirror(kind, zone, spec, **common)
        return FileMirror(kind, zone, spec, poll_s=self.poll_s, **common)

    def configure(self, dnsbl: Mapping[str, Any], rhsbl: Mapping[str, Any], display: Display) -> list[Mirror]:
        """Make the table match the config; the mirrors that are new (to be started)."""
        wanted: dict[tuple[str, str], str] = {}
        for kind, table in (("dnsbl", dnsbl), ("rhsbl", rhsbl)):
            for zone, conf in table.items():
                if getattr(conf, "mirror", None):
                    wanted[(kind, zone)] = conf.mirror
        new: list[Mirror] = []
        table: dict[tuple[str, str], Mirror] = {}
        for key, text in wanted.items():
            old = self.table.get(key)
            if old is not None and str(old.spec) == str(parse_spec(text)):
                table[key] = old
            else:
                table[key] = mirror = self._make(key[0], key[1], text, display)
                new.append(mirror)
        for key in list(self._tasks):
            if table.get(key) is not self.table.get(key):  # removed or replaced: stop its refreshing
                self._tasks.pop(key).cancel()
        self.table = table
        return new

    async def start(self, mirrors: list[Mirror] | None = None) -> None:
        """First load of ``mirrors`` (default all), awaited together, then their refresh tasks."""
        mirrors = list(self.table.values()) if mirrors is None else mirrors
        if not mirrors:
            self.running = True
            return
        results = await asyncio.gather(*(m.refresh() for m in mirrors), return_exceptions=True)
        for mirror, result in zip(mirrors, results):
            if isinstance(result, BaseException):
                log.error("mirror %s: first load failed: %s", mirror.display, result)
        loop = asyncio.get_running_loop()
        for key, mirror in self.table.items():
            if mirror in mirrors and key not in self._tasks:
                self._tasks[key] = loop.create_task(mirror.run(), name=f"fastlookup-mirror-{mirror.display}")
        self.running = True

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for mirror in self.table.values():
            close = getattr(mirror, "close", None)
            if close is not None:
                await close()
        self.running = False

    def snapshot(self) -> list[dict]:
        return [m.snapshot() for m in self.table.values()]
