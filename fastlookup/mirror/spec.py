"""The ``mirror`` key of a zone: ``TYPE:PATH[,PATH...]`` or ``axfr:HOST[:PORT]``.

Standard library only: ``config`` checks the key with it at load time, so a
bad value fails at start with a message naming the key and the fix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["MirrorSpec", "parse_spec", "FILE_TYPES", "MAX_FILES"]

#: rbldnsd dataset types a file mirror reads.
FILE_TYPES = ("ip4set", "ip4trie", "ip6trie", "ip6tset", "dnset", "combined")
MAX_FILES = 64


@dataclass(frozen=True, slots=True)
class MirrorSpec:
    """A parsed ``mirror`` value: files of one dataset type, or a zone transfer source."""

    kind: str  # a FILE_TYPES name, or "axfr"
    paths: tuple[str, ...] = ()
    host: str = ""
    port: int = 53

    def __str__(self) -> str:
        if self.kind == "axfr":
            return f"axfr:{self.host}:{self.port}"
        return f"{self.kind}:{','.join(self.paths)}"


def parse_spec(text: str, where: str = "mirror") -> MirrorSpec:
    """Parse a ``mirror`` value; ValueError with a message naming ``where`` and the fix."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"{where}: {str(text)[:80]!r} is not TYPE:PATH[,PATH...] or axfr:HOST[:PORT]")
    kind, rest = text.split(":", 1)
    kind = kind.strip().lower()
    if kind == "axfr":
        host, port = rest.strip(), 53
        if host.startswith("["):  # [::1]:5353
            end = host.find("]")
            if end < 0:
                raise ValueError(f"{where}: {text[:80]!r}: unclosed '[' in the address")
            host, tail = host[1:end], host[end + 1 :]
            if tail:
                if not tail.startswith(":"):
                    raise ValueError(f"{where}: {text[:80]!r}: expected :PORT after ]")
                port = _port(tail[1:], where, text)
        elif host.count(":") == 1:
            host, p = host.split(":")
            port = _port(p, where, text)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{where}: {host[:80]!r} is not an IP address (axfr:HOST[:PORT] takes the primary's address)") from None
        return MirrorSpec("axfr", host=host, port=port)
    if kind not in FILE_TYPES:
        raise ValueError(f"{where}: {kind[:20]!r} is not a dataset type (one of {', '.join(FILE_TYPES)}, or axfr)")
    paths = tuple(p.strip() for p in rest.split(","))
    if not paths or any(not p for p in paths):
        raise ValueError(f"{where}: {text[:80]!r}: an empty file name; write {kind}:/path/one[,/path/two]")
    if len(paths) > MAX_FILES:
        raise ValueError(f"{where}: {len(paths)} files, the limit is {MAX_FILES}")
    return MirrorSpec(kind, paths=paths)


def _port(text: str, where: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{where}: {whole[:80]!r}: {text[:10]!r} is not a port (1..65535)")
    return int(text)
