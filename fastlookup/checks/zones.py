"""Blocklist zones: built-in profiles, config merging, access-key masking.

A bare zone name does the right thing: the common lists ship with their
listing codes and error codes (Spamhaus, Barracuda, SpamCop, s5h, dnswl,
URIBL, SURBL, ...), matched by suffix so a Spamhaus DQS zone carrying an
access key (``KEY.zen.dq.spamhaus.net``) gets the zen profile too. A key
label is never shown: ``Zone.display`` masks it (``***.zen.dq.spamhaus.net``)
and only ``display`` goes into results, replies and logs.

Zones may also be written in Postfix/postscreen form:
``zone=127.0.0.[2..11]*2`` (reply filter, then weight), or with Exim's
filters ``zone&0.0.0.8``, ``zone!=127.0.0.2``, ``zone!&0.0.0.8``.

Client-named specs are bounded (``MAX_CLIENT_SPEC_CHARS`` characters each)
and their built zones kept in bounded, evicting caches (``MAX_BUILT``
zones, ``MAX_LISTS`` zone lists holding at most ``MAX_LIST_ZONES`` zones in
all; the oldest goes first): a client naming ever new specs costs CPU, never
memory beyond those caps. A built zone is under a kilobyte (octet sets are
integers, and equal reply-code filters are one object, see ``codes``), so
the caches hold some 20 MB at the very worst (measured: 4,096 + 8,192 zones
of 220-character specs).

A zone configured with ``mirror`` gets its ``mirror.MirrorSource`` in
``Zone.mirror`` (from ``ZoneRegistry.mirrors``): the listing checks answer it
from the local copy instead of DNS (docs/mirrors.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..config import ZoneConfig
from ..errors import ConfigError, InvalidArgument
from ..masking import mask_secrets
from ..names import normalize_domain
from .codes import CodeFilter, parse_weight, split_zone_spec

__all__ = ["Zone", "Profile", "PROFILES", "ZoneRegistry", "DEFAULT_ERRORS"]

#: Bounds on what a client's ``zones`` can make this registry hold (see the module docstring).
MAX_CLIENT_SPEC_CHARS = 300
MAX_BUILT = 4096
MAX_LISTS = 1024
MAX_LIST_ZONES = 8192

SPAMHAUS_ERRORS = ("127.255.255.252-127.255.255.255",)
#: Error codes assumed for a list without a profile: 127.0.0.1 is the RFC 5782
#: "must not be listed" point, used by several lists for "refused"; the
#: 127.255.255.0/24 block is the common "query refused / over quota" range.
DEFAULT_ERRORS = ("127.0.0.1", "127.255.255.0/24")
ANY_LOOPBACK = ("127.0.0.0/8",)


@dataclass(frozen=True, slots=True)
class Profile:
    codes: tuple[str, ...]
    errors: tuple[str, ...] = DEFAULT_ERRORS
    weight: float = 1.0
    allow: bool = False
    keyed: bool = False  # the label before the suffix is an access key
    targets: tuple[str, ...] = ("client", "helo", "sender")
    public: str | None = None  # the public zone replies name (DQS: the key must not show)


PROFILES: dict[str, Profile] = {
    "zen.spamhaus.org": Profile(("127.0.0.2-127.0.0.11",), SPAMHAUS_ERRORS),
    "sbl.spamhaus.org": Profile(("127.0.0.2-127.0.0.3",), SPAMHAUS_ERRORS),
    "xbl.spamhaus.org": Profile(("127.0.0.4-127.0.0.7",), SPAMHAUS_ERRORS),
    "sbl-xbl.spamhaus.org": Profile(("127.0.0.2-127.0.0.7",), SPAMHAUS_ERRORS),
    "pbl.spamhaus.org": Profile(("127.0.0.10-127.0.0.11",), SPAMHAUS_ERRORS),
    "dbl.spamhaus.org": Profile(("127.0.1.2-127.0.1.99", "127.0.1.102-127.0.1.199"), ("127.0.1.255",) + SPAMHAUS_ERRORS),
    "zrd.spamhaus.org": Profile(("127.0.2.2-127.0.2.24",), ("127.0.1.255",) + SPAMHAUS_ERRORS),
    "zen.dq.spamhaus.net": Profile(("127.0.0.2-127.0.0.11",), SPAMHAUS_ERRORS, keyed=True, public="zen.spamhaus.org"),
    "sbl.dq.spamhaus.net": Profile(("127.0.0.2-127.0.0.3",), SPAMHAUS_ERRORS, keyed=True, public="sbl.spamhaus.org"),
    "xbl.dq.spamhaus.net": Profile(("127.0.0.4-127.0.0.7",), SPAMHAUS_ERRORS, keyed=True, public="xbl.spamhaus.org"),
    "pbl.dq.spamhaus.net": Profile(("127.0.0.10-127.0.0.11",), SPAMHAUS_ERRORS, keyed=True, public="pbl.spamhaus.org"),
    "dbl.dq.spamhaus.net": Profile(
        ("127.0.1.2-127.0.1.99", "127.0.1.102-127.0.1.199"), ("127.0.1.255",) + SPAMHAUS_ERRORS, keyed=True,
        public="dbl.spamhaus.org",
    ),
    "b.barracudacentral.org": Profile(("127.0.0.2",)),
    "bl.spamcop.net": Profile(("127.0.0.2",)),
    "all.s5h.net": Profile(("127.0.0.2",)),
    "psbl.surriel.com": Profile(("127.0.0.2",)),
    "ix.dnsbl.manitu.net": Profile(("127.0.0.2",)),
    "bl.mailspike.net": Profile(("127.0.0.2", "127.0.0.10-127.0.0.14")),
    "dnsbl.dronebl.org": Profile(("127.0.0.2-127.0.0.255",), ("127.0.0.1",)),
    # dnswl.org: 127.0.<category>.<trust 0..3>; 127.0.0.255 = query limit exceeded.
    "list.dnswl.org": Profile(("127.0.[0..20].[0..3]",), ("127.0.0.255",), weight=-2.0, allow=True),
    "swl.spamhaus.org": Profile(("127.0.2.0-127.0.2.255",), SPAMHAUS_ERRORS, weight=-2.0, allow=True),
    # URIBL/SURBL are bitmask lists; 127.0.0.1 means "query refused".
    "multi.uribl.com": Profile(("127.0.0.2-127.0.0.14",), ("127.0.0.1", "127.0.0.255"), targets=("helo", "sender")),
    "black.uribl.com": Profile(("127.0.0.2",), ("127.0.0.1",), targets=("helo", "sender")),
    "multi.surbl.org": Profile(("127.0.0.2-127.0.0.254",), ("127.0.0.1",), targets=("helo", "sender")),
}

GENERIC = Profile(ANY_LOOPBACK)


@dataclass(frozen=True, slots=True)
class Zone:
    """One blocklist as the checks use it."""

    name: str  # the query suffix, key included
    display: str  # what results, replies and logs show
    codes: CodeFilter
    errors: CodeFilter
    weight: float = 1.0
    message: str | None = None
    targets: tuple[str, ...] = ("client", "helo", "sender")
    allow: bool = False
    mirror: Any = None  # a mirror.MirrorSource answering this zone from a local copy, or None (DNS)
    reply_name: str = ""  # the name reply texts show (reply_name, a DQS profile's public zone, else display)
    ignore: bool = False  # action = "ignore": hits are logged and counted, never decide

    def classify(self, codes: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
        """(listing codes, list_error) of an A answer; RFC 5782 §2.3 codes are 127/8."""
        candidates = []
        error = False
        for code in codes:
            if self.errors.match(code) or not code.startswith("127."):
                error = True
            else:
                candidates.append(code)
        # ``select``: a negated (Exim ``!=``) filter lists when no candidate matches.
        listed = self.codes.select(candidates) if candidates else ()
        return listed, error and not listed


def _profile_for(name: str) -> tuple[Profile, str]:
    """The profile of ``name`` (exact or by suffix) and its display name."""
    profile = PROFILES.get(name)
    if profile is not None:
        return profile, name
    for suffix, profile in PROFILES.items():
        if name.endswith("." + suffix):
            display = mask_secrets(name) if profile.keyed else name  # the one masking function
            return profile, display
    return GENERIC, name


def _reply_name(configured: str | None, profile: Profile, display: str, where: str) -> str:
    """The zone's name in reply texts: ``reply_name``, else a DQS profile's public zone, else ``display``."""
    if configured is None:
        return profile.public or display
    text = "".join(ch if " " <= ch < "\x7f" else "?" for ch in configured.strip())
    if not text or len(text) > 253:
        raise InvalidArgument(f"{where}.reply_name: {configured[:80]!r} must be 1..253 printable characters")
    return text


def _split_spec(spec: str) -> tuple[str, str | None, float | None]:
    """``zone[=pattern|&mask|!=…|!&…][*weight]`` -> (zone, filter with its operator, weight).

    InvalidArgument for a spec over ``MAX_CLIENT_SPEC_CHARS`` or a weight that is not a finite number.
    """
    if len(spec) > MAX_CLIENT_SPEC_CHARS:
        raise InvalidArgument(f"zones: a zone spec of {len(spec)} characters, the limit is {MAX_CLIENT_SPEC_CHARS}")
    name, pattern, weight_text = split_zone_spec(spec)
    weight = None
    if weight_text is not None:
        try:
            weight = parse_weight(weight_text, spec)
        except ValueError:
            raise InvalidArgument(
                f"zones: {spec[:80]!r}: the weight after '*' must be a number from -1000 to 1000 (zone*2)"
            ) from None
    return name, pattern, weight


@dataclass
class ZoneRegistry:
    """The configured zones by name, built zones cached, and zones taken out of use.

    ``disabled`` is set by list-health monitoring: a zone in it is answered as
    ``unknown`` with status ``disabled`` (fail open) without a query.
    """

    dnsbl_config: Mapping[str, ZoneConfig] = field(default_factory=dict)
    rhsbl_config: Mapping[str, ZoneConfig] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    #: (kind, zone name) -> mirror.MirrorSource for mirrored zones (``MirrorSet.table``).
    mirrors: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    _built: dict[tuple[str, str], Zone] = field(default_factory=dict)
    _many: dict[tuple[str, tuple[str, ...]], tuple[Zone, ...]] = field(default_factory=dict)
    _many_zones: int = 0  # zones held by ``_many``'s lists, bounded by MAX_LIST_ZONES

    def get(self, spec: str, kind: str = "dnsbl") -> Zone:
        """The Zone for a name or ``zone=pattern*weight`` spec; InvalidArgument if not a name."""
        cached = self._built.get((kind, spec))
        if cached is not None:
            return cached
        name, pattern, weight = _split_spec(spec)
        try:
            name = normalize_domain(name, "zone")
        except InvalidArgument as exc:
            raise InvalidArgument(f"zones: {spec[:80]!r} is not a zone name") from exc
        table = self.dnsbl_config if kind == "dnsbl" else self.rhsbl_config
        conf = table.get(name) or ZoneConfig()
        profile, display = _profile_for(name)
        where = f"{kind}.{display}"
        try:
            codes = CodeFilter.parse((pattern,) if pattern else conf.codes or profile.codes, where + ".codes")
            errors = CodeFilter.parse(conf.errors if conf.errors is not None else profile.errors, where + ".errors")
        except ConfigError as exc:
            raise InvalidArgument(str(exc)) from None
        zone = Zone(
            name=name,
            display=display,
            codes=codes,
            errors=errors,
            weight=weight if weight is not None else (conf.weight if conf.weight is not None else profile.weight),
            message=conf.message,
            targets=conf.targets if conf.targets is not None else profile.targets,
            allow=conf.allow if conf.allow is not None else profile.allow,
            mirror=self.mirrors.get((kind, name)) if self.mirrors else None,
            reply_name=_reply_name(conf.reply_name, profile, display, where),
            ignore=conf.action == "ignore",
        )
        built = self._built
        if len(built) >= MAX_BUILT:  # client-named zones must not grow this without bound: drop the oldest
            del built[next(iter(built))]
        built[(kind, spec)] = zone
        return zone

    def many(self, specs, kind: str = "dnsbl") -> tuple[Zone, ...]:
        """The Zones of a list of specs; the same list is built once (every call names it)."""
        kind_specs = type(specs)
        if kind_specs is tuple or kind_specs is list:
            # The hot path: a list seen before (the defaults, or a client's usual
            # zones) is answered by one look-up; only lists that passed the checks
            # below are ever stored. A list holding an unhashable value is no key.
            try:
                zones = self._many.get((kind, specs if kind_specs is tuple else tuple(specs)))
            except TypeError:
                zones = None
            if zones is not None:
                return zones
        if isinstance(specs, str) or not isinstance(specs, (list, tuple)):
            raise InvalidArgument("zones: expected a list of zone names")
        for s in specs:
            if not isinstance(s, str):
                raise InvalidArgument(f"zones: expected zone names (strings), got {type(s).__name__}")
        key = (kind, tuple(specs))
        zones = self._many.get(key)
        if zones is None:
            zones = tuple(self.get(s, kind) for s in specs)
            many = self._many
            # Evict the oldest lists: a client may name ever new ones.
            while many and (len(many) >= MAX_LISTS or self._many_zones + len(zones) > MAX_LIST_ZONES):
                self._many_zones -= len(many.pop(next(iter(many))))
            many[key] = zones
            self._many_zones += len(zones)
        return zones
