"""Sans-IO MessagePack-RPC framing: bytes in, messages out, and back.

The stream is a sequence of msgpack arrays with no length prefix
(``../shared/protocol.md``). Nothing here does I/O, so the server, the sync
client and the tests share one implementation of the framing rules:

* request      ``[0, msgid, method, params]``
* response     ``[1, msgid, error, result]``
* notification ``[2, method, params]``

``params`` is an empty array or an array holding exactly one map. Standard
library and msgpack only: the sync client imports this module.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import msgpack

from .errors import BadRequest, TooLarge
from .wire_walk import Walker

__all__ = [
    "REQUEST",
    "RESPONSE",
    "NOTIFICATION",
    "MAX_MSGID",
    "Request",
    "Decoder",
    "FramingError",
    "Oversized",
    "parse_request",
    "parse_request_tuple",
    "encode_request",
    "encode_response",
    "encode_error",
]

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
MAX_MSGID = 2**32 - 1
DEFAULT_MAX_FRAME = 1 << 20


class FramingError(Exception):
    """The byte stream is not msgpack (or a frame cannot fit): close the connection."""


class Oversized:
    """A whole frame that was walked over, not built: over the entry limit or over ``max_frame`` bytes.

    The walker (``wire_walk``) keeps no bytes, so the stream stays in sync:
    the server answers ``too_large`` by ``msgid`` (when the frame's head
    showed one) and keeps the connection.
    """

    __slots__ = ("msgid", "why")

    def __init__(self, msgid: int | None, why: str) -> None:
        self.msgid = msgid
        self.why = why


def _head_msgid(data: bytes) -> int | None:
    """The msgid of a request frame starting ``data``, read from its first bytes only; None if none shows."""
    head = msgpack.Unpacker(raw=False, max_array_len=16, max_map_len=16, max_str_len=64, max_bin_len=64, max_buffer_size=64)
    head.feed(data[:64])
    try:
        if head.read_array_header() != 4 or head.unpack() != REQUEST:
            return None
        msgid = head.unpack()
    except Exception:  # anything odd in the head: no msgid to answer by
        return None
    return msgid if type(msgid) is int and 0 <= msgid <= MAX_MSGID else None


class Request(NamedTuple):
    """A parsed request or notification (``msgid`` is None for a notification)."""

    msgid: int | None
    method: str
    args: dict


#: A read's worth of bytes beyond ``max_frame`` that the unpacker may hold (the frame in progress
#: is at most ``max_frame``; the rest of the buffer is the read that completed it).
READ_SLACK = 1 << 18


class Decoder:
    """A streaming decoder: ``feed(data)`` then iterate ``(obj, size)`` pairs.

    ``size`` is the frame's byte length. Bounds (issue 12): the frame in
    progress is buffered up to ``max_frame`` bytes only; past that, and for a
    frame holding an array or map over ``max_array_len`` entries, the rest of
    the frame is walked over without being kept or built (``wire_walk``) and
    yielded as ``Oversized``, answered ``too_large`` by msgid with the
    connection kept. A frame longer than ``max_walk`` bytes, bytes that are
    not msgpack, or an array announcing more entries than a frame could hold
    raise ``FramingError`` (the connection closes).
    """

    __slots__ = (
        "_unpacker", "_offset", "_fed", "max_frame", "max_walk", "largest", "_limit", "_chunks", "_chunks_at",
        "_tell0", "_walker", "_walked", "_walk_head", "_walk_why", "_pending",
    )

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, max_array_len: int | None = None) -> None:
        self.max_frame = max_frame
        # A frame may be walked (not buffered) up to this length and still be
        # answered by msgid; longer, the connection closes.
        self.max_walk = 2 * max_frame + READ_SLACK
        # ``max_array_len`` bounds array and map headers: msgpack preallocates
        # a list of the announced length, so a few bytes of nested headers
        # could otherwise claim a lot of memory.
        self._limit = max_frame if max_array_len is None else max_array_len
        self._unpacker: Any = self._new_unpacker()
        self._offset = 0  # stream offset of the end of the last complete frame
        self._fed = 0  # stream offset of the end of the bytes fed
        self.largest = 0  # the largest frame seen: a pool can drop decoders whose buffer grew
        # The bytes fed since the frame in progress began (from stream offset
        # ``_chunks_at``): what the walker starts from.
        self._chunks: list[bytes] = []
        self._chunks_at = 0
        self._tell0 = 0  # stream offset where the current unpacker started (its tell() counts from there)
        self._walker: Walker | None = None  # walking over a frame, or None
        self._walked = 0
        self._walk_head = b""
        self._walk_why = ""
        self._pending = b""  # bytes fed while walking, not yet walked

    def _new_unpacker(self) -> Any:
        size = self.max_frame + READ_SLACK
        return msgpack.Unpacker(
            raw=False,
            max_buffer_size=size,
            read_size=min(1 << 16, size),
            max_array_len=self._limit,
            max_map_len=self._limit,
            strict_map_key=False,
            use_list=True,
        )

    @property
    def idle(self) -> bool:
        """True when every byte fed belongs to a complete frame (no partial frame is held).

        An idle decoder may serve another connection: a msgpack Unpacker holds
        ~44 KiB (its embedded parse stack), so the server keeps decoders only
        for connections in the middle of a frame and pools the rest.
        """
        return self._fed == self._offset

    @property
    def completed(self) -> int:
        """Stream offset of the end of the last complete frame (a frame in progress begins there)."""
        return self._offset

    @property
    def buffered(self) -> int:
        """Bytes of the frame in progress held in memory (0 while walking: nothing is kept)."""
        return 0 if self._walker is not None else self._fed - self._offset

    def feed(self, data: bytes) -> None:
        if self._walker is not None:
            self._pending += data
            self._fed += len(data)
            return
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise FramingError(f"a read of {len(data)} bytes on top of a frame in progress is over the buffer") from None
        chunks = self._chunks
        if self._fed == self._offset:  # no partial frame before this read: start afresh
            chunks.clear()
            self._chunks_at = self._fed
        elif len(chunks) > 16:  # drop reads wholly before the frame in progress
            at = self._chunks_at
            while chunks and at + len(chunks[0]) <= self._offset:
                at += len(chunks.pop(0))
            self._chunks_at = at
        chunks.append(data)
        self._fed += len(data)

    def _start_walk(self, why: str) -> None:
        """Walk the frame in progress from its first byte; drop the unpacker and its buffer."""
        data = b"".join(self._chunks)[self._offset - self._chunks_at :]
        self._walker = Walker()
        self._walked = 0
        self._walk_head = data[:64]
        self._walk_why = why
        self._pending = data
        self._unpacker = None
        self._chunks = []
        self._chunks_at = self._fed

    def _walk(self) -> tuple[Oversized, int] | None:
        """Walk the pending bytes: (Oversized, size) when the frame ended, else None."""
        data, self._pending = self._pending, b""
        end = None
        if self._walked == 0:
            # First try msgpack's own skip (C, no limits, builds nothing) on what has arrived:
            # usually the whole frame is there. Only a frame still arriving is walked in Python.
            skipper = msgpack.Unpacker(max_buffer_size=max(len(data), 1))
            skipper.feed(data)
            try:
                skipper.skip()
                end = skipper.tell()
            except msgpack.OutOfData:
                pass
            except Exception as exc:  # not msgpack, or nested too deep
                raise FramingError(f"not msgpack: {exc}") from None
        if end is None:
            try:
                end = self._walker.feed(data)  # type: ignore[union-attr]
            except ValueError as exc:
                raise FramingError(f"not msgpack: {exc}") from None
        self._walked += len(data) if end is None else end
        if self._walked > self.max_walk:
            raise FramingError(f"a frame larger than {self.max_walk} bytes")
        if end is None:
            return None
        size = self._walked
        rest = data[end:]
        self._walker = None
        self._unpacker = self._new_unpacker()
        self._offset += size
        self._tell0 = self._offset
        self._chunks = [rest] if rest else []
        self._chunks_at = self._offset
        if rest:
            self._unpacker.feed(rest)
        return Oversized(_head_msgid(self._walk_head), self._walk_why), size

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        while True:
            if self._walker is not None:
                walked = self._walk()
                if walked is None:
                    return
                yield walked
                continue
            unpacker = self._unpacker
            # The Unpacker's own iteration ends a read without raising OutOfData
            # (~0.6 µs less per read than ``unpack()`` in a try). Only what
            # ``next(unpacker)`` raises is caught: the consumer's exceptions do not
            # pass through the suspended ``yield``.
            try:
                for obj in unpacker:
                    end = self._tell0 + unpacker.tell()
                    size, self._offset = end - self._offset, end
                    if size > self.largest:
                        self.largest = size
                    yield obj, size
            except ValueError as exc:
                text = str(exc)
                if "exceeds max_" not in text:
                    raise FramingError(f"not msgpack: {text}") from None
                announced = text.split(" ", 1)[0]
                if not announced.isdigit() or int(announced) >= self.max_frame:
                    # N entries take at least N bytes: such a frame is over max_frame before it is sent whole.
                    raise FramingError(f"an array or map announcing {announced[:12]} entries cannot fit in a frame") from None
                self._start_walk("an array or map in the frame is over the limit of entries")
                continue
            except (TypeError, OverflowError, msgpack.UnpackException, msgpack.StackError) as exc:
                # TypeError: a map key that is itself a map or array (unhashable).
                raise FramingError(f"not msgpack: {exc}") from None
            if self._fed - self._offset > self.max_frame:
                # The frame in progress is already over the limit: stop buffering it, walk the rest.
                self._start_walk(f"frame over the limit of {self.max_frame} bytes")
                continue
            return


def parse_request(obj: Any, size: int = 0, max_frame: int = DEFAULT_MAX_FRAME) -> Request:
    """Validate a decoded object as a request or notification.

    Raises ``BadRequest`` (with ``msgid`` attribute when one was readable) or
    ``TooLarge``.
    """
    return Request._make(parse_request_tuple(obj, size, max_frame))


def parse_request_tuple(obj: Any, size: int = 0, max_frame: int = DEFAULT_MAX_FRAME) -> tuple[int | None, str, dict]:
    """``parse_request`` as a plain ``(msgid, method, args)`` tuple, for the server's
    hot path, which unpacks it at once (a NamedTuple costs ~0.3 µs more to build)."""
    msgid = None
    if type(obj) is list and len(obj) == 4 and obj[0] == REQUEST:
        _, msgid, method, params = obj
        if type(msgid) is not int or not 0 <= msgid <= MAX_MSGID:
            raise _bad("msgid must be an unsigned 32-bit integer", None)
    elif type(obj) is list and len(obj) == 3 and obj[0] == NOTIFICATION:
        _, method, params = obj
    elif type(obj) is Oversized:
        exc = TooLarge(f"{obj.why} ({size} bytes skipped)")
        exc.msgid = obj.msgid  # type: ignore[attr-defined]
        raise exc
    else:
        raise _bad("not a msgpack-rpc request: expected [0, msgid, method, params]", None)
    if size > max_frame:
        exc = TooLarge(f"frame of {size} bytes is over the limit of {max_frame}")
        exc.msgid = msgid  # type: ignore[attr-defined]
        raise exc
    if type(method) is not str:
        raise _bad("method must be a string", msgid)
    if type(params) is not list or len(params) > 1:
        raise _bad("params must be an array that is empty or holds one map", msgid)
    if params:
        args = params[0]
        if type(args) is not dict:
            raise _bad("params[0] must be a map of named arguments", msgid)
    else:
        args = {}
    return msgid, method, args


def _bad(message: str, msgid: int | None) -> BadRequest:
    exc = BadRequest(message)
    exc.msgid = msgid  # type: ignore[attr-defined]
    return exc


_packer = msgpack.Packer(autoreset=True, use_bin_type=True)


def encode_request(msgid: int, method: str, args: dict | None = None) -> bytes:
    return _packer.pack([REQUEST, msgid, method, [args] if args else []])


def encode_response(msgid: int | None, result: Any) -> bytes:
    return _packer.pack([RESPONSE, msgid, None, result])


def encode_error(msgid: int | None, code: str, message: str) -> bytes:
    return _packer.pack([RESPONSE, msgid, {"code": code, "message": message}, None])
