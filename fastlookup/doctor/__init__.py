"""``fastlookup doctor``: find the set-ups that let mail through unchecked.

Every front fails open on purpose (a stopped service must never refuse
mail), so a broken set-up is silent: Postfix logs one ``warning: connect
to ...`` and accepts everybody. This module looks at what the host shows —
the config, Postfix's ``postconf``, master.cf chroot flags, the sockets and
their owners, the upstream resolvers — and names each problem with its fix.

A finding is ``error`` when mail would pass unchecked (doctor exits 1),
``warning`` when something looks wrong but checks still happen, ``ok``
otherwise. Probes are bounded: every connection and DNS query has a
timeout, ``postconf`` output is capped.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterable

from ..config import Config
from .findings import Endpoint, Finding
from .policy import checks_nothing, policy_findings
from .postfix import chrooted_smtpd, postfix_endpoints, postfix_findings
from .resolvers import resolver_findings
from .users import socket_user_findings

__all__ = ["Finding", "Endpoint", "diagnose", "postfix_endpoints", "chrooted_smtpd", "checks_nothing", "render"]


def diagnose(
    config: Config,
    *,
    postfix_config: str | None = None,
    postfix_user: str = "postfix",
    exim_user: str = "Debian-exim",
    rblsmtpd_user: str | None = None,
    check_resolvers: bool = True,
    timeout_s: float = 2.0,
) -> list[Finding]:
    """Every finding about ``config`` and the MTA set-up visible on this host."""
    findings = policy_findings(config)
    postconf = shutil.which("postconf") or (os.path.exists("/usr/sbin/postconf") and "/usr/sbin/postconf") or None
    if postconf and (postfix_config is None or os.path.isdir(postfix_config)):
        findings += postfix_findings(config, postfix_config, postconf, postfix_user, timeout_s)
    elif postfix_config is not None:
        findings.append(Finding("warning", f"--postfix-config {postfix_config}: not a directory or no postconf"))
    findings += socket_user_findings(config, exim_user, rblsmtpd_user, timeout_s)
    if check_resolvers:
        findings += resolver_findings(config, timeout_s)
    return findings


def render(findings: Iterable[Finding]) -> str:
    """Findings as text, worst first, then a one-line summary."""
    order = {"error": 0, "warning": 1, "ok": 2}
    items = sorted(findings, key=lambda f: order.get(f.level, 3))
    label = {"error": "FAIL", "warning": "WARN", "ok": "ok  "}
    lines = []
    for f in items:
        lines.append(f"{label.get(f.level, f.level)}  {f.what}")
        if f.fix and f.level != "ok":
            lines.append(f"      fix: {f.fix}")
    errors = sum(f.level == "error" for f in items)
    warnings = sum(f.level == "warning" for f in items)
    if errors:
        lines.append(f"{errors} problem(s) would let mail through unchecked; {warnings} warning(s)")
    else:
        lines.append(f"no problem found; {warnings} warning(s)")
    return "\n".join(lines)
