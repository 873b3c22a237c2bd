"""The error tree of fastlookup, one class per wire error code.

Outcomes of lookups are values (``Answer.status``, ``Listing.unknown``,
``Verdict.fail_open``); exceptions are for misuse and bugs only::

    FastlookupError
    ├── RpcError                      carries a wire ``code``
    │   ├── BadRequest                "bad_request"
    │   ├── InvalidArgument           "invalid_argument"
    │   ├── UnknownMethod             "unknown_method"
    │   ├── TooLarge                  "too_large"
    │   ├── Overloaded                "overloaded"
    │   └── InternalError             "internal"
    ├── ConfigError                   a config key has a bad value (message names it)
    └── ServiceUnavailable            the client could not reach the service in time

This module imports only the standard library: the sync client uses it.
"""

from __future__ import annotations

__all__ = [
    "FastlookupError",
    "RpcError",
    "BadRequest",
    "InvalidArgument",
    "UnknownMethod",
    "TooLarge",
    "Overloaded",
    "InternalError",
    "ConfigError",
    "ServiceUnavailable",
    "error_for_code",
]


class FastlookupError(Exception):
    """Base of every error fastlookup raises on purpose."""


class RpcError(FastlookupError):
    """An error with a wire code of ``../shared/protocol.md``."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class BadRequest(RpcError):
    """Not a msgpack-rpc request, or a field is missing or of the wrong type."""

    code = "bad_request"


class InvalidArgument(RpcError):
    """A field has the right type but a bad value (not an IP, not a DNS name...)."""

    code = "invalid_argument"


class UnknownMethod(RpcError):
    """No such method in the contract."""

    code = "unknown_method"


class TooLarge(RpcError):
    """A frame over the size limit or a batch over the call limit."""

    code = "too_large"


class Overloaded(RpcError):
    """The service sheds load: its in-flight limit is reached."""

    code = "overloaded"


class InternalError(RpcError):
    """A bug inside the service; the service keeps running."""

    code = "internal"


class ConfigError(FastlookupError):
    """A configuration key is unknown or has a bad value; the message names it."""


class ServiceUnavailable(FastlookupError):
    """The client could not reach the service, or it did not answer in time."""


_BY_CODE: dict[str, type[RpcError]] = {
    cls.code: cls
    for cls in (BadRequest, InvalidArgument, UnknownMethod, TooLarge, Overloaded, InternalError)
}


def error_for_code(code: str, message: str) -> RpcError:
    """Turn a wire error map back into the matching exception (used by clients)."""
    return _BY_CODE.get(code, InternalError)(message)
