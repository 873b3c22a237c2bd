"""Policies that can never refuse anybody, and a config without any zone."""

from __future__ import annotations

from ..config import Config, PolicyConfig
from .findings import Finding

__all__ = ["checks_nothing", "policy_findings"]


def checks_nothing(policy: PolicyConfig) -> bool:
    """True when the policy can never refuse or tag anybody: no lists, requirements or blocked networks."""
    return not (
        policy.dnsbl
        or policy.rhsbl
        or policy.block
        or policy.require_ptr != "off"
        or policy.require_fcrdns != "off"
        or policy.sender_domain_exists != "off"
    )


def policy_findings(config: Config) -> list[Finding]:
    out = []
    names = dict.fromkeys(["default", config.postfix.policy])
    for name in names:
        policy = config.policy.get(name)
        if policy is None:
            continue
        if checks_nothing(policy):
            out.append(Finding(
                "error",
                f"policy {name!r} checks nothing: no dnsbl/rhsbl lists, no require_ptr/require_fcrdns/"
                "sender_domain_exists, no blocked networks; every client is accepted",
                f'add lists to [policy.{name}], e.g. dnsbl = ["zen.spamhaus.org"] (docs/postfix.md)',
            ))
        else:
            out.append(Finding("ok", f"policy {name!r} has checks"))
    if not (config.dnsbl or config.rhsbl or any(p.dnsbl or p.rhsbl for p in config.policy.values())):
        out.append(Finding(
            "error", "no DNSBL or RHSBL zone is configured: `fastlookup lookup dnsbl` has nothing to ask",
            'configure zones ([dnsbl."zen.spamhaus.org"], [policy.default] dnsbl = [...])',
        ))
    return out
