"""The msgpack the qmail front sends and reads, in plain Python (stdlib only, no ``msgpack``).

``fastlookup-rblsmtpd`` starts once per SMTP connection; importing the
``msgpack`` package and the client costs more CPU than the front's whole job.
A request holds only maps, arrays, strings, small ints, booleans and nil; a
response (a Listing or a Verdict) adds floats, so this is all it needs.
``unpack`` raises IndexError when the data ends early (read more) and
ValueError on a type a response never holds; sizes are checked against the
data before anything is allocated. Property-tested against ``msgpack``.
"""


__all__ = ["pack", "unpack"]

MAX_DEPTH = 32


def pack(obj: object) -> bytes:
    """msgpack of None, bool, int (-2**31..2**32-1), str, list/tuple and dict: what a request holds."""
    if obj is None:
        return b"\xc0"
    if obj is True:
        return b"\xc3"
    if obj is False:
        return b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj < 0x80:
            return bytes((obj,))
        if 0 <= obj < 1 << 32:
            return b"\xce" + obj.to_bytes(4, "big")
        if -32 <= obj < 0:
            return bytes((obj & 0xFF,))
        return b"\xd2" + obj.to_bytes(4, "big", signed=True)
    if isinstance(obj, str):
        raw = obj.encode("utf-8", "surrogateescape")
        n = len(raw)
        head = bytes((0xA0 | n,)) if n < 32 else b"\xd9" + bytes((n,)) if n < 256 else b"\xdb" + n.to_bytes(4, "big")
        return head + raw
    if isinstance(obj, (list, tuple)):
        n = len(obj)
        head = bytes((0x90 | n,)) if n < 16 else b"\xdd" + n.to_bytes(4, "big")
        return head + b"".join(pack(o) for o in obj)
    if isinstance(obj, dict):
        n = len(obj)
        head = bytes((0x80 | n,)) if n < 16 else b"\xdf" + n.to_bytes(4, "big")
        return head + b"".join(pack(k) + pack(v) for k, v in obj.items())
    raise TypeError(f"cannot pack {type(obj).__name__}")


_FIXED = {0xC0: None, 0xC2: False, 0xC3: True}
_SIZES = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_LENGTHS = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4, 0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}


def unpack(data: bytes, pos: int, depth: int = 0) -> tuple[object, int]:
    """One msgpack object at ``pos``: ``(object, next pos)``; IndexError when ``data`` ends early."""
    if depth > MAX_DEPTH:
        raise ValueError("msgpack nested too deep")
    if pos >= len(data):
        raise IndexError("truncated")
    b = data[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if b in _FIXED:
        return _FIXED[b], pos
    if b in _SIZES:
        n = _SIZES[b]
        if pos + n > len(data):
            raise IndexError("truncated")
        return int.from_bytes(data[pos:pos + n], "big", signed=b >= 0xD0), pos + n
    if b in (0xCA, 0xCB):
        import _struct

        n = 4 if b == 0xCA else 8
        if pos + n > len(data):
            raise IndexError("truncated")
        return _struct.unpack(">f" if n == 4 else ">d", data[pos:pos + n])[0], pos + n
    if 0xA0 <= b <= 0xBF:
        kind, n = "str", b & 0x1F
    elif 0x90 <= b <= 0x9F:
        kind, n = "array", b & 0x0F
    elif 0x80 <= b <= 0x8F:
        kind, n = "map", b & 0x0F
    elif b in _LENGTHS:
        size = _LENGTHS[b]
        if pos + size > len(data):
            raise IndexError("truncated")
        n = int.from_bytes(data[pos:pos + size], "big")
        pos += size
        kind = "str" if b >= 0xD9 and b <= 0xDB else "bin" if b <= 0xC6 else "array" if b <= 0xDD else "map"
    else:
        raise ValueError(f"msgpack type 0x{b:02x} not expected in a response")
    if kind in ("str", "bin"):
        if pos + n > len(data):
            raise IndexError("truncated")
        raw = data[pos:pos + n]
        return (raw.decode("utf-8", "replace") if kind == "str" else raw), pos + n
    if n > len(data):  # every element takes a byte at least: a bogus count is no reason to allocate
        raise IndexError("truncated")
    if kind == "array":
        items = []
        for _ in range(n):
            item, pos = unpack(data, pos, depth + 1)
            items.append(item)
        return items, pos
    out = {}
    for _ in range(n):
        key, pos = unpack(data, pos, depth + 1)
        value, pos = unpack(data, pos, depth + 1)
        if isinstance(key, (str, int)):
            out[key] = value
    return out, pos
