"""The method table of the wire contract: validation, then a pure evaluator.

``prepare(method, args)`` validates a call's arguments (raising
``BadRequest`` for wrong types, ``InvalidArgument`` for bad values,
``UnknownMethod``) and returns either a ready result (``ping``, ``stats``)
or an ``evaluate(get)`` function for ``fastlookup.lookup`` whose result is
the contract's map. ``batch`` is an evaluator over its calls' evaluators,
so every lookup of a batch is resolved together. The table is explicit
(house rule 8): adding a method means adding a row.

Everything a call's passes share (query names, zone lists) is built here,
once per call, not in the evaluator: a call runs at least one pass, and
a memory hit is answered inside the socket's read callback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import __version__
from .checks.fcrdns import fcrdns_wire
from .checks.listing import dnsbl_queries, listing_wire, rhsbl_queries
from .checks.zones import ZoneRegistry
from .errors import BadRequest, InvalidArgument, RpcError, TooLarge, UnknownMethod
from .lookup import Get
from .model import RDTYPES
from .names import client_ip, normalize_domain, parse_ip, reverse_name
from .stats import Stats

__all__ = ["Context", "Ready", "prepare", "METHODS", "LOOKUP_METHODS"]

#: An evaluator may carry ``deadline_s`` (seconds from the call's start; the
#: server's ``deadline_s`` otherwise): a ``check`` answers by its policy's.
Evaluate = Callable[[Get], Any]


class Ready:
    """A result known without any DNS question (ping, stats)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass
class Context:
    """What methods need from the running service."""

    zones: ZoneRegistry
    stats: Stats
    default_dnsbl: tuple[str, ...] = ()
    default_rhsbl: tuple[str, ...] = ()
    max_batch: int = 1000
    started: float = field(default_factory=time.monotonic)
    check: Callable[[dict], Evaluate] | None = None  # set by the policy engine
    extra_stats: Callable[[], dict] | None = None


def _str(args: dict, key: str, required: bool = True) -> str | None:
    value = args.get(key)
    if value is None:
        if required:
            raise BadRequest(f"missing argument {key!r}")
        return None
    if type(value) is not str:
        raise BadRequest(f"argument {key!r} must be a string, got {type(value).__name__}")
    return value


def _zones(args: dict) -> list | None:
    zones = args.get("zones")
    if zones is None:
        return None
    if type(zones) is not list:
        raise BadRequest(f"argument 'zones' must be a list of strings, got {type(zones).__name__}")
    if not zones:
        raise InvalidArgument("zones: empty list")
    if len(zones) > 64:
        raise InvalidArgument(f"zones: {len(zones)} zones, the limit is 64")
    for z in zones:
        if type(z) is not str:
            raise BadRequest("argument 'zones' must be a list of strings")
    return zones


def _answer(name: str, rdtype: str) -> Evaluate:
    def evaluate(get: Get) -> Any:
        answer = get(name, rdtype)
        return None if answer is None else answer.to_wire()

    return evaluate


def m_ping(ctx: Context, args: dict):
    return Ready({"ok": True, "version": __version__, "uptime_s": round(time.monotonic() - ctx.started, 3)})


def m_stats(ctx: Context, args: dict):
    out = ctx.stats.snapshot()
    if ctx.extra_stats is not None:
        out.update(ctx.extra_stats())
    return Ready(out)


def m_query(ctx: Context, args: dict):
    name = normalize_domain(_str(args, "name"), "name")
    rdtype = _str(args, "type")
    rdtype = rdtype.upper()
    if rdtype not in RDTYPES:
        raise InvalidArgument(f"type: {rdtype[:16]!r} is not one of {', '.join(RDTYPES)}")
    if rdtype == "PTR" and not name.endswith(".arpa"):
        # A PTR query for an IP given as a name: build the reverse name.
        try:
            name = reverse_name(parse_ip(name))
        except InvalidArgument:
            pass
    return _answer(name, rdtype)


def m_ptr(ctx: Context, args: dict):
    return _answer(client_ip(_str(args, "ip")).ptr, "PTR")


def m_a(ctx: Context, args: dict):
    return _answer(normalize_domain(_str(args, "name"), "name"), "A")


