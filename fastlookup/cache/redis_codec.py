"""The Redis tier's key schema and versioned value codec (no I/O here).

Keys
    ``<key_prefix>v1:<cache key>``, e.g. ``fl:1:v1:A:2.0.0.127.bl.test``;
    the fleet lock of a key is ``<key_prefix>lock:<cache key>``. A cache key
    is ``TYPE:name`` built from a validated name, and is checked once more
    here: only ``[A-Za-z0-9._:-]``, at most ``MAX_KEY_CHARS`` characters. A key
    that fails the check is never read or written (``None``), so nothing a
    client sends can address a Redis key outside the prefix (no spaces,
    braces — cluster hash tags —, glob characters or control bytes).

Values
    A msgpack array ``[SCHEMA, status, records, ttl, stored_at, expires_at,
    stale_until]``; the three times are wall-clock (``time.time()``) seconds,
    because monotonic clocks mean nothing on another host. ``ttl`` is the
    clamped lifetime the answer was stored with (the resolver prefetches in
    its last 10%). A value that is not exactly this shape — another schema,
    another program's data, bytes flipped — decodes to ``None`` and the tier
    counts it as corrupt; the next ``put`` overwrites it.

A value read from Redis is input like any other (another host, another
version, anyone with write access to Redis may have put it there), so
``decode`` also checks what it means before it is served: the raw value is at
most ``MAX_VALUE_BYTES``; times are finite and ``stored_at`` is not in the
future (beyond ``MAX_CLOCK_SKEW_S``); the remaining fresh and stale lifetimes
are clamped by *this* instance's ``TtlPolicy`` (so ``max_ttl_s`` holds
whatever another host stored); at most ``MAX_RECORDS`` records, each a
string of the record type's shape (addresses for A/AAAA, names for
PTR/NS/CNAME, ``pref name`` for MX) and at most ``MAX_RECORD_CHARS``. Any
failure is ``CORRUPT``: counted, and a miss.
"""

from __future__ import annotations

import math
import re
import socket

import msgpack

from ..model import FAILURES, NEGATIVE, STATUSES
from .entry import Entry, TtlPolicy

__all__ = [
    "SCHEMA",
    "KEY_VERSION",
    "MAX_KEY_CHARS",
    "KeySchema",
    "encode",
    "decode",
    "Decoded",
]

#: Bounds on a value read from Redis (see the module docstring).
MAX_VALUE_BYTES = 65536
MAX_RECORDS = 256
MAX_RECORD_CHARS = 65535  # a TXT record's text; names are held to 255
MAX_CLOCK_SKEW_S = 60.0
_DEFAULT_POLICY = TtlPolicy()
_NAME = re.compile(r"[!-~]{1,255}")  # printable ASCII, no space: dnspython's text of a name (escapes included)
_MX = re.compile(r"[0-9]{1,5} [!-~]{1,255}")


def _address_check(family: int):
    def check(text: str) -> bool:
        try:
            socket.inet_pton(family, text)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            return False
        return True

    return check


_RECORD_CHECKS = {
    "A": _address_check(socket.AF_INET),
    "AAAA": _address_check(socket.AF_INET6),
    "PTR": lambda t: _NAME.fullmatch(t) is not None,
    "NS": lambda t: _NAME.fullmatch(t) is not None,
    "CNAME": lambda t: _NAME.fullmatch(t) is not None,
    "MX": lambda t: _MX.fullmatch(t) is not None,
}


def valid_records(records: list, rdtype: str | None) -> bool:
    """Whether ``records`` (from Redis) are at most MAX_RECORDS strings of ``rdtype``'s shape."""
    if len(records) > MAX_RECORDS:
        return False
    check = _RECORD_CHECKS.get(rdtype) if rdtype is not None else None
    for record in records:
        if type(record) is not str or len(record) > MAX_RECORD_CHARS:
            return False
        if check is not None and not check(record):
            return False
    return True

#: Version of the value layout; bump it (and ``KEY_VERSION``) on any change.
SCHEMA = 1
#: Namespace of value keys inside ``key_prefix``; a new layout gets new keys,
#: so a fleet mid-upgrade never reads the other layout's values.
KEY_VERSION = "v1:"
#: ``TYPE:`` (at most 6) + a 253-character name, with room to spare.
MAX_KEY_CHARS = 300

