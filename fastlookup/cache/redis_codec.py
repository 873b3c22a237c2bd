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
"""

from __future__ import annotations

import re

import msgpack

from ..model import FAILURES, STATUSES
from .entry import Entry

__all__ = [
    "SCHEMA",
    "KEY_VERSION",
    "MAX_KEY_CHARS",
    "KeySchema",
    "encode",
    "decode",
    "Decoded",
]

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


def decode(raw: bytes | None, now_mono: float, now_wall: float) -> Entry | str | None:
    """The Entry in ``raw`` on the monotonic clock with its remaining TTL;
    ``None`` for no value, ``Decoded.EXPIRED`` for an expired one and
    ``Decoded.CORRUPT`` for anything that is not a value of this schema."""
    if raw is None:
        return None
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
        or not stored_at <= expires_at <= stale_until
    ):
        return Decoded.CORRUPT
    for record in records:
        if type(record) is not str:
            return Decoded.CORRUPT
    left = expires_at - now_wall
    if left <= 0:
        return Decoded.EXPIRED
    return Entry(status, tuple(records), ttl, now_mono + left, now_mono + (stale_until - now_wall))
