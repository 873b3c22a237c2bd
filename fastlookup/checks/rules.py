"""A ``[policy.NAME]`` table compiled for checking: networks parsed, zones built.

Built once per config load (and on reload), so a check only compares an IP
with parsed networks and walks prebuilt ``Zone`` objects. A zone spec that is
not a zone fails here, at start, with the policy key in the message.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..config import PolicyConfig
from ..errors import ConfigError, InvalidArgument
from ..names import IPAddress
from .zones import Zone, ZoneRegistry

__all__ = ["CompiledPolicy", "Network", "network_of", "weight_of"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A ``[policy.NAME]`` table with its networks parsed and zones built."""

    name: str
    conf: PolicyConfig
    allow: tuple[Network, ...]
    block: tuple[Network, ...]
    dnsbl: tuple[Zone, ...]
    allow_zones: tuple[Zone, ...]
    rhsbl: tuple[Zone, ...]
    want_fcrdns: bool  # FCrDNS is needed: require_fcrdns, a "client" RHSBL target or $name
    client_rhsbl: bool

    @staticmethod
    def build(name: str, conf: PolicyConfig, zones: ZoneRegistry) -> "CompiledPolicy":
        def nets(key: str) -> tuple[Network, ...]:
            return tuple(ipaddress.ip_network(c, strict=False) for c in getattr(conf, key))

        def build_zones(key: str, kind: str) -> tuple[Zone, ...]:
            out = []
            for i, spec in enumerate(getattr(conf, key)):
                try:
                    out.append(zones.get(spec, kind))
                except InvalidArgument as exc:
                    raise ConfigError(f"policy.{name}.{key}[{i}]: {exc}") from None
            return tuple(out)

        dnsbl = build_zones("dnsbl", "dnsbl")
        allow_zones = build_zones("allow_zones", "dnsbl")
        rhsbl = build_zones("rhsbl", "rhsbl")
        texts = [conf.reject_text, conf.ptr_text, conf.fcrdns_text, conf.sender_text]
        texts += [z.message or "" for z in dnsbl + rhsbl]
        mentions_name = any("$name" in t or "${name}" in t for t in texts)
        client_rhsbl = any("client" in z.targets for z in rhsbl)
        return CompiledPolicy(
            name=name,
            conf=conf,
            allow=nets("allow"),
            block=nets("block"),
            dnsbl=dnsbl,
            allow_zones=allow_zones,
            rhsbl=rhsbl,
            want_fcrdns=conf.require_fcrdns != "off" or client_rhsbl or mentions_name,
            client_rhsbl=client_rhsbl,
        )


def network_of(ip: IPAddress, networks: tuple[Network, ...]) -> Network | None:
    """The first of ``networks`` holding ``ip``, or None."""
    for net in networks:
        if ip.version == net.version and ip in net:
            return net
    return None


def weight_of(zone: Zone, allowlist: bool) -> float:
    """A zone's weight in the sum; allowlist zones (dnswl-style) always count negative."""
    return -abs(zone.weight) if (allowlist or zone.allow) else zone.weight
