"""Configuration: frozen typed data from TOML, ``FASTLOOKUP_*`` env and flags.

Precedence: defaults < TOML file < ``FASTLOOKUP_<TABLE>__<KEY>`` environment
variables < CLI flags. Unknown keys and out-of-range values fail at load with
a message naming the key, the bad value and what is allowed. Every key has a
default, so no file at all runs a memory-only service whose upstream servers
come from ``/etc/resolv.conf``. ``docs/configuration.md`` lists every key.

Env values are parsed by the type of the key: ``true/false/1/0/yes/no/on/off``
for booleans, numbers, and for lists either a TOML array (``["a", "b"]``) or
comma-separated text (``1.1.1.1:53,9.9.9.9``). Nested tables use ``__`` too:
``FASTLOOKUP_POLICY__DEFAULT__DEADLINE_S=1.0``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError

__all__ = [
    "Config",
    "ServerConfig",
    "UpstreamConfig",
    "CacheConfig",
    "RedisConfig",
    "PostfixConfig",
    "MetricsConfig",
    "LogConfig",
    "HealthConfig",
    "ZoneConfig",
    "PolicyConfig",
    "load_config",
    "merge_tables",
    "ENV_PREFIX",
]

ENV_PREFIX = "FASTLOOKUP_"
DEFAULT_SOCKET = "/run/fastlookup/fastlookup.sock"
MODES = ("off", "tag", "defer", "reject")
TARGETS = ("client", "helo", "sender", "recipient")


def _range(lo: float, hi: float) -> dict:
    return {"range": (lo, hi)}


def _choice(*values: str) -> dict:
    return {"choices": values}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    socket: str = DEFAULT_SOCKET
    socket_mode: str = field(default="0660", metadata={"octal": True})
    socket_group: str = ""  # group given to the socket file (the MTA's), "" = unchanged
    max_frame_bytes: int = field(default=1 << 20, metadata=_range(1024, 64 << 20))
    max_batch: int = field(default=1000, metadata=_range(1, 100000))
    max_in_flight: int = field(default=10000, metadata=_range(1, 1_000_000))
    loop: str = field(default="auto", metadata=_choice("auto", "uvloop", "asyncio"))
    grace_s: float = field(default=5.0, metadata=_range(0, 300))
    # Deadline of a lookup call that names none (checks use their policy's deadline_s).
    deadline_s: float = field(default=2.0, metadata=_range(0.01, 60))
    # A request that has begun (a msgpack frame, a front's request line or block) must be
    # complete within this many seconds, or its connection is closed (slow senders hold memory).
    request_timeout_s: float = field(default=10.0, metadata=_range(0.1, 3600))


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    servers: tuple[str, ...] = ()  # () = the nameservers of /etc/resolv.conf
    timeout_s: float = field(default=0.8, metadata=_range(0.01, 30))
    attempts: int = field(default=2, metadata=_range(1, 10))
    max_in_flight: int = field(default=64, metadata=_range(1, 10000))
    # Server health (fastlookup/upstream/health.py): a try's timeout is srtt + max(4 rttvar, floor),
    # at most timeout_s; a server that timed out is asked last and probed after probe_min_s,
    # doubling up to probe_max_s; explore_share of queries also ask another live server in the background.
    rtt_floor_ms: float = field(default=50.0, metadata=_range(1, 10000))
    probe_min_s: float = field(default=1.0, metadata=_range(0.01, 3600))
    probe_max_s: float = field(default=60.0, metadata=_range(0.01, 86400))
    explore_share: float = field(default=0.02, metadata=_range(0, 0.5))
    hedge: bool = False  # ask the next server too when a reply is later than the usual RTT band
    socket_uses: int = field(default=100, metadata=_range(1, 10000))  # queries per UDP source port


@dataclass(frozen=True, slots=True)
class CacheConfig:
    memory_entries: int = field(default=200_000, metadata=_range(16, 100_000_000))
    min_ttl_s: int = field(default=60, metadata=_range(0, 7 * 86400))
    max_ttl_s: int = field(default=86400, metadata=_range(1, 30 * 86400))
    negative_min_ttl_s: int = field(default=60, metadata=_range(0, 7 * 86400))
    negative_max_ttl_s: int = field(default=3600, metadata=_range(1, 30 * 86400))
    failure_ttl_s: int = field(default=5, metadata=_range(0, 3600))
    stale_s: int = field(default=3600, metadata=_range(0, 30 * 86400))
    # A stale "not listed" for a blocklist is served only this long past
    # expiry: a missed listing is cheaper than a wrong one only within limits.
    stale_negative_s: int = field(default=300, metadata=_range(0, 30 * 86400))
    prefetch: bool = True


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str = ""  # "" = no shared tier
    key_prefix: str = "fl:1:"
    timeout_s: float = field(default=0.05, metadata=_range(0.001, 10))
    # 0 = auto: the lock lives as long as the winner's whole upstream budget
    # (timeout_s x attempts + 0.1 s) plus 200 ms; a loser waits until the lock's end.
    lock_ms: int = field(default=0, metadata=_range(0, 60000))
    wait_ms: int = field(default=0, metadata=_range(0, 60000))  # a cap on a loser's wait; 0 = no cap but the lock
    breaker_failures: int = field(default=3, metadata=_range(1, 1000))
    breaker_reset_s: float = field(default=2.0, metadata=_range(0.01, 3600))


# A front's own socket access: "" = the server.socket_group / server.socket_mode value.
_FRONT_MODE = {"octal": True, "inherit": True}


@dataclass(frozen=True, slots=True)
class PostfixConfig:
    """The MTA fronts; each has its own listener, group and mode (docs/access.md).

    Each MTA connects as its own user, so one group for all fronts cannot
    serve Postfix, Exim and qmail on one host: ``<front>_group`` and
    ``<front>_mode`` set a front's unix socket, ``""`` inherits
    ``server.socket_group`` / ``server.socket_mode``.
    """

    listen: str = ""  # "unix:/run/fastlookup/policy.sock" or "inet:127.0.0.1:10040"
    socketmap: str = ""  # same forms, for check_client_access socketmap:
    exim: str = ""  # same forms, the Exim ${readsocket} line protocol
    policy: str = "default"
    listen_group: str = ""  # group of the policy socket ("postfix"); "" = server.socket_group
    listen_mode: str = field(default="", metadata=_FRONT_MODE)  # "" = server.socket_mode
    socketmap_group: str = ""
    socketmap_mode: str = field(default="", metadata=_FRONT_MODE)
    exim_group: str = ""  # "Debian-exim" on Debian
    exim_mode: str = field(default="", metadata=_FRONT_MODE)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str = ""  # "127.0.0.1:9153" serves /metrics


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str = field(default="kv", metadata=_choice("kv", "json"))
    level: str = field(default="info", metadata=_choice("debug", "info", "warning", "error"))


@dataclass(frozen=True, slots=True)
class HealthConfig:
    interval_s: float = field(default=300.0, metadata=_range(0, 86400))  # 0 = no probing


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    """One DNSBL or RHSBL zone; ``None`` fields take the built-in profile's value."""

    codes: tuple[str, ...] | None = None
    errors: tuple[str, ...] | None = None
    weight: float | None = field(default=None, metadata=_range(-100, 100))
    message: str | None = None
    targets: tuple[str, ...] | None = field(default=None, metadata={"each": TARGETS})
    allow: bool | None = None  # an allowlist zone (dnswl-style): a hit cancels listings
    # Answer this zone from a local copy: "TYPE:PATH[,PATH...]" (rbldnsd data files:
    # ip4set, ip4trie, ip6trie, ip6tset, dnset, combined) or "axfr:HOST[:PORT]" (zone transfer). See docs/mirrors.md.
    mirror: str | None = field(
        default=None,
        metadata={"doc_default": "none: asked by DNS", "doc_bound": "`TYPE:PATH[,PATH...]` or `axfr:HOST[:PORT]`"},
    )
    # The name replies show instead of the query zone (postscreen_dnsbl_reply_map): a DQS
    # zone's key never reaches a sender; built-in DQS profiles default to the public zone.
    reply_name: str | None = None
    # "ignore": log-only (postscreen's dnsbl action): hits are logged and counted, never decide.
    action: str | None = field(default=None, metadata=_choice("enforce", "ignore"))


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    deadline_s: float = field(default=1.5, metadata=_range(0.01, 60))
    allow: tuple[str, ...] = field(default=("127.0.0.0/8", "::1/128"), metadata={"cidr": True})
    block: tuple[str, ...] = field(default=(), metadata={"cidr": True})
    require_ptr: str = field(default="off", metadata=_choice(*MODES))
    require_fcrdns: str = field(default="off", metadata=_choice(*MODES))
    sender_domain_exists: str = field(default="off", metadata=_choice(*MODES))
    dnsbl: tuple[str, ...] = ()
    rhsbl: tuple[str, ...] = ()
    allow_zones: tuple[str, ...] = ()  # dnswl-style zones on the client IP
    threshold: float = field(default=1.0, metadata=_range(-1000, 1000))
    on_listed: str = field(default="reject", metadata=_choice("reject", "defer", "tag"))
    reject_code: int = field(default=554, metadata=_range(500, 599))
    defer_code: int = field(default=450, metadata=_range(400, 499))
    # Texts carry no "Client host rejected:" prefix: Postfix adds its own (see docs/postfix.md).
    reject_text: str = "Service unavailable; $class [$what] blocked using $zone${txt?; $txt}"
    block_text: str = "Access denied for $ip"
    ptr_text: str = "cannot find your reverse hostname, [$ip]"
    fcrdns_text: str = "cannot find your hostname, [$ip]"
    sender_text: str = "Domain not found"
    # A PTR/FCrDNS lookup that fails (SERVFAIL, timeout) where require_* is defer/reject:
    # "defer" answers 450 as Postfix does, "accept" fails open, "auto" defers a SERVFAIL only
    # while upstream answers other questions (the client's DNS is broken, not ours; any
    # method's answers count, see checks/tempfail.py) and fails open on a timeout.
    tempfail: str = field(default="auto", metadata=_choice("auto", "defer", "accept"))
    # Authenticated submissions (SASL): "accept" without lookups (end-user IPs are on
    # PBL-style lists by design), or "check" them like any client.
    authenticated: str = field(default="accept", metadata=_choice("accept", "check"))


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    cache: CacheConfig = CacheConfig()
    redis: RedisConfig = RedisConfig()
    postfix: PostfixConfig = PostfixConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()
    health: HealthConfig = HealthConfig()
    dnsbl: Mapping[str, ZoneConfig] = field(default_factory=lambda: types.MappingProxyType({}))
    rhsbl: Mapping[str, ZoneConfig] = field(default_factory=lambda: types.MappingProxyType({}))
    policy: Mapping[str, PolicyConfig] = field(
        default_factory=lambda: types.MappingProxyType({"default": PolicyConfig()})
    )

    @property
    def socket_mode(self) -> int:
        return int(self.server.socket_mode, 8)

    def to_dict(self, mask_secrets: bool = True) -> dict:
        """The effective configuration as plain data; passwords in URLs masked."""
        out = _asdict(self)
        if mask_secrets:
            # Every string and key: DQS keys in zone names (tables and policy lists), URL passwords.
            from .masking import mask_secrets as mask

            out = _map_strings(out, mask)
        return out


