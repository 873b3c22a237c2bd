"""From a Verdict map to the parts of an SMTP reply: code, RFC 3463 status, text, header.

The enhanced status code follows the reason that decided (``reasons[0]``):

* DNSBL/RHSBL listings and block networks: ``x.7.1`` (delivery not authorized);
* no PTR: ``x.7.1``, as Postfix's ``reject_unknown_reverse_client_hostname``; FCrDNS failed:
  ``x.7.25`` (RFC 7372 §3, as ``reject_unknown_client_hostname``);
* a sender domain that does not exist: ``x.1.8`` (RFC 3463, bad sender's system
  address); one with a null MX: ``x.7.27`` (RFC 7505 §4.2).

The class digit always matches the reply code, as Postfix and Exim require.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..checks.templates import clean

__all__ = ["smtp_reply", "tag_header", "HEADER", "DEFAULT_TEXT"]

HEADER = "X-Fastlookup"
DEFAULT_TEXT = "Access denied"
HEADER_MAX = 900  # RFC 5322 §2.1.1: a line is at most 998 characters

_DETAIL = {"dnsbl": "7.1", "rhsbl": "7.1", "block": "7.1", "ptr": "7.1", "fcrdns": "7.25", "sender_domain": "1.8"}


def _first_reason(verdict: Mapping[str, Any]) -> Mapping[str, Any]:
    reasons = verdict.get("reasons") or ()
    return reasons[0] if reasons and isinstance(reasons[0], Mapping) else {}


def smtp_reply(verdict: Mapping[str, Any]) -> tuple[int, str, str] | None:
    """``(code, status, text)`` for a reject or defer verdict, None for an accept."""
    action = verdict.get("action")
    if action not in ("reject", "defer"):
        return None
    code = verdict.get("smtp_code")
    low, high, fallback = (500, 599, 554) if action == "reject" else (400, 499, 451)
    if not isinstance(code, int) or not low <= code <= high:
        code = fallback
    reason = _first_reason(verdict)
    check = reason.get("check")
    detail = "7.27" if check == "sender_domain" and reason.get("detail") == "null MX" else _DETAIL.get(check, "7.1")
    text = clean(verdict.get("text")) or DEFAULT_TEXT
    return code, f"{code // 100}.{detail}", text


def tag_header(verdict: Mapping[str, Any]) -> str | None:
    """``X-Fastlookup: score=…; text; reasons`` for a tag verdict, else None."""
    if verdict.get("action") != "accept" or not verdict.get("tag"):
        return None
    parts = [f"score={verdict.get('score', 0)}"]
    text = clean(verdict.get("text"))
    if text:
        parts.append(text)
    for reason in verdict.get("reasons") or ():
        if isinstance(reason, Mapping):
            words = [str(reason.get("check") or ""), str(reason.get("zone") or ""), str(reason.get("detail") or "")]
            parts.append(clean(" ".join(w for w in words if w)))
    return f"{HEADER}: " + clean("; ".join(parts), HEADER_MAX)
