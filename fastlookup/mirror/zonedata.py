"""One loaded copy of a mirrored zone, and loading it from rbldnsd data files.

``load_files(kind, paths)`` reads the files of one dataset in order, the way
rbldnsd's ``loaddataset`` does (special ``$`` lines, comments, the per-file
``:A:TXT`` default, bad lines skipped and counted), and returns an immutable
``ZoneData`` whose ``answer(sub)`` gives what rbldnsd would put in the
answer section for the query name ``sub.<zone>``: the A records and TXT
strings, each list without repeats (rbldnsd's ``checkrr_present``).

What is stricter than rbldnsd (documented in docs/mirrors.md): a file that
cannot be read, does not end in a newline (a copy cut short), changes while
it is read, or holds more than ``max_entries`` entries is refused as a whole
with ``MirrorLoadError``; the caller keeps the data it has. rbldnsd would
serve what it could parse. Data lines rbldnsd ignores with a warning are
ignored here too, and counted.
"""

from __future__ import annotations

import gzip
import os
import re
import socket
import sys
import time
from array import array
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Sequence

from .combined import CombinedBuilder, Refused
from .datasets import BUILDERS, COMBINED, DN, IP4, IP6, Builder, TooMany
from .syntax import SPACE, ip4atos, ip6atos, to_text, txtsubst

__all__ = ["ZoneData", "MirrorLoadError", "load_files", "parse_text", "EMPTY", "MAX_FILE_BYTES", "DATASET_TYPES"]

#: Every dataset type a file mirror reads, by name.
TYPES: dict[str, type[Builder]] = {**BUILDERS, "combined": CombinedBuilder}
DATASET_TYPES = tuple(TYPES)
#: A data file larger than this (after decompression) is refused.
MAX_FILE_BYTES = 4 << 30
#: Warnings kept (with line numbers) for the log; the rest are only counted.
_KEEP_WARNINGS = 5
_DIGITS = "0123456789"
_inet_aton = socket.inet_aton
_ntoa = socket.inet_ntoa
_from_bytes = int.from_bytes
_HEXNIB = frozenset("0123456789abcdef")

EMPTY: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


class MirrorLoadError(Exception):
    """A copy that must not replace the data being served (unreadable, truncated, too big)."""