def m_aaaa(ctx: Context, args: dict):
    return _answer(normalize_domain(_str(args, "name"), "name"), "AAAA")


def m_fcrdns(ctx: Context, args: dict):
    ip = client_ip(_str(args, "ip"))
    return lambda get: fcrdns_wire(get, ip)


# Without zones nothing is asked; "not listed" would read as a clean bill (docs/access.md, doctor).
_NO_ZONES = "zones: none given and no {kind} zones configured ([policy.default] {kind} = [...]); nothing would be checked"


def m_dnsbl(ctx: Context, args: dict):
    labels = client_ip(_str(args, "ip")).labels
    specs = _zones(args)
    if specs is None and not ctx.default_dnsbl:
        raise InvalidArgument(_NO_ZONES.format(kind="dnsbl"))
    queries = dnsbl_queries(labels, ctx.zones.many(specs if specs is not None else ctx.default_dnsbl, "dnsbl"))
    disabled = ctx.zones.disabled
    return lambda get: listing_wire(get, queries, disabled)


def m_rhsbl(ctx: Context, args: dict):
    domain = normalize_domain(_str(args, "domain"), "domain")
    specs = _zones(args)
    if specs is None and not ctx.default_rhsbl:
        raise InvalidArgument(_NO_ZONES.format(kind="rhsbl"))
    queries = rhsbl_queries(domain, ctx.zones.many(specs if specs is not None else ctx.default_rhsbl, "rhsbl"))
    disabled = ctx.zones.disabled
    return lambda get: listing_wire(get, queries, disabled)


def m_check(ctx: Context, args: dict):
    if ctx.check is None:
        raise RpcError("no policy engine configured")
    return ctx.check(args)


def m_batch(ctx: Context, args: dict):
    calls = args.get("calls")
    if type(calls) is not list:
        raise BadRequest("argument 'calls' must be a list of [method, args]")
    if len(calls) > ctx.max_batch:
        raise TooLarge(f"batch of {len(calls)} calls is over the limit of {ctx.max_batch}")
    parts: list[tuple[Any, Any]] = []  # (error map, evaluator or Ready)
    for i, call in enumerate(calls):
        try:
            if type(call) is not list or len(call) not in (1, 2) or type(call[0]) is not str:
                raise BadRequest(f"calls[{i}] must be [method, args]")
            method = call[0]
            sub_args = call[1] if len(call) == 2 and call[1] is not None else {}
            if type(sub_args) is not dict:
                raise BadRequest(f"calls[{i}]: args must be a map")
            if method == "batch":
                raise BadRequest(f"calls[{i}]: batch cannot be nested")
            parts.append((None, prepare(ctx, method, sub_args)))
        except RpcError as exc:
            parts.append((exc.to_wire(), None))

    def evaluate(get: Get) -> Any:
        results: list = []
        for error, sub in parts:
            if error is not None:
                results.append([error, None])
            elif type(sub) is Ready:
                results.append([None, sub.value])
            else:
                results.append([None, sub(get)])
        return {"results": results}

    # A batch holding checks waits as long as its slowest policy allows.
    deadlines = [getattr(sub, "deadline_s", None) for _, sub in parts]
    deadlines = [d for d in deadlines if d is not None]
    if deadlines:
        evaluate.deadline_s = max(deadlines)  # type: ignore[attr-defined]
    return evaluate


METHODS: dict[str, Callable[[Context, dict], Any]] = {
    "ping": m_ping,
    "stats": m_stats,
    "query": m_query,
    "ptr": m_ptr,
    "a": m_a,
    "aaaa": m_aaaa,
    "fcrdns": m_fcrdns,
    "dnsbl": m_dnsbl,
    "rhsbl": m_rhsbl,
    "check": m_check,
    "batch": m_batch,
}
LOOKUP_METHODS = frozenset(METHODS) - {"ping", "stats"}


def prepare(ctx: Context, method: str, args: dict) -> Ready | Evaluate:
    """Validate one call; a Ready result or an evaluator. Raises RpcError subclasses."""
    handler = METHODS.get(method)
    if handler is None:
        raise UnknownMethod(f"no method {method[:64]!r} (known: {', '.join(METHODS)})")
    return handler(ctx, args)
