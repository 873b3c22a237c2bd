"""Loading rbldnsd data files into a ``ZoneData``, rule for rule as rbldnsd's ``loaddataset``.

``load_files(kind, paths)`` reads the files of one dataset in order (special
``$`` lines, comments, the per-file ``:A:TXT`` default, bad lines skipped
and counted) and returns a frozen ``ZoneData``.

What is stricter than rbldnsd (documented in docs/mirrors.md): a file that
cannot be read, does not end in a newline (a copy cut short), changes while
it is read, or holds more than ``max_entries`` entries is refused as a whole
with ``MirrorLoadError``; the caller keeps the data it has. rbldnsd would
serve what it could parse. Data lines rbldnsd ignores with a warning are
ignored here too, and counted.

Every C-level step (decode, regex, split, ``inet_aton``, sort) works on a
bounded piece, so a load in a worker thread gives the GIL back often.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import socket
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Sequence

from .combined import CombinedBuilder, Refused
from .datasets import BUILDERS, Builder, TooMany
from .syntax import SPACE
from .zonedata import MirrorLoadError, ZoneData

__all__ = ["load_files", "parse_text", "MAX_FILE_BYTES", "DATASET_TYPES", "TYPES"]

#: Every dataset type a file mirror reads, by name.
TYPES: dict[str, type[Builder]] = {**BUILDERS, "combined": CombinedBuilder}
DATASET_TYPES = tuple(TYPES)
#: A data file larger than this (after decompression) is refused.
MAX_FILE_BYTES = 4 << 30
#: rbldnsd's longest line: the rest of a longer one is dropped with a warning. Measured on
#: Debian's rbldnsd 1.0~20210120 (the source's ``ISTREAM_BUFSIZE / 2`` says 32768; the build reads 65536).
MAX_LINE = 65536
#: Warnings kept (with line numbers) for the log; the rest are only counted.
_KEEP_WARNINGS = 5
_DIGITS = "0123456789"


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
        if len(line) > MAX_LINE:
            ctx.warn(lineno, "long line (truncated)")
            line = line[:MAX_LINE]
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
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read(max_bytes + 1)
        except (OSError, EOFError, ValueError) as exc:
            raise MirrorLoadError(f"{path}: broken gzip data: {exc}") from None
        if len(data) > max_bytes:
            raise MirrorLoadError(f"{path}: over {max_bytes} bytes uncompressed")
    if data and not data.endswith(b"\n"):
        raise MirrorLoadError(f"{path}: the last line has no newline (a copy cut short?)")
    return data, st0



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