@dataclass(frozen=True)
class ZoneData:
    """An immutable loaded copy: the datasets by the query form they answer."""

    datasets: tuple[Any, ...]
    entries: int
    nbytes: int
    loaded_at: float  # wall clock, for stats
    mtime: float = 0.0  # newest file mtime (file mirrors)
    serial: int | None = None  # SOA serial (zone transfers)
    warnings: int = 0
    ip4: tuple[Any, ...] = field(default=(), repr=False)
    ip6: tuple[Any, ...] = field(default=(), repr=False)
    dn: tuple[Any, ...] = field(default=(), repr=False)
    combined: tuple[Any, ...] = field(default=(), repr=False)
    only4: Any = field(default=None, repr=False)  # the dataset, when one IPv4 dataset is all there is

    @classmethod
    def of(cls, datasets: Sequence[Any], **kw: Any) -> "ZoneData":
        return cls(
            tuple(datasets),
            sum(d.entries for d in datasets),
            sum(d.nbytes for d in datasets),
            ip4=tuple(d for d in datasets if d.family == IP4),
            ip6=tuple(d for d in datasets if d.family == IP6),
            dn=tuple(d for d in datasets if d.family == DN),
            combined=tuple(d for d in datasets if d.family == COMBINED),
            only4=datasets[0] if len(datasets) == 1 and datasets[0].family == IP4 else None,
            **kw,
        )

    def answer(self, sub: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(A records, TXT strings) rbldnsd answers for ``sub.<zone>``; ``EMPTY`` when not listed."""
        only = self.only4
        if only is not None:
            # The hot case, one IPv4 dataset and an IPv4 query name without leading zeros:
            # inet_aton reads it exactly as rbldnsd's dntoip4addr does, in C.
            if sub.count(".") == 3 and sub[0] != "0" and ".0" not in sub and sub.isascii() and sub.replace(".", "").isdigit():
                try:
                    q = _from_bytes(_inet_aton(sub), "little")
                except OSError:
                    return EMPTY
                rrs = only.find(q)
                if not rrs:
                    return EMPTY
                codes: list[str] = []
                txts: list[str] = []
                _add(codes, txts, rrs, q, only.subst)
                return tuple(codes), tuple(txts)
        codes = []
        txts = []
        if self.ip4 or self.ip6:
            ip4, ip6 = self._ips(sub)
            if ip4 is not None:
                for ds in self.ip4:
                    rrs = ds.find(ip4)
                    if rrs:
                        _add(codes, txts, rrs, ip4, ds.subst)
            if ip6 is not None:
                for ds in self.ip6:
                    rrs = ds.find(ip6)
                    if rrs:
                        _add(codes, txts, rrs, ip6, ds.subst, True)
        for ds in self.dn:
            found = ds.find(sub)
            if found is not None:
                _add(codes, txts, found[0], found[1], ds.subst)
        for ds in self.combined:
            found = ds.find(sub)
            if found is not None and found[1]:
                sub_codes, sub_txts = found[0].answer(found[1])
                codes.extend(c for c in sub_codes if c not in codes)
                txts.extend(t for t in sub_txts if t not in txts)
        if not codes:
            return EMPTY
        return tuple(codes), tuple(txts)

    def _ips(self, sub: str) -> tuple[int | None, int | None]:
        """rbldnsd's ``dntoip``: 4 decimal labels, or 32 nibbles (6to4 and mapped reach the IPv4 sets)."""
        labels = sub.split(".")
        n = len(labels)
        if n == 4:
            if not sub.isascii() or not sub.replace(".", "").isdigit():
                return None, None
            if sub[0] != "0" and ".0" not in sub:
                # No label with a leading zero: inet_aton reads exactly what rbldnsd reads, in C.
                try:
                    return _from_bytes(_inet_aton(sub), "little"), None
                except OSError:
                    return None, None
            a = 0
            shift = 0
            for label in labels:
                if not 0 < len(label) <= 3:
                    return None, None
                o = int(label)
                if o > 255:
                    return None, None
                a |= o << shift
                shift += 8
            return a, None
        if n == 32 and all(len(x) == 1 and x in _HEXNIB for x in labels):
            q = int("".join(reversed(labels)), 16)
            if self.ip4:
                if q >> 112 == 0x2002:  # 6to4 (RFC 3056): the IPv4 sets answer too
                    return (q >> 80) & 0xFFFFFFFF, q
                if q >> 32 == 0xFFFF:  # ::ffff:a.b.c.d: only the IPv4 sets
                    return q & 0xFFFFFFFF, None
            return None, q
        return None, None


@lru_cache(maxsize=4096)
def _only_dollar(template: str) -> bool:
    """True when every ``$`` of a template is the plain queried-item one (no ``$$``, ``$n``, ``$=``)."""
    at = template.find("$")
    while at >= 0:
        nxt = template[at + 1 : at + 2]
        if nxt == "$" or nxt == "=" or (nxt and nxt in _DIGITS):
            return False
        at = template.find("$", at + 1)
    return True


@lru_cache(maxsize=4096)
def _code(a: int) -> str:
    return ip4atos(a)


def _add(codes: list[str], txts: list[str], rrs: Iterable, s0: str | int, subst: tuple, six: bool = False) -> None:
    """Add the records of ``rrs``; ``s0`` is ``$`` (an IP as an int is printed only when a TXT needs it)."""
    base = subst[10]
    for a, template in rrs:
        code = _code(a)
        if code not in codes:
            codes.append(code)
        if base or "$" in template:
            if type(s0) is int:
                s0 = ip6atos(s0.to_bytes(16, "big")) if six else _ntoa(s0.to_bytes(4, "big"))
            txt = template.replace("$", s0)[:254] if not base and _only_dollar(template) else txtsubst(template, s0, subst)
        else:
            txt = template[:254]
        if txt:
            text = txt if txt.isascii() else to_text(txt)
            if text not in txts:
                txts.append(text)


# --- loading ---------------------------------------------------------------------------


@dataclass
class _Context:
    warnings: int = 0
    first: list[str] = field(default_factory=list)
    fname: str = ""

    def warn(self, lineno: int, message: str) -> None:
        self.warnings += 1
        if len(self.first) < _KEEP_WARNINGS:
            self.first.append(f"{os.path.basename(self.fname)}:{lineno}: {message}")


def _special(builder: Builder, w: str) -> str:
    """rbldnsd's ``ds_special`` for what changes answers; other specials are accepted and unused."""
    target = getattr(builder, "target", builder)  # combined: the dataset being read
    if len(w) >= 2 and (w[0] in _DIGITS or w[0] == "=") and w[1] in SPACE:
        n = 10 if w[0] == "=" else ord(w[0]) - 48
        value = w[2:].lstrip(SPACE)
        if not value:
            return "invalid or unrecognized special entry"
        if target.subst[n] is None:  # a second assignment is ignored
            target.subst[n] = value
        return ""
    word, _, rest = w.partition(" ")
    if "\t" in word:
        word, _, rest2 = word.partition("\t")
        rest = rest2 + " " + rest
    word = word.lower()
    rest = rest.strip(SPACE)
    if word == "maxrange4":
        cidr = rest.startswith("/")
        text = rest[1:] if cidr else rest
        if not text.isdigit() or not text.isascii() or int(text) == 0:
            return "invalid or unrecognized special entry"
        r = int(text)
        if cidr:
            if r > 32:
                return "invalid or unrecognized special entry"
            r = 1 << (32 - r)
        if not builder.maxrange4 or builder.maxrange4 >= r:
            builder.maxrange4 = target.maxrange4 = r
        return ""
    if word == "dataset":
        newset = getattr(builder, "newset", None)
        return newset(rest) if newset is not None else "invalid or unrecognized special entry"
    if word in ("soa", "ns", "nameserver", "ttl", "timestamp") and rest:
        return ""
    return "invalid or unrecognized special entry"


#: A run of bare dotted-quad lines (the bulk of a data feed), at most 20000 lines a match so no
#: single C call (regex, split, inet_aton) holds the GIL for more than a few ms.
_RUN4 = re.compile(r"(?<![^\n])(?:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\n){1,4000}")
#: Bytes of a file decoded and parsed at a time (cut at a newline), for the same reason.
_SEGMENT = 1 << 20
#: An octet with a leading zero: rbldnsd reads "010" as 10, inet_aton as 8 (octal).
_LEADING_ZERO = re.compile(r"(?<![0-9])0[0-9]")
_LITTLE = sys.byteorder == "little"


def _bulk4(builder: Any, run: str) -> bool:
    """A run of plain addresses in C-speed steps; False when the run needs the line parser."""
    if _LEADING_ZERO.search(run):
        return False
    lines = run.split("\n")
    lines.pop()
    try:
        packed = b"".join(map(socket.inet_aton, lines))
    except OSError:  # an octet over 255: the line parser warns about it as rbldnsd does
        return False
    addrs = array("I")
    addrs.frombytes(packed)
    if _LITTLE:
        addrs.byteswap()
    builder.bulk32(addrs)
    return True


def parse_text(builder: Builder, data: bytes, ctx: _Context) -> None:
    """Feed one file's bytes (complete lines) to ``builder``: rbldnsd's ``readdslines``.

    The bytes are read as latin-1 (one character a byte) a segment of about
    1 MB at a time, so no single decode or split holds the GIL for long.
    """
    builder.start()
    lineno = 0
    pos = 0
    n = len(data)
    while pos < n:
        end = data.find(b"\n", pos + _SEGMENT)
        end = n if end < 0 else end + 1
        text = data[pos:end].decode("latin-1")
        lineno = _parse_segment(builder, text, ctx, lineno)
        pos = end


def _parse_segment(builder: Builder, text: str, ctx: _Context, lineno: int) -> int:
    """One segment of whole lines; returns the line number reached."""
    if getattr(builder, "bulk32", None) is None:
        _parse_lines(builder, text, ctx, lineno)
        return lineno + text.count("\n")
    pos = 0
    n = len(text)
    while pos < n:
        m = _RUN4.search(text, pos)
        start = m.start() if m is not None else n
        if start > pos:
            segment = text[pos:start]
            _parse_lines(builder, segment, ctx, lineno)
            lineno += segment.count("\n")
        if m is None:
            break
        run = m.group()
        if not _bulk4(builder, run):
            _parse_lines(builder, run, ctx, lineno)
        lineno += run.count("\n")
        pos = m.end()
    return lineno


def _parse_lines(builder: Builder, text: str, ctx: _Context, lineno: int) -> None:
    line_fn = builder.line
    for line in text.split("\n"):
        lineno += 1
        if not line:
            continue
        c = line[0]
        if c in SPACE or line[-1] in SPACE:
            line = line.strip(SPACE)
            if not line:
                continue
            c = line[0]
        if c == "$" or ((c in "#;:") and line[1:2] == "$"):
            warning = _special(builder, line[1:] if c == "$" else line[2:])
            if warning:
                ctx.warn(lineno, warning)
            continue
        if c == "#" or c == ";":
            continue
        warning = line_fn(line)
        if warning:
            ctx.warn(lineno, warning)


def _read(path: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """A file's whole text (gunzipped if compressed), refusing a copy cut short or changed meanwhile."""
    try:
        with open(path, "rb") as fh:
            st0 = os.fstat(fh.fileno())
            if st0.st_size > max_bytes:
                raise MirrorLoadError(f"{path}: {st0.st_size} bytes, over the limit of {max_bytes}")
            data = fh.read(max_bytes + 1)
            st1 = os.fstat(fh.fileno())
    except OSError as exc:
        raise MirrorLoadError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if (st0.st_mtime_ns, st0.st_size) != (st1.st_mtime_ns, st1.st_size) or len(data) != st0.st_size:
        raise MirrorLoadError(f"{path}: changed while being read (write a temp file and rename it)")
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=_Bytes(data)) as gz:
                data = gz.read(max_bytes + 1)
        except (OSError, EOFError, ValueError) as exc:
            raise MirrorLoadError(f"{path}: broken gzip data: {exc}") from None
        if len(data) > max_bytes:
            raise MirrorLoadError(f"{path}: over {max_bytes} bytes uncompressed")
    if data and not data.endswith(b"\n"):
        raise MirrorLoadError(f"{path}: the last line has no newline (a copy cut short?)")
    return data, st0


def _Bytes(data: bytes):  # noqa: N802 - a tiny factory
    import io

    return io.BytesIO(data)


def load_files(
    kind: str,
    paths: Sequence[str],
    *,
    max_entries: int = 50_000_000,
    max_file_bytes: int = MAX_FILE_BYTES,
    clock=time.time,
) -> tuple[ZoneData, list[str]]:
    """Load one dataset of ``kind`` from ``paths`` in order; (data, first warnings). Raises MirrorLoadError."""
    cls = TYPES.get(kind)
    if cls is None:
        raise MirrorLoadError(f"{kind!r} is not a dataset type ({', '.join(TYPES)})")
    builder = cls(max_entries)
    ctx = _Context()
    mtime = 0.0
    try:
        for path in paths:
            blob, st = _read(path, max_file_bytes)
            mtime = max(mtime, st.st_mtime)
            ctx.fname = path
            parse_text(builder, blob, ctx)
            del blob
        dataset = builder.finish()
    except (TooMany, Refused) as exc:
        raise MirrorLoadError(f"{kind}:{','.join(paths)}: {exc}") from None
    data = ZoneData.of([dataset], loaded_at=clock(), mtime=mtime, warnings=ctx.warnings)
    return data, ctx.first
