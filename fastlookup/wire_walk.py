"""A msgpack walker: where does a value end, without keeping its bytes?

The decoder hands a frame here when it must not be built or buffered: an
array or map over the entry limit, or a frame over ``max_frame`` bytes. The
walker reads headers only and skips payloads by count, so a frame of any
size costs a few integers of state, and the stream stays in sync for the
next frame. Only the standard library and msgpack (the sync client imports
``wire``). Where a read holds many whole entries of one level, msgpack's C
``skip`` passes them; Python reads only the headers around them.
"""

from __future__ import annotations

import re

import msgpack

__all__ = ["Walker", "MAX_DEPTH"]

#: Nesting deeper than this is refused (msgpack's own unpacker stops at 1024 too).
MAX_DEPTH = 1024

_SCALAR, _STR, _EXT, _ARRAY, _MAP, _BAD = range(6)


def _table() -> list[tuple[int, int, int]]:
    """For each first byte: (kind, length-field bytes, fixed size or count)."""
    t: list[tuple[int, int, int]] = [(_BAD, 0, 0)] * 256
    for b in range(0x00, 0x80):
        t[b] = (_SCALAR, 0, 0)
    for b in range(0xE0, 0x100):
        t[b] = (_SCALAR, 0, 0)
    for b in range(0x80, 0x90):
        t[b] = (_MAP, 0, b & 0x0F)
    for b in range(0x90, 0xA0):
        t[b] = (_ARRAY, 0, b & 0x0F)
    for b in range(0xA0, 0xC0):
        t[b] = (_SCALAR, 0, b & 0x1F)  # fixstr: its bytes are skipped as a fixed payload
    t[0xC0] = t[0xC2] = t[0xC3] = (_SCALAR, 0, 0)
    t[0xC4], t[0xC5], t[0xC6] = (_STR, 1, 0), (_STR, 2, 0), (_STR, 4, 0)  # bin
    t[0xC7], t[0xC8], t[0xC9] = (_EXT, 1, 0), (_EXT, 2, 0), (_EXT, 4, 0)
    t[0xCA], t[0xCB] = (_SCALAR, 0, 4), (_SCALAR, 0, 8)
    for b, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8), (0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        t[b] = (_SCALAR, 0, size)
    for b, size in ((0xD4, 2), (0xD5, 3), (0xD6, 5), (0xD7, 9), (0xD8, 17)):
        t[b] = (_SCALAR, 0, size)  # fixext: type byte + data
    t[0xD9], t[0xDA], t[0xDB] = (_STR, 1, 0), (_STR, 2, 0), (_STR, 4, 0)
    t[0xDC], t[0xDD] = (_ARRAY, 2, 0), (_ARRAY, 4, 0)
    t[0xDE], t[0xDF] = (_MAP, 2, 0), (_MAP, 4, 0)
    return t


_HEAD = _table()
#: One-byte values: positive and negative fixints, nil, false, true.
_ONE_BYTE_RUN = re.compile(rb"[\x00-\x7f\xc0\xc2\xc3\xe0-\xff]+")


def _skip_entries(data: bytes, i: int, end: int, most: int) -> tuple[int, int]:
    """(entries skipped, new index): up to ``most`` whole msgpack values from ``data[i:end]``, in C."""
    unpacker = msgpack.Unpacker(max_buffer_size=max(end - i, 1))
    unpacker.feed(data[i:end])
    done = pos = 0
    try:
        while done < most:
            unpacker.skip()
            done += 1
            pos = unpacker.tell()
    except msgpack.OutOfData:
        pass
    except Exception as exc:  # not msgpack, or nested too deep
        raise ValueError(str(exc)) from None
    return done, i + pos


class Walker:
    """Feed bytes of one msgpack value; ``feed`` returns the index just past its end, or None for more."""

    __slots__ = ("_stack", "_skip", "_need", "_len", "_kind")

    def __init__(self) -> None:
        self._stack = [1]  # entries left at each open level; the bottom is the one top-level value
        self._skip = 0  # payload bytes to pass over
        self._need = 0  # length-field bytes still to read
        self._len = b""  # the length field read so far
        self._kind = _SCALAR

    def _done(self) -> bool:
        """One entry finished: close every level it completes; True when the top-level value ended."""
        stack = self._stack
        stack[-1] -= 1
        while stack[-1] == 0:
            stack.pop()
            if not stack:
                return True
            stack[-1] -= 1
        return False

    def _value(self, kind: int, n: int) -> bool:
        """Account for a value whose header is read (``n``: payload bytes or entries); True at the end."""
        if kind == _ARRAY or kind == _MAP:
            count = n if kind == _ARRAY else 2 * n
            if count == 0:
                return self._done()
            if len(self._stack) >= MAX_DEPTH:
                raise ValueError(f"nesting deeper than {MAX_DEPTH}")
            self._stack.append(count)
            return False
        if kind == _EXT:
            n += 1  # the type byte
        if n == 0:
            return self._done()
        self._skip = n
        return False

    def feed(self, data: bytes) -> int | None:
        """Walk ``data``; the index past the value's last byte, or None if it continues. ValueError: not msgpack."""
        i, end = 0, len(data)
        stack = self._stack
        head = _HEAD
        run = _ONE_BYTE_RUN.match
        while True:
            if self._skip:
                take = min(self._skip, end - i)
                self._skip -= take
                i += take
                if self._skip:
                    return None
                if self._done():
                    return i
                continue
            if self._need:
                take = min(self._need, end - i)
                self._len += data[i : i + take]
                self._need -= take
                i += take
                if self._need:
                    return None
                n = int.from_bytes(self._len, "big")
                self._len = b""
                if self._value(self._kind, n):
                    return i
                continue
            if i >= end:
                return None
            top = stack[-1]
            if top > 1:
                # A run of one-byte values (fixints, nil, booleans) is passed in C, not byte by byte:
                # all but the level's last entry, which the general path below closes.
                m = run(data, i, min(end, i + top - 1))
                if m is not None:
                    taken = m.end() - i
                    stack[-1] = top - taken
                    i += taken
                    continue
                if top > 8:
                    # Many entries left at this level: let msgpack's C skip pass the whole ones in this
                    # read; Python walks only the entry cut by the read's end (and the level's last).
                    done, i = _skip_entries(data, i, end, top - 1)
                    if done:
                        stack[-1] = top - done
                        continue
            kind, field, n = head[data[i]]
            i += 1
            if kind == _BAD:
                raise ValueError(f"byte 0x{data[i - 1]:02x} is not a msgpack header")
            if field:
                self._kind, self._need = kind, field
                continue
            if self._value(kind, n):
                return i