# Tables whose keys are free names (zones, policies) mapped to a dataclass.
_NAMED_TABLES = {"dnsbl": ZoneConfig, "rhsbl": ZoneConfig, "policy": PolicyConfig}


def mask_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host`` style URLs (also in lists): ``masking.mask_secrets``."""
    from .masking import mask_secrets

    return mask_secrets(url)


def _map_strings(obj: Any, fn: Any) -> Any:
    """``obj`` (plain data) with ``fn`` applied to every string, dict keys included."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {(fn(k) if isinstance(k, str) else k): _map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_strings(v, fn) for v in obj]
    return obj


def _asdict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _asdict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _asdict(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return list(obj)
    return obj


# --- coercion -------------------------------------------------------------


def _coerce(path: str, value: Any, tp: Any, meta: Mapping, from_env: bool) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None:
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if from_env and isinstance(value, str):
            text = value.strip()
            value = tomllib.loads("v = " + text)["v"] if text.startswith("[") else [
                v.strip() for v in text.split(",") if v.strip()
            ]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: expected a list of strings, got {value!r}")
        for item in value:
            if "each" in meta and item not in meta["each"]:
                raise ConfigError(f"{path}: {item!r} is not one of {', '.join(meta['each'])}")
            if meta.get("cidr"):
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ConfigError(f"{path}: {item!r} is not an IP network (e.g. 10.0.0.0/8)") from None
        return tuple(value)
    if tp is bool:
        if from_env and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp in (int, float):
        if from_env and isinstance(value, str):
            try:
                value = tp(value.strip()) if tp is float else int(value.strip(), 10)
            except ValueError:
                raise ConfigError(f"{path}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (tp is int and not isinstance(value, int)):
            raise ConfigError(f"{path}: expected {'an integer' if tp is int else 'a number'}, got {value!r}")
        value = tp(value)
        if "range" in meta:
            lo, hi = meta["range"]
            if not lo <= value <= hi:
                raise ConfigError(f"{path}: {value!r} is out of range ({lo}..{hi})")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(meta['choices'])}")
        if meta.get("octal") and not (value == "" and meta.get("inherit")):
            try:
                mode = int(value, 8)
            except ValueError:
                raise ConfigError(f"{path}: {value!r} is not an octal file mode like \"0660\"") from None
            if not 0 <= mode <= 0o777:
                raise ConfigError(f"{path}: {value!r} is not a file mode (0000..0777)")
        return value
    raise ConfigError(f"{path}: unsupported type {tp}")  # a bug in this module


def _build(cls: type, data: Mapping, path: str, from_env: Mapping[str, bool]) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{path}.{key}: unknown key (known: {', '.join(fields)})".lstrip("."))
    kwargs = {}
    for name, value in data.items():
        key_path = f"{path}.{name}".lstrip(".")
        kwargs[name] = _coerce(key_path, value, hints[name], fields[name].metadata, from_env.get(key_path, False))
    return cls(**kwargs)


def merge_tables(base: Mapping, extra: Mapping) -> dict:
    """``base`` with ``extra`` laid over it, table by table (how file, env and flags combine)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_tables(out[key], value)
        else:
            out[key] = value
    return out


def _env_tree(environ: Mapping[str, str]) -> tuple[dict, dict[str, bool]]:
    tree: dict = {}
    marks: dict[str, bool] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX):].split("__")]
        if len(parts) < 2 or not all(parts):
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        marks[".".join(parts)] = True
    return tree, marks


def load_config(
    path: str | os.PathLike | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load defaults < TOML ``path`` < env (``FASTLOOKUP_*``) < ``overrides``.

    ``overrides`` is a nested mapping like ``{"server": {"socket": "/x"}}``
    (what the CLI flags set). Raises ``ConfigError`` naming the bad key.
    """
    data: dict = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {os.fspath(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {os.fspath(path)!r} is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:  # a binary or non-UTF-8 file: TOML is UTF-8 (a config error, exit 4)
            raise ConfigError(f"config file {os.fspath(path)!r} is not UTF-8 text (byte {exc.start}): TOML files are UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"config file {os.fspath(path)!r} cannot be read: {exc.strerror or exc}") from None
    env_tree, env_marks = _env_tree(os.environ if environ is None else environ)
    data = merge_tables(data, env_tree)
    if overrides:
        data = merge_tables(data, overrides)

    hints = typing.get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _NAMED_TABLES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}: expected a table of named entries")
            cls = _NAMED_TABLES[key]
            entries = {}
            for name, table in value.items():
                label = name.strip().lower().rstrip(".") if key != "policy" else name
                entries[label] = _build(cls, table, f"{key}.{name}", env_marks)
            if key == "policy":
                entries.setdefault("default", PolicyConfig())
            kwargs[key] = types.MappingProxyType(entries)
        elif key in hints:
            kwargs[key] = _build(hints[key], value, key, env_marks)
        else:
            known = ", ".join(f.name for f in dataclasses.fields(Config))
            raise ConfigError(f"{key}: unknown table (known: {known})")
    config = Config(**kwargs)
    _check_references(config)
    return config


def _check_references(config: Config) -> None:
    c = config.cache
    if c.min_ttl_s > c.max_ttl_s:
        raise ConfigError(f"cache.min_ttl_s: {c.min_ttl_s} is above cache.max_ttl_s ({c.max_ttl_s})")
    if c.negative_min_ttl_s > c.negative_max_ttl_s:
        raise ConfigError(
            f"cache.negative_min_ttl_s: {c.negative_min_ttl_s} is above cache.negative_max_ttl_s ({c.negative_max_ttl_s})"
        )
    from .names import normalize_domain
    from .errors import InvalidArgument
    from .checks.codes import CodeFilter, split_zone_spec  # stdlib-only parsing, bounded

    for table in ("dnsbl", "rhsbl"):
        for zone, zconf in getattr(config, table).items():
            try:
                normalize_domain(zone)
            except InvalidArgument:
                raise ConfigError(f"{table}.{zone!r}: not a domain name") from None
            # Reply-code filters are parsed (and bounded) at load, not at the first call naming the zone.
            if zconf.codes is not None:
                CodeFilter.parse(zconf.codes, f"{table}.{zone}.codes")
            if zconf.errors is not None:
                CodeFilter.parse(zconf.errors, f"{table}.{zone}.errors")
            mirror = zconf.mirror
            if mirror is not None:
                from .mirror.spec import parse_spec

                try:
                    parse_spec(mirror, f"{table}.{zone!r}.mirror")
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
    for pname, policy in config.policy.items():
        for table in ("dnsbl", "rhsbl", "allow_zones"):
            for i, zone in enumerate(getattr(policy, table)):
                where = f"policy.{pname}.{table}[{i}]"
                # Postfix/postscreen "zone=127.0.0.[2..11]*2" or Exim "zone&0.0.0.8": the name comes first.
                name = split_zone_spec(zone)[0]
                try:
                    normalize_domain(name)
                except InvalidArgument:
                    raise ConfigError(f"{where}: {zone!r} is not a domain name") from None
                # The filter and weight are parsed (bounded) when the policy engine builds its zones.
