"""rbldnsd's data-file syntax, ported rule for rule from its C source.

The parsers here follow ``ip4parse.c`` (``ip4prefix``/``ip4range``/
``ip4cidr``/``ip4addr``), ``ip6addr.c`` (``ip6prefix``/``ip6cidr``/
``ip6atos``) and ``rbldnsd_util.c`` (``parse_a_txt``, ``txtsubst``) of
rbldnsd 1.0 (snapshot 20210120, the one Debian ships), because a mirror must
answer exactly what rbldnsd answers for the same files: ``10.1`` is
10.1.0.0/16, ``127.0.0.1-2`` is a two-address range, a bare ``10`` is no
address, a CIDR with host bits set is refused, ``:3`` is ``127.0.0.3``.

Text is handled as latin-1 so that one character is one byte, as in C: the
255-byte TXT limits then count the same bytes rbldnsd counts. Returned TXT
strings are turned back into UTF-8 text (errors replaced), which is what the
DNS path (``upstream.fastcodec._txt``) makes of the same bytes.

Every function returns values; a bad line is ``None`` plus a warning text,
the caller decides (rbldnsd warns and skips the line).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_RR",
    "Rr",
    "ip4mask",
    "ip4prefix",
    "ip4range",
    "ip4cidr",
    "ip4addr",
    "ip4atos",
    "ip6prefix",
    "ip6cidr",
    "ip6atos",
    "parse_a_txt",
    "txtsubst",
    "to_text",
    "SPACE",
]

#: rbldnsd's ISSPACE: only blank and tab (a CR is data).
SPACE = " \t"
_COMMENT = "#;"
_DIGITS = "0123456789"

Rr = tuple[int, str]
"""One value: (A record as an int, TXT template as latin-1 text)."""

#: rbldnsd's ``def_rr``: A 127.0.0.2, empty TXT (so no TXT record).
DEFAULT_RR: Rr = (0x7F000002, "")
_LOOPBACK = 0x7F000000
_M32 = 0xFFFFFFFF


def ip4mask(bits: int) -> int:
    return (_M32 << (32 - bits)) & _M32 if bits else 0


def _octets(s: str, i: int, n: int) -> tuple[int, int, int]:
    """``ip4prefix``: (bits 8/16/24/32 or -1, address, end index)."""
    a = 0
    bits = 0
    for shift in (24, 16, 8, 0):
        if i >= n or s[i] not in _DIGITS:
            return -1, 0, i
        o = ord(s[i]) - 48
        i += 1
        while i < n and s[i] in _DIGITS:
            o = o * 10 + ord(s[i]) - 48
            i += 1
            if o > 255:
                return -1, 0, i - 1
        a |= o << shift
        bits += 8
        if bits == 32 or i >= n or s[i] != ".":
            return bits, a, i
        i += 1
    return bits, a, i  # pragma: no cover - the loop always returns


def ip4prefix(s: str, i: int = 0) -> tuple[int, int, int]:
    """(bits, address, end) of a dotted prefix: ``10.1`` is (16, 10.1.0.0)."""
    return _octets(s, i, len(s))


def _mbits(s: str, i: int, n: int) -> tuple[int, int]:
    if i >= n or s[i] not in _DIGITS:
        return -1, i
    bits = ord(s[i]) - 48
    i += 1
    while i < n and s[i] in _DIGITS:
        bits = bits * 10 + ord(s[i]) - 48
        i += 1
        if bits > 32:
            return -1, i - 1
    return bits, i


def ip4range(s: str, i: int = 0) -> tuple[int, int, int, int]:
    """``ip4range``: (bits or -1, first, last, end); a plain ``a-b`` range gives bits 32."""
    n = len(s)
    bits, a, i = _octets(s, i, n)
    if bits < 0:
        return -1, 0, 0, i
    if i < n and s[i] == "-":
        bbits, b, i = _octets(s, i + 1, n)
        if bbits < 0:
            return -1, 0, 0, i
        if bbits == 8:  # 127.0.0.1-2 is 127.0.0.1-127.0.0.2
            b = (b >> (bits - 8)) | (a & ip4mask(bits - 8))
            bbits = bits
        elif bbits != bits:  # 1.2-1.2.3.4 is refused
            return -1, 0, 0, i
        if bbits != 32:
            b |= ~ip4mask(bbits) & _M32
        if a > b:
            return -1, 0, 0, i
        return 32, a, b, i
    if i < n and s[i] == "/":
        bits, i = _mbits(s, i + 1, n)
        if bits < 0:
            return -1, 0, 0, i
    elif bits == 8:  # a bare number is no address: write 10/8
        return -1, 0, 0, i
    return bits, a, a | (~ip4mask(bits) & _M32), i


def ip4cidr(s: str, i: int = 0) -> tuple[int, int, int]:
    """``ip4cidr``: (bits or -1, address, end); ranges are not allowed."""
    n = len(s)
    bits, a, i = _octets(s, i, n)
    if bits < 0:
        return -1, 0, i
    if i < n and s[i] == "/":
        bits, i = _mbits(s, i + 1, n)
        return bits, a, i
    if bits == 8:
        return -1, 0, i
    return bits, a, i


def ip4addr(s: str, i: int = 0) -> tuple[int, int, int]:
    """``ip4addr`` (inet_aton's short forms): ``127.2`` is 127.0.0.2, ``2`` is 0.0.0.2."""
    bits, a, i = _octets(s, i, len(s))
    if bits == 8:
        a >>= 24
    elif bits == 16:
        a = (a & 0xFF000000) | ((a >> 16) & 255)
    elif bits == 24:
        a = (a & 0xFFFF0000) | ((a >> 8) & 255)
    return bits, a, i


def ip4atos(a: int) -> str:
    return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"


_HEX = {c: int(c, 16) for c in "0123456789abcdefABCDEF"}


def ip6prefix(s: str, i: int = 0) -> tuple[int, bytes, int]:
    """``ip6prefix``: (bits 16..128 or -1, 16 address bytes, end); ``::`` expands."""
    n = len(s)
    out = bytearray(16)
    nbytes = 0
    zstart = -1
    ret = -1
    if s.startswith("::", i):
        zstart = 0
        i += 2
    while True:
        v = 0
        start = i
        while i < n:
            nib = _HEX.get(s[i])
            if nib is None:
                break
            v = (v << 4) + nib
            if v > 0xFFFF:
                break
            i += 1
        if start == i or v > 0xFFFF:
            break
        out[nbytes] = v >> 8
        out[nbytes + 1] = v & 255
        nbytes += 2
        if i >= n or s[i] != ":" or nbytes + 2 > 16:
            ret = nbytes * 8
            break
        i += 1
        if zstart < 0 and i < n and s[i] == ":":
            zstart = nbytes
            i += 1
    if zstart >= 0:
        nzeros = 16 - nbytes
        if nzeros == 0:
            ret = -1
        else:
            out[zstart + nzeros : nbytes + nzeros] = out[zstart:nbytes]
            out[zstart : zstart + nzeros] = bytes(nzeros)
            ret = 128
    return ret, bytes(out), i


def ip6cidr(s: str, i: int = 0) -> tuple[int, bytes, int]:
    """``ip6cidr``: (bits or -1, address, end); a bare 16-bit number is refused."""
    n = len(s)
    bits, addr, i = ip6prefix(s, i)
    if bits >= 0 and i < n and s[i] == "/":
        i += 1
        if i >= n or s[i] not in _DIGITS:
            return -1, addr, i
        bits = ord(s[i]) - 48
        i += 1
        while i < n and s[i] in _DIGITS:
            bits = bits * 10 + ord(s[i]) - 48
            i += 1
            if bits > 128:
                return -1, addr, i
    elif bits == 16:
        bits = -1
    return bits, addr, i


def ip6atos(addr: bytes) -> str:
    """``ip6atos`` of a full address: rbldnsd's own compressed form (RFC 5952-like)."""
    words = [(addr[2 * k] << 8) | addr[2 * k + 1] for k in range(8)]
    nzeros = zstart = 0
    i = 0
    while i + nzeros < 8:
        nz = 0
        while i + nz < 8 and words[i + nz] == 0:
            nz += 1
        if nz > 1 and nz > nzeros:
            nzeros, zstart = nz, i
        i += 1
    out = "".join(f":{w:x}" for w in words[:zstart]) if nzeros else ""
    if nzeros:
        out += ":"
        if zstart == 0:
            out += ":"
        if zstart + nzeros == 8:
            out += ":"
        out += "".join(f":{w:x}" for w in words[zstart + nzeros :])
    else:
        out = "".join(f":{w:x}" for w in words)
    return out[1:]


def parse_a_txt(s: str, def_rr: Rr) -> tuple[Rr | None, str]:
    """``parse_a_txt``: the value of ``:A:TXT``, ``:A`` (TXT of ``def_rr``) or bare ``TXT``."""
    if s[:1] == ":":
        bits, a, i = ip4addr(s, 1)
        if bits <= 0 or not a:
            return None, "invalid A RR"
        if bits == 8:
            a |= _LOOPBACK  # only the last digit: 127.0.0.x
        n = len(s)
        while i < n and s[i] in SPACE:
            i += 1
        if i < n and s[i] == ":":
            i += 1
            while i < n and s[i] in SPACE:
                i += 1
            txt = s[i:]
        elif i < n:
            return None, "unrecognized value for an entry"
        else:
            return (a, def_rr[1]), ""
    else:
        a, txt = def_rr[0], s
    return (a, txt[:255]), ""


def txtsubst(txt: str, s0: str | None, subst: tuple[str | None, ...]) -> str:
    """``txtsubst``: ``$`` is ``s0``, ``$$`` a dollar, ``$0``..``$9`` and ``$=`` the data file's variables.

    ``subst`` holds ``$0``..``$9`` and, at index 10, the ``$=`` base template.
    The result is cut at 254 bytes, as rbldnsd cuts it.
    """
    srec = s0 or ""
    base = subst[10]
    if txt[:1] == "=":
        txt = txt[1:]
        sx = txt
    elif base:
        if txt:
            s0 = txt
        sx = s0 or ""
        txt = base
    else:
        sx = txt
    if "$" not in txt:
        return txt[:254]
    out: list[str] = []
    size = 0
    i = 0
    n = len(txt)
    while size < 254:
        j = txt.find("$", i)
        if j < 0:
            j = n
        out.append(txt[i:j])
        size += j - i
        if j >= n:
            break
        k = j + 1
        c = txt[k] if k < n else ""
        if c == "$":
            piece = "$"
            k += 1
        elif c and c in _DIGITS:
            var = subst[ord(c) - 48]
            piece = var if var is not None else "$" + c
            k += 1
        elif c == "=":
            piece = sx
            k += 1
        else:
            piece = srec
        out.append(piece)
        size += len(piece)
        i = k
    return "".join(out)[:254]


def to_text(latin: str) -> str:
    """A TXT string as the DNS path shows it: the bytes read as UTF-8."""
    if latin.isascii():
        return latin
    return latin.encode("latin-1").decode("utf-8", errors="replace")
