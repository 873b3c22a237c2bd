"""Run a real fastlookup service for tests and benchmarks, on a private socket.

Thread form (aiosmtpd-controller style: ``start()`` returns only after a
``ping`` over the real socket was answered)::

    config = service_config("/tmp/x/fl.sock", upstream=[dns.address])
    with ServiceThread(config) as svc, svc.client() as client:
        client.a("host.example.test")
        svc.call("stats")                  # in-process, from the test thread

``ServiceThread`` also takes ``config`` as a function of a fresh temporary
directory (``lambda tmp: service_config(tmp + "/fl.sock", ...)``); that
directory is removed at stop.

Process form, for signals (SIGTERM drains, SIGHUP reloads) and for a
benchmark that must not share the GIL with the service::

    with ServiceProcess(["--config", path], socket=sock) as proc:
        proc.client().ping(); proc.signal(signal.SIGHUP)

Both stop only what they started (the thread by its loop, the process by
its pid).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastlookup.client import Client
from fastlookup.config import Config, load_config, merge_tables
from fastlookup.errors import ServiceUnavailable
from fastlookup.testing._proc import OutputReader, ServerStartError, popen, stop_process, wait_until

__all__ = ["ServiceThread", "ServiceProcess", "RoutedUpstream", "service_config"]


def service_config(
    socket_path: str,
    upstream: Sequence[tuple[str, int] | str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    **tables: Any,
) -> Config:
    """A Config for a test service: ``socket_path``, ``upstream`` servers, no health probes.

    ``tables`` are config tables merged over that (``cache={"min_ttl_s": 0}``,
    ``policy={"default": {...}}``). The process environment is ignored
    unless ``environ`` is given, so a developer's ``FASTLOOKUP_*`` does not leak in.
    """
    servers = [s if isinstance(s, str) else f"{s[0]}:{s[1]}" for s in upstream]
    overrides: dict = {"server": {"socket": socket_path, "grace_s": 2.0}, "health": {"interval_s": 0}}
    if servers:
        overrides["upstream"] = {"servers": servers, "timeout_s": 0.5, "attempts": 2}
    overrides = merge_tables(overrides, tables)
    return load_config(environ=environ if environ is not None else {}, overrides=overrides)


class ServiceThread:
    """A ``Service`` on its own event loop in a daemon thread."""

    def __init__(
        self,
        config: Config | Callable[[str], Config],
        *,
        upstream: Any = None,
        loop: str = "asyncio",
        start_timeout_s: float = 10.0,
    ) -> None:
        self._config_arg = config
        self._upstream = upstream
        self._loop_name = loop
        self._start_timeout_s = start_timeout_s
        self._tmpdir: str | None = None
        self.config: Config | None = None if callable(config) else config
        self.service: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def socket(self) -> str:
        """The path of the service's socket."""
        if self.config is None:
            raise RuntimeError("ServiceThread: not started")
        return self.config.server.socket

    def client(self, **kwargs: Any) -> Client:
        """A new sync ``Client`` of this service (``timeout=``, ``fail_open=``)."""
        return Client(self.socket, **kwargs)

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> "ServiceThread":
        """Start the loop thread and the service; return once a ping over the socket was answered."""
        if self._thread is not None:
            raise RuntimeError("ServiceThread: already started")
        if self.config is None:
            self._tmpdir = tempfile.mkdtemp(prefix="fastlookup-")
            self.config = self._config_arg(self._tmpdir)  # type: ignore[operator]
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="fastlookup-service", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            self.stop()
            raise ServerStartError(f"fastlookup service on {self.socket}: not started after {self._start_timeout_s}s")
        if self._error is not None:
            error, self._error = self._error, None
            self.stop()
            raise ServerStartError(f"fastlookup service on {self.socket}: failed to start: {error}") from error
        try:
            with Client(self.socket, timeout=self._start_timeout_s) as probe:
                probe.ping()
        except ServiceUnavailable as exc:
            self.stop()
            raise ServerStartError(f"fastlookup service started but does not answer on {self.socket}: {exc}") from exc
        return self

    def _run(self) -> None:
        from fastlookup import loops

        loop = loops.loop_factory(self._loop_name)()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        from fastlookup.service import Service

        self._stop = asyncio.Event()
        self.service = Service(self.config, upstream=self._upstream)  # type: ignore[arg-type]
        await self.service.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.service.stop()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the service gracefully and join the thread. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            loop, stop = self.loop, self._stop
            if loop is not None and stop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(stop.set)
                except RuntimeError:  # the loop closed meanwhile
                    pass
            thread.join(timeout_s)
            if thread.is_alive():
                raise RuntimeError(f"fastlookup service thread did not stop within {timeout_s}s")
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            if callable(self._config_arg):
                self.config = None

    def __enter__(self) -> "ServiceThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- reaching into the loop ------------------------------------------------------

    def run(self, fn: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Run ``fn()`` (a coroutine function or a plain one) on the service's loop; its result."""
        if self.loop is None or self.service is None:
            raise RuntimeError("ServiceThread: not started")

        async def wrapper() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout_s)

    def call(self, method: str, args: dict | None = None, timeout_s: float = 10.0) -> Any:
        """An in-process ``Service.call`` from the calling thread."""
        return self.run(lambda: self.service.call(method, args), timeout_s)

    def reload(self, config: Config | None = None) -> bool:
        """``Service.reload`` on the loop (re-reads the file and env when ``config`` is None)."""
        return self.run(lambda: self.service.reload(config))


