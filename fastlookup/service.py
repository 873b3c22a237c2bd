"""The composition root and lifespan of the fastlookup service.

``Service(config)`` builds every part from frozen config and owns their
lifetimes::

    Stats ─┬─ UpstreamPool (config servers, else /etc/resolv.conf)
           ├─ MemoryCache + TtlPolicy ─┐
           ├─ RedisTier (redis.url set) ┴─ Resolver
           ├─ MirrorSet (zones with ``mirror``) ─┐
           ├─ ZoneRegistry ──────────────────────┴─ rpc.Context (+ PolicyEngine for ``check``)
           ├─ Server (unix socket)      ├─ optional listeners (LISTENERS)
           └─ ZoneHealth (health.interval_s > 0)

``start()`` / ``stop()`` run it inside a loop; ``call(method, args)`` is the
in-process form of an RPC for front ends in the same process; ``reload()``
re-reads the config file and env and swaps in new zones, policies, cache
clamps and upstream servers without dropping a connection (a bad config is
logged and the running one kept). ``run(config)`` is the process entry: it
picks the loop (``loops.py``), installs SIGTERM/SIGINT (graceful stop) and
SIGHUP (reload), and serves until told to stop.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import time
from typing import Any, Callable, Mapping

from . import __version__, loops, rpc
from .cache.entry import TtlPolicy
from .cache.memory import MemoryCache
from .checks.policy import PolicyEngine
from .checks.tempfail import UpstreamSeen
from .checks.zones import ZoneRegistry
from .config import Config, ConfigError, PolicyConfig, load_config, mask_url
from .masking import mask_secrets
from .errors import BadRequest, InternalError, InvalidArgument, RpcError
from .lookup import MISSING, run as run_lookup, try_sync
from .mirror import MirrorSet
from .resolver import Resolver
from .server import Server
from .stats import Stats

__all__ = ["Service", "LISTENERS", "run", "build_upstream", "SWEEP_INTERVAL_S"]

log = logging.getLogger("fastlookup.service")

#: How often expired memory entries past their stale window are dropped.
SWEEP_INTERVAL_S = 60.0

#: Optional listeners: config key -> (module, function). Each function is
#: ``async serve(listen, service)`` returning an object with ``close()`` and
#: ``async wait_closed()``; the module is imported only when its key is set.
LISTENERS: dict[str, tuple[str, str]] = {
    "postfix.listen": ("fastlookup.adapters.postfix_policy", "serve"),
    "postfix.socketmap": ("fastlookup.adapters.socketmap", "serve"),
    "postfix.exim": ("fastlookup.adapters.exim", "serve"),
    "metrics.listen": ("fastlookup.metrics", "serve"),
}


def _warn_empty_policies(config: Config) -> None:
    """One warning per MTA-facing policy that can never refuse anybody: the silent set-up made loud (docs/access.md)."""
    from .doctor.policy import checks_nothing

    if not (config.postfix.listen or config.postfix.socketmap or config.postfix.exim):
        return
    for name in dict.fromkeys(["default", config.postfix.policy]):
        policy = config.policy.get(name)
        if policy is not None and checks_nothing(policy):
            log.warning("policy %r checks nothing (no lists, no requirements): every client is accepted; "
                        "see `fastlookup doctor`", name)


def _setting(config: Config, dotted: str) -> Any:
    table, key = dotted.split(".")
    return getattr(getattr(config, table), key)


def build_upstream(config: Config, stats: Stats, clock: Callable[[], float] = time.monotonic):
    """The UpstreamPool of ``[upstream]``; servers from resolv.conf when none are configured."""
    from .upstream import Server as DnsAddress, UpstreamPool, servers_from_resolv_conf

    up = config.upstream
    servers = []
    for i, text in enumerate(up.servers):
        try:
            servers.append(DnsAddress.parse(text))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"upstream.servers[{i}]: {exc}") from None
    if not servers:
        servers = servers_from_resolv_conf()
    return UpstreamPool(
        servers, timeout_s=up.timeout_s, attempts=up.attempts, max_in_flight=up.max_in_flight, stats=stats, clock=clock,
        rtt_floor_ms=up.rtt_floor_ms, probe_min_s=up.probe_min_s, probe_max_s=up.probe_max_s,
        explore_share=up.explore_share, hedge=up.hedge, socket_uses=up.socket_uses,
    )


class Service:
    """One running fastlookup: the engine, the socket server, listeners, timers."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | os.PathLike | None = None,
        overrides: Mapping[str, Any] | None = None,
        upstream: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.clock = clock
        self.stats = Stats()
        self._fixed_upstream = upstream is not None
        self.upstream = upstream if upstream is not None else build_upstream(config, self.stats, clock)
        self.memory = MemoryCache(config.cache.memory_entries, clock)
        # Is upstream answering (policy key tempfail = "auto")? Fed by the resolver with
        # every answer upstream gives, whichever method asked; kept across reloads.
        self.upstream_seen = UpstreamSeen(clock)
        self.resolver = Resolver(
            self.upstream,
            self.memory,
            TtlPolicy.from_config(config.cache),
            stats=self.stats,
            prefetch=config.cache.prefetch,
            fetch_budget_s=self._fetch_budget(config),
            clock=clock,
            on_upstream=self.upstream_seen.saw,
        )
        self.started_at = time.monotonic()
        # Local list mirrors (docs/mirrors.md): loaded in start(), answered by the checks.
        self.mirrors = MirrorSet(self.stats)
        self.mirrors.configure(config.dnsbl, config.rhsbl, _mirror_display(config))
        self.zones, self.policy, self.ctx = self._build_engine(config, set())
        s = config.server
        self.server = Server(
            s.socket,
            self.ctx,
            self.resolver,
            stats=self.stats,
            max_frame=s.max_frame_bytes,
            max_batch=s.max_batch,
            max_in_flight=s.max_in_flight,
            deadline_s=s.deadline_s,
            socket_mode=config.socket_mode,
            socket_group=s.socket_group,
            grace_s=s.grace_s,
            request_timeout_s=s.request_timeout_s,
        )
        self.shared: Any = None
        self.health: Any = None
        self.listeners: dict[str, Any] = {}
        self._sweeper: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._stopped: asyncio.Event | None = None
        self.running = False
        self.manage_logging = False  # set by run(): reload then re-applies [log]

    # --- building ------------------------------------------------------------

    @staticmethod
    def _fetch_budget(config: Config) -> float:
        return config.upstream.timeout_s * config.upstream.attempts + 0.1

    def _build_engine(self, config: Config, disabled: set[str]) -> tuple[ZoneRegistry, Any, rpc.Context]:
        """Zones, policy engine and method context for ``config``; raises ConfigError."""
        zones = ZoneRegistry(config.dnsbl, config.rhsbl, disabled, mirrors=self.mirrors.table)
        for pname, policy in config.policy.items():
            for table, kind in (("dnsbl", "dnsbl"), ("allow_zones", "dnsbl"), ("rhsbl", "rhsbl")):
                for i, spec in enumerate(getattr(policy, table)):
                    try:
                        zones.get(spec, kind)
                    except InvalidArgument as exc:
                        raise ConfigError(f"policy.{pname}.{table}[{i}]: {exc}") from None
        try:
            engine = PolicyEngine(config, zones, self.stats, upstream_seen=self.upstream_seen)
        except InvalidArgument as exc:
            raise ConfigError(str(exc)) from None
        default = config.policy.get("default") or PolicyConfig()
        ctx = rpc.Context(
            zones=zones,
            stats=self.stats,
            default_dnsbl=tuple(default.dnsbl) or tuple(config.dnsbl),
            default_rhsbl=tuple(default.rhsbl) or tuple(config.rhsbl),
            max_batch=config.server.max_batch,
            started=self.started_at,
            check=engine.prepare,
            extra_stats=self._extra_stats,
        )
        return zones, engine, ctx

    def _extra_stats(self) -> dict:
        out = {"memory_entries": len(self.memory), "memory_evictions": self.memory.evictions}
        out.update(self.server.snapshot())
        return out

    # --- lifespan --------------------------------------------------------------

    async def start(self) -> None:
        """Open the shared tier, the socket and the listeners; start the timers."""
        self._stopped = asyncio.Event()
        config = self.config
        try:
            if config.redis.url:
                self.shared = self._make_shared(config)
                self.resolver.shared = self.shared
                if hasattr(self.shared, "set_ttl_policy"):  # Redis values are clamped by this instance's policy
                    self.shared.set_ttl_policy(self.resolver.ttl)
            await self.mirrors.start()  # first copies loaded before the first check
            await self.server.start()
            for key, (module_name, func) in LISTENERS.items():
                listen = _setting(config, key)
                if listen:
                    serve = _import(module_name, func, key)
                    self.listeners[key] = await serve(listen, self)
                    log.info("%s: listening on %s", key, listen)
        except BaseException:
            await self.stop()
            raise
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self._sweep(), name="fastlookup-sweep")
        if config.health.interval_s > 0 and (config.dnsbl or config.rhsbl or any(p.dnsbl or p.rhsbl or p.allow_zones for p in config.policy.values())):
            try:
                from .health import ZoneHealth
            except ImportError:
                pass
            else:
                self.health = ZoneHealth(self)
                self.health.start()
        self.running = True
        log.info("fastlookup %s ready on %s", __version__, config.server.socket)
        _warn_empty_policies(config)

    def _make_shared(self, config: Config) -> Any:
        try:
            module = importlib.import_module("fastlookup.cache.redis_tier")
        except ImportError as exc:
            raise ConfigError(
                f"redis.url is set ({mask_url(config.redis.url)}) but the Redis tier cannot be loaded: {exc}; "
                "unset redis.url or install fastlookup with its redis dependency"
            ) from None
        return module.RedisTier.from_config(
            config.redis, stats=self.stats, clock=self.clock, budget_s=self._fetch_budget(config)
        )

    async def stop(self) -> None:
        """Graceful stop: listeners, then the socket (drain within grace_s), then the engine."""
        self.running = False
        for key, listener in list(self.listeners.items()):
            try:
                listener.close()
                await asyncio.wait_for(listener.wait_closed(), timeout=self.config.server.grace_s)
            except Exception as exc:  # keep stopping the rest
                log.warning("%s: error while closing: %s", key, exc)
        self.listeners.clear()
        await self.server.stop()
        await self.mirrors.stop()
        tasks = [t for t in (self._sweeper, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        self._sweeper = None
        if self.health is not None:
            await self.health.stop()
            self.health = None
        await self.resolver.close()
        await self.upstream.close()
        if self.shared is not None:
            await self.shared.close()
            self.shared = None
        if self._stopped is not None:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)  # a timer, not a poll: the sweep is periodic by design
            dropped = self.memory.sweep()
            if dropped:
                log.debug("memory sweep dropped %d dead entries", dropped)

    # --- in-process calls --------------------------------------------------------

    async def call(self, method: str, args: dict | None = None) -> Any:
        """One RPC in-process (front ends): the contract's result map, or raises RpcError."""
        if args is None:
            args = {}
        elif type(args) is not dict:
            raise BadRequest("arguments must be a map")
        prepared = rpc.prepare(self.ctx, method, args)
        if type(prepared) is rpc.Ready:
            return prepared.value
        resolver = self.resolver
        try:
            result, lookup = try_sync(resolver, prepared)
            if result is not MISSING:
                return result
            deadline = resolver.clock() + getattr(prepared, "deadline_s", self.config.server.deadline_s)
            return await run_lookup(resolver, prepared, deadline, lookup)
        except RpcError:
            raise
        except Exception as exc:
            log.exception("internal error in %s: %s", method[:64], type(exc).__name__)  # the text is in the traceback (cut)
            raise InternalError(f"internal error in {method[:64]}: {type(exc).__name__}") from exc

    # --- reload ---------------------------------------------------------------------

    def reload(self, config: Config | None = None) -> bool:
        """Re-read the config (file + env + flags) and apply what can change live.

        Returns False, keeping the running config, when the new one is bad.
        """
        try:
            new = config if config is not None else load_config(self.config_path, overrides=self.overrides)
            self._apply(new)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", mask_secrets(str(exc)))
            return False
        log.info("configuration reloaded")
        return True

    def _apply(self, new: Config) -> None:
        old = self.config
        # Mirrors whose value is unchanged keep their data; new ones load in the background.
        new_mirrors = self.mirrors.configure(new.dnsbl, new.rhsbl, _mirror_display(new))
        if new_mirrors and self.mirrors.running:
            self._spawn(self.mirrors.start(new_mirrors))
        # Build everything first: nothing is swapped unless all of it is valid.
        zones, engine, ctx = self._build_engine(new, self.zones.disabled)
        ttl = TtlPolicy.from_config(new.cache)
        upstream = None
        if new.upstream != old.upstream and not self._fixed_upstream:
            upstream = build_upstream(new, self.stats, self.clock)
            if hasattr(upstream, "inherit"):
                upstream.inherit(self.upstream)  # keep what is known of the servers both lists have
        # Swap.
        resolver = self.resolver
        resolver.ttl = ttl
        if hasattr(self.shared, "set_ttl_policy"):
            self.shared.set_ttl_policy(ttl)
        resolver.prefetch = new.cache.prefetch
        resolver.fetch_budget_s = self._fetch_budget(new)
        if self.shared is not None and hasattr(self.shared, "budget_s"):
            self.shared.budget_s = resolver.fetch_budget_s  # the fleet lock's life follows [upstream]
        self.memory.max_entries = new.cache.memory_entries  # a lower bound is reached as entries expire
        if upstream is not None:
            retired, self.upstream = self.upstream, upstream
            resolver.upstream = upstream
            self._retire(retired, self._fetch_budget(old))
            log.info("upstream servers now %s", ", ".join(str(s) for s in upstream.servers))
        self.zones, self.policy, self.ctx = zones, engine, ctx
        server = self.server
        server.ctx = ctx
        server.max_array_len = max(new.server.max_batch, 1024)
        server.decoders.clear()  # pooled decoders carry the old array limit
        server.deadline_s = new.server.deadline_s
        server.max_in_flight = new.server.max_in_flight
        server.grace_s = new.server.grace_s
        server.request_timeout_s = new.server.request_timeout_s
        self.config = new
        if new.log != old.log and self.manage_logging:
            from .logs import setup_logging

            setup_logging(new.log)
        for dotted in ("server.socket", "server.socket_mode", "server.socket_group", "server.loop", "server.max_frame_bytes"):
            if _setting(new, dotted) != _setting(old, dotted):
                log.warning("%s changed: it takes effect after a restart", dotted)
        if new.redis != old.redis:
            log.warning("[redis] changed: it takes effect after a restart")
        for key in LISTENERS:
            if _setting(new, key) != _setting(old, key):
                log.warning("%s changed: it takes effect after a restart", key)

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` as a background task of the service (cancelled by stop())."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return
        task = loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _retire(self, upstream: Any, after_s: float) -> None:
        """Close a replaced upstream pool once the queries it has in flight are done."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        async def later() -> None:
            await asyncio.sleep(after_s)  # its queries end by their own deadline; then close
            await upstream.close()

        task = loop.create_task(later())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _mirror_display(config: Config) -> Callable[[str, str], str]:
    """A mirrored zone's display name (access keys masked) for logs and stats labels."""
    registry = ZoneRegistry(config.dnsbl, config.rhsbl)
    return lambda kind, zone: registry.get(zone, kind).display


def _import(module_name: str, func: str, key: str) -> Callable:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key} is set but {module_name} is not available ({exc}); unset {key} to start without it") from None
    try:
        return getattr(module, func)
    except AttributeError:
        raise ConfigError(f"{key} is set but {module_name} has no {func}()") from None


def _notify_systemd(state: bytes) -> None:
    """sd_notify(3) without libsystemd: tell a Type=notify unit we are ready/stopping."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state, address)
    except OSError as exc:
        log.warning("could not notify systemd: %s", exc)


async def serve(
    config: Config,
    *,
    config_path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Start a Service, serve until SIGTERM/SIGINT, reload on SIGHUP, stop gracefully."""
    service = Service(config, config_path=config_path, overrides=overrides)
    service.manage_logging = True
    await service.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_stop(signame: str) -> None:
        log.info("%s: stopping (grace %.1fs)", signame, service.config.server.grace_s)
        stop.set()

    def on_hup() -> None:
        log.info("SIGHUP: reloading the configuration")
        service.reload()

    loop.add_signal_handler(signal.SIGTERM, on_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, on_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    _notify_systemd(b"READY=1")
    try:
        await stop.wait()
    finally:
        _notify_systemd(b"STOPPING=1")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await service.stop()


def run(
    config: Config,
    *,
    config_path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """The process entry: set up logging, pick the loop, serve until stopped.

    Raises ``ConfigError``/``SocketBusy`` (``FastlookupError``) when it cannot start.
    """
    from .logs import setup_logging

    setup_logging(config.log)
    factory = loops.loop_factory(config.server.loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(config, config_path=config_path, overrides=overrides))
