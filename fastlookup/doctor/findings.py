"""What doctor reports: a ``Finding`` per check, and where Postfix connects (``Endpoint``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Finding", "Endpoint"]


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "error" | "warning" | "ok"
    what: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A place Postfix connects to: ``kind`` is "policy" or "socketmap"; ``address`` as main.cf writes it."""

    kind: str
    address: str  # "unix:/run/x.sock", "unix:private/x", "inet:127.0.0.1:10040"
    param: str
