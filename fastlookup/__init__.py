"""fastlookup: a caching DNS/DNSBL/RHSBL/FCrDNS lookup service for mail servers.

``from fastlookup import Client`` gives the sync client; importing this
package loads only the standard library and msgpack (no dnspython, redis or
uvloop), because the qmail front starts once per SMTP connection.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Client", "errors"]


def __getattr__(name: str):
    # Lazy, so `import fastlookup` alone stays cheap for every entry point.
    if name == "Client":
        from .client import Client

        return Client
    if name == "errors":
        from . import errors

        return errors
    raise AttributeError(f"module 'fastlookup' has no attribute {name!r}")
