"""A mirrored zone as the checks see it, and the file mirror that keeps it fresh.

The checks reach a mirror only through ``MirrorSource.answer(qname)``:

* ``None``: the mirror has no data to answer with (not loaded yet, every
  copy refused, or a zone transfer past its SOA expire). The check then asks
  DNS for the zone as if it were not mirrored: the public servers of a list
  are still the list (documented in docs/mirrors.md).
* ``((), ())``: not listed.
* ``(codes, txts)``: the A records and TXT strings rbldnsd would answer.

``answer`` is synchronous and reads one attribute (``data``, an immutable
``ZoneData``): a reload builds a whole new copy off the event loop and swaps
it in with one assignment, so a query sees the old copy or the new one,
never a mix, and never waits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Protocol

from .loader import load_files
from .spec import MirrorSpec
from .zonedata import MirrorLoadError, ZoneData

__all__ = ["MirrorSource", "Mirror", "FileMirror", "POLL_S", "GAUGES", "COUNTERS", "PROCESS_MIN_BYTES"]

log = logging.getLogger("fastlookup.mirror")

#: How often a file mirror looks at its files' mtime and size.
POLL_S = 5.0
GAUGES = ("mirror_entries", "mirror_bytes", "mirror_loaded_at_s", "mirror_mtime_s", "mirror_serial", "mirror_answering")
COUNTERS = ("mirror_loads", "mirror_load_errors")


#: Files at least this big (together) of these types load in a child process. A worker
#: thread would compete with the event loop for the GIL for seconds (measured: loop lags of
#: 20-260 ms on a busy 2-CPU machine); the child sends back only arrays, which unpickle in
#: milliseconds. Small files load in a thread: a child costs more than they do.
PROCESS_MIN_BYTES = 4 << 20
PROCESS_TYPES = frozenset({"ip4set", "ip4trie", "ip6tset"})


async def _load_in_child(kind: str, paths: tuple[str, ...], max_entries: int) -> tuple[ZoneData, list[str]]:
    """``load_files`` in a fresh child process (spawned: the service has threads), then the child exits."""
    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return await loop.run_in_executor(pool, functools.partial(load_files, kind, paths, max_entries=max_entries))
    except BrokenProcessPool as exc:
        raise MirrorLoadError(f"{kind}:{','.join(paths)}: the loading process died ({exc}); out of memory?") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class MirrorSource(Protocol):
    """What the checks need from a local copy of a zone."""

    def answer(self, qname: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None: ...


class Mirror:
    """The part every kind of mirror shares: the current copy, the answer, the stats."""

    def __init__(self, kind: str, zone: str, spec: MirrorSpec, *, display: str | None = None, stats: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.kind = kind
        self.zone = zone
        self.spec = spec
        self.display = display or zone
        self.stats = stats
        self.clock = clock
        self.data: ZoneData | None = None
        self._cut = len(zone) + 1
        self.loads = 0
        self.load_errors = 0
        self.last_error = ""
        if stats is not None:
            for name in GAUGES + COUNTERS:
                stats.declare(name, "zone")
            self._gauges()

    def answer(self, qname: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        data = self.data
        if data is None:
            return None
        sub = qname[: -self._cut]
        quick = data.quick  # ZoneData.answer's steps, one call less on the hot path
        if quick is not None:
            found = quick(sub)
            if found is not None:
                return found
        return data.general(sub)

    def swap(self, data: ZoneData | None) -> None:
        """Serve ``data`` from now on (None: stop answering, the zone goes back to DNS)."""
        self.data = data
        self._gauges()

    def failed(self, message: str) -> None:
        self.load_errors += 1
        self.last_error = message
        if self.stats is not None:
            self.stats.inc("mirror_load_errors", (self.display,))
        log.error("mirror %s: %s; still serving the previous copy" if self.data is not None else
                  "mirror %s: %s; no copy loaded, the zone is asked by DNS", self.display, message)

    def loaded(self, data: ZoneData, warnings: list[str]) -> None:
        self.loads += 1
        self.swap(data)
        if self.stats is not None:
            self.stats.inc("mirror_loads", (self.display,))
        log.info("mirror %s: loaded %d entries (%d bytes)%s", self.display, data.entries, data.nbytes,
                 f", serial {data.serial}" if data.serial is not None else "")
        if data.warnings:
            log.warning("mirror %s: %d data lines ignored (as rbldnsd ignores them), first: %s",
                        self.display, data.warnings, "; ".join(warnings))

    def _gauges(self) -> None:
        stats = self.stats
        if stats is None:
            return
        data = self.data
        labels = (self.display,)
        stats.set("mirror_answering", 1 if data is not None else 0, labels)
        if data is None:
            return
        stats.set("mirror_entries", data.entries, labels)
        stats.set("mirror_bytes", data.nbytes, labels)
        stats.set("mirror_loaded_at_s", round(data.loaded_at, 3), labels)
        if data.mtime:
            stats.set("mirror_mtime_s", data.mtime, labels)
        if data.serial is not None:
            stats.set("mirror_serial", data.serial, labels)

    def snapshot(self) -> dict:
        data = self.data
        return {
            "zone": self.display,
            "source": self.spec.kind,
            "answering": data is not None,
            "entries": data.entries if data else 0,
            "bytes": data.nbytes if data else 0,
            "loaded_at": data.loaded_at if data else None,
            "mtime": data.mtime if data and data.mtime else None,
            "serial": data.serial if data else None,
            "load_errors": self.load_errors,
        }

    async def refresh(self) -> bool:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    async def run(self) -> None:  # pragma: no cover
        raise NotImplementedError


class FileMirror(Mirror):
    """rbldnsd data files, reloaded when a file's mtime or size changes (polled every ``poll_s``).

    A load runs in a worker thread, or for big IP-set files in a child process
    (``PROCESS_MIN_BYTES``); either way the finished copy is swapped in on the loop.
    """

    def __init__(self, kind: str, zone: str, spec: MirrorSpec, *, poll_s: float = POLL_S, max_entries: int = 50_000_000,
                 **kw: Any) -> None:
        super().__init__(kind, zone, spec, **kw)
        self.poll_s = poll_s
        self.max_entries = max_entries
        self._loaded_sig: tuple | None = None
        self._failed_sig: tuple | None = None
        self._lock: asyncio.Lock | None = None  # one load at a time (the poll and an explicit refresh)
        self.process_min_bytes = PROCESS_MIN_BYTES
        self.last_loader = ""  # where the last load ran: "thread" or "process"

    def signature(self) -> tuple:
        """(mtime_ns, size) of every file; None for a file that cannot be stat'ed."""
        out = []
        for path in self.spec.paths:
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
            else:
                out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def load_now(self) -> bool:
        """Load synchronously (tests, the benchmark); True when a new copy is served."""
        sig = self.signature()
        try:
            data, warnings = load_files(self.spec.kind, self.spec.paths, max_entries=self.max_entries, clock=self.clock)
        except MirrorLoadError as exc:
            self._failed_sig = sig
            self.failed(str(exc))
            return False
        self._loaded_sig = sig
        self.loaded(data, warnings)
        return True

    async def refresh(self) -> bool:
        """Reload in a worker thread if the files changed since the last attempt; True when swapped.

        A refresh while another runs waits for it, then finds nothing new.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._refresh()

    async def _refresh(self) -> bool:
        sig = self.signature()
        if sig == self._loaded_sig or sig == self._failed_sig:
            return False
        try:
            size = sum(s[1] for s in sig if s is not None)
            if self.spec.kind in PROCESS_TYPES and size >= self.process_min_bytes:
                self.last_loader = "process"
                data, warnings = await _load_in_child(self.spec.kind, self.spec.paths, self.max_entries)
                data = dataclasses.replace(data, loaded_at=self.clock())
            else:
                self.last_loader = "thread"
                data, warnings = await asyncio.to_thread(
                    load_files, self.spec.kind, self.spec.paths, max_entries=self.max_entries, clock=self.clock
                )
        except MirrorLoadError as exc:
            self._failed_sig = sig
            self.failed(str(exc))
            return False
        self._loaded_sig = sig
        self.loaded(data, warnings)
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the polling
                log.exception("mirror %s: reload failed: %s", self.display, exc)
            await asyncio.sleep(self.poll_s)  # a timer: the poll interval is the design