_SAFE_KEY = re.compile(r"[A-Za-z0-9._:-]{1,%d}" % MAX_KEY_CHARS)
_STATUSES = frozenset(STATUSES) - FAILURES  # failures are never shared
_NUMBER = (int, float)
_pack = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb


class KeySchema:
    """Turns cache keys into Redis keys under one prefix, refusing unsafe ones."""

    __slots__ = ("value_prefix", "lock_prefix", "_fullmatch")

    def __init__(self, key_prefix: str) -> None:
        if any(c.isspace() or not c.isprintable() for c in key_prefix):
            raise ValueError(f"redis.key_prefix: {key_prefix!r} holds spaces or control characters")
        self.value_prefix = key_prefix + KEY_VERSION
        self.lock_prefix = key_prefix + "lock:"
        self._fullmatch = _SAFE_KEY.fullmatch

    def value(self, key: str) -> str | None:
        """The Redis key of the value of cache key ``key``, or None when ``key`` is unsafe."""
        if type(key) is not str or self._fullmatch(key) is None:
            return None
        return self.value_prefix + key

    def lock(self, key: str) -> str | None:
        """The Redis key of the fleet lock of ``key``, or None when ``key`` is unsafe."""
        if type(key) is not str or self._fullmatch(key) is None:
            return None
        return self.lock_prefix + key


def encode(entry: Entry, now_mono: float, now_wall: float) -> tuple[bytes, int] | None:
    """``(value, px)`` for ``entry`` (monotonic times) with ``px`` = ms until its
    stale window ends; None when there is nothing left to share."""
    left_ms = int((entry.stale_until - now_mono) * 1000)
    if left_ms <= 0 or entry.stale or entry.status not in _STATUSES:
        return None
    offset = now_wall - now_mono
    value = _pack(
        [SCHEMA, entry.status, list(entry.records), entry.ttl, now_wall, entry.expires + offset, entry.stale_until + offset]
    )
    return value, left_ms


class Decoded:
    """Outcome labels of ``decode`` besides an Entry."""

    CORRUPT = "corrupt"  # not our layout: counted, then overwritten
    EXPIRED = "expired"  # ours, but past its freshness: a plain miss


def decode(
    raw: bytes | None, now_mono: float, now_wall: float, policy: TtlPolicy = _DEFAULT_POLICY, rdtype: str | None = None
) -> Entry | str | None:
    """The Entry in ``raw`` on the monotonic clock with its remaining TTL;
    ``None`` for no value, ``Decoded.EXPIRED`` for an expired one and
    ``Decoded.CORRUPT`` for anything that is not a valid value of this schema
    (``rdtype``: the cache key's record type, for the records' shape)."""
    if raw is None:
        return None
    if len(raw) > MAX_VALUE_BYTES:
        return Decoded.CORRUPT
    try:
        value = _unpackb(raw, raw=False, use_list=True, max_bin_len=0, max_ext_len=0)
    except Exception:  # any malformed msgpack: a foreign or damaged value
        return Decoded.CORRUPT
    if type(value) is not list or len(value) != 7:
        return Decoded.CORRUPT
    schema, status, records, ttl, stored_at, expires_at, stale_until = value
    if (
        type(schema) is not int
        or schema != SCHEMA
        or type(status) is not str
        or status not in _STATUSES
        or type(records) is not list
        or type(ttl) is not int
        or ttl < 0
        or type(stored_at) not in _NUMBER
        or type(expires_at) not in _NUMBER
        or type(stale_until) not in _NUMBER
        or not math.isfinite(stale_until)  # +inf/nan would overflow later arithmetic; -inf is below stored_at
        or not stored_at <= expires_at <= stale_until
        or stored_at > now_wall + MAX_CLOCK_SKEW_S
        or not valid_records(records, rdtype)
    ):
        return Decoded.CORRUPT
    left = expires_at - now_wall
    if left <= 0:
        return Decoded.EXPIRED
    # This instance's TTL policy bounds what it serves, whatever another host stored.
    if status in NEGATIVE:
        max_fresh, max_stale = policy.negative_max_ttl_s, policy.stale_negative_s
    else:
        max_fresh, max_stale = policy.max_ttl_s, policy.stale_s
    if ttl > max_fresh:
        ttl = max_fresh
    if left > max_fresh:
        left = max_fresh
    stale = min(stale_until - expires_at, max_stale)
    return Entry(status, tuple(records), ttl, now_mono + left, now_mono + left + stale)