class ServiceProcess:
    """``python -m fastlookup serve ARGS`` as a child process, ready once ``ping`` answers.

    ``output`` keeps its last log lines and counts those containing one of
    ``watch`` (``output.wait_for_count("configuration reloaded", 1, 10)``).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        socket: str,
        env: Mapping[str, str] | None = None,
        watch: Sequence[str] = ("configuration reloaded", "reload failed"),
        start_timeout_s: float = 15.0,
    ) -> None:
        self.args = [sys.executable, "-m", "fastlookup", "serve", *args]
        self.watch = tuple(watch)
        self.socket = socket
        self.env = dict(os.environ if env is None else env)
        self._start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.output: OutputReader | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("ServiceProcess: not started")
        return self.proc.pid

    def client(self, **kwargs: Any) -> Client:
        return Client(self.socket, **kwargs)

    def _answers(self) -> bool:
        try:
            with Client(self.socket, timeout=1.0) as probe:
                probe.ping()
        except ServiceUnavailable:
            return False
        return True

    def start(self) -> "ServiceProcess":
        if self.proc is not None:
            raise RuntimeError("ServiceProcess: already started")
        self.proc = popen(self.args, env=self.env)
        self.output = OutputReader(self.proc, watch=self.watch)
        try:
            wait_until(
                self._answers, timeout_s=self._start_timeout_s, what=f"fastlookup serve on {self.socket}",
                proc=self.proc, output=self.output.tail,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the service's pid."""
        os.kill(self.pid, sig)

    def wait(self, timeout_s: float = 15.0) -> int:
        """Wait for the process to exit; its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> int | None:
        """SIGTERM by pid (then SIGKILL after a timeout); the exit code. Safe to call twice."""
        if self.proc is None:
            return None
        code = stop_process(self.proc, timeout_s=10.0, sig=signal.SIGTERM)
        if self.output is not None:
            self.output.join()
        return code

    def __enter__(self) -> "ServiceProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RoutedUpstream:
    """An ``Upstream`` that sends names under a zone suffix to that zone's server.

    Tests that need our ``DnsServer`` for host names and rbldnsd for the
    blocklists give the service one of these: ``RoutedUpstream({"bl.test":
    rbl.address}, default=dns.address)``. Pools are built on first use, on
    the service's loop.
    """

    def __init__(self, routes: Mapping[str, tuple[str, int]], default: tuple[str, int], *, timeout_s: float = 0.5, attempts: int = 2) -> None:
        self.routes = dict(routes)
        self.default = default
        self.timeout_s = timeout_s
        self.attempts = attempts
        self._pools: list[tuple[str, Any]] | None = None
        self._default: Any = None
        self.servers: tuple = ()

    def _build(self) -> None:
        from fastlookup.upstream import Server, UpstreamPool

        def pool(address: tuple[str, int]) -> Any:
            return UpstreamPool([Server.parse(f"{address[0]}:{address[1]}")], timeout_s=self.timeout_s, attempts=self.attempts)

        self._pools = [(suffix.rstrip(".").lower(), pool(address)) for suffix, address in self.routes.items()]
        self._default = pool(self.default)

    async def query(self, name: str, rdtype: str, deadline: float) -> Any:
        if self._pools is None:
            self._build()
        for suffix, pool in self._pools or ():
            if name == suffix or name.endswith("." + suffix):
                return await pool.query(name, rdtype, deadline)
        return await self._default.query(name, rdtype, deadline)

    async def close(self) -> None:
        for _, pool in self._pools or ():
            await pool.close()
        if self._default is not None:
            await self._default.close()
