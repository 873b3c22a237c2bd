"""Structured logging: one line per record, as ``key=value`` text or JSON.

``setup_logging(LogConfig)`` installs one handler on the root logger (so the
records of asyncio and other libraries, "Task exception was never retrieved"
included, come out in the same shape) at the configured level. Library code
only uses ``logging.getLogger(...)``; the process entry point (``fastlookup
serve``) calls this once, and again on reload.

Every record becomes exactly one line: the time, level, logger and message,
then the record's ``extra`` fields in the order given, e.g. the policy
engine's verdict line (logger ``fastlookup.verdict``)::

    ts=2026-01-01T12:00:00.123Z level=info logger=fastlookup.verdict msg=verdict ip=192.0.2.1 action=reject zone=bl.test
    {"ts": "2026-01-01T12:00:00.123Z", "level": "info", "logger": "fastlookup.verdict", "msg": "verdict", "ip": "192.0.2.1"}

One line is a security property, not a nicety: HELO names, senders and
list TXT texts come from strangers, and a newline in one of them must not
forge a second log line. ``kv`` (logfmt) leaves a value bare only when it
is made of safe characters, else quotes it and escapes ``\\``, ``"`` and
every non-printable character (``\\n``, ``\\t``, ``\\xNN``, ``\\uNNNN``);
``json`` goes through ``json.dumps`` with ``ensure_ascii`` so even U+2028
cannot split a line. A traceback is one escaped ``exc`` field. No message
carries a secret (house rule 11): callers log ``Zone.display`` and masked
URLs, and every field passes ``masking.mask_secrets`` as well, so a secret
that slips into an exception text is still hidden.

Bounded (issue 12): text that came from a client ends up in messages and
exception texts, so every string argument of a record and the last line
of a traceback are cut to ``MAX_INPUT_CHARS`` (a cut ends in ``…``); and a
traceback (or a line marked ``_rate_limit``) is logged once per ``RATE_INTERVAL_S`` per
class (logger, message template, exception type): the next one of the class
after the interval carries ``suppressed=N``, the count left out meanwhile.
A flood of bad requests costs a few lines a minute, not a log the size of the
flood. Standard library only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import IO, Any

from .masking import mask_secrets

__all__ = [
    "setup_logging",
    "setup",
    "KvFormatter",
    "JsonFormatter",
    "FORMATTERS",
    "LEVELS",
    "kv_escape",
    "record_fields",
    "RateLimit",
    "MAX_INPUT_CHARS",
    "RATE_INTERVAL_S",
]

#: Every string argument of a record, and an exception's text, is cut to this many characters.
MAX_INPUT_CHARS = 200
#: A class of warnings/errors/tracebacks is logged at most once per this many seconds.
RATE_INTERVAL_S = 10.0

#: ``LogConfig.level`` -> logging level.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:/@+,[]()")


def _timestamp(created: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-01-01T12:00:00.123Z``."""
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % int((created - seconds) * 1000)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of one record in output order: ts, level, logger, msg, extras, exc."""
    fields: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": mask_secrets(_message(record)),
    }
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key if key not in fields else "extra_" + key] = mask_secrets(value) if type(value) is str else value
    if record.exc_info and record.exc_info[0] is not None:
        fields["exc"] = mask_secrets(_exception(record.exc_info))
    elif record.exc_text:
        fields["exc"] = mask_secrets(_cut(record.exc_text, 4 * MAX_INPUT_CHARS))
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


def _cut(text: str, limit: int = MAX_INPUT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()`` with every string argument cut to MAX_INPUT_CHARS."""
    args = record.args
    if isinstance(args, tuple) and args:
        cut = tuple(_cut(a) if type(a) is str else _cut(str(a)) if isinstance(a, BaseException) else a for a in args)
        try:
            return str(record.msg) % cut
        except (TypeError, ValueError):
            pass
    return _cut(record.getMessage(), 8 * MAX_INPUT_CHARS)


def _exception(exc_info: Any) -> str:
    """A traceback whose last line (the exception's text, often holding client input) is cut."""
    etype, value, tb = exc_info
    lines = traceback.format_tb(tb)
    lines.append(f"{etype.__name__}: {_cut(str(value))}")
    return "Traceback (most recent call last):\n" + "".join(lines)


class RateLimit(logging.Filter):
    """Pass one record per class (logger, template, exception type) per ``interval_s``; count the rest.

    Only records with a traceback, and those a caller marks with
    ``extra={"_rate_limit": True}`` (lines a client can cause at will), are
    limited: the verdict lines and operator events ("reload failed") are not. The next record of a
    class that passes gets ``suppressed=N``. ``clock`` is injectable.
    """

    def __init__(self, interval_s: float = RATE_INTERVAL_S, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[tuple, float] = {}
        self._suppressed: dict[tuple, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] is not None else None
        if exc is None and not getattr(record, "_rate_limit", False):
            return True
        key = (record.name, str(record.msg)[:200], exc)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) >= 4096:  # bounded: classes come from code, but be safe
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        dropped = self._suppressed.pop(key, 0)
        if dropped:
            record.suppressed = dropped
        return True


def _escape_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch == '"':
        return '\\"'
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if ch == " " or ch.isprintable():
        return ch
    code = ord(ch)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str, separators=(",", ":"), sort_keys=True)
    return str(value)


def kv_escape(value: Any) -> str:
    """One value of a ``key=value`` line: bare when safe, else quoted and escaped."""
    text = _text(value)
    if text and all(ch in _SAFE for ch in text):
        return text
    return '"' + "".join(_escape_char(ch) for ch in text) + '"'


def _kv_key(key: str) -> str:
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_.-") else "_" for ch in str(key))
    return cleaned or "_"


class KvFormatter(logging.Formatter):
    """``key=value`` pairs separated by one space (logfmt), one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(_kv_key(k) + "=" + kv_escape(v) for k, v in record_fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``json.dumps``, ASCII only so nothing splits it)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record), default=str, ensure_ascii=True)


#: ``LogConfig.format`` -> formatter class (an explicit table, house rule 8).
FORMATTERS: dict[str, type[logging.Formatter]] = {"kv": KvFormatter, "json": JsonFormatter}


class _Handler(logging.StreamHandler):
    """The handler ``setup_logging`` installs; marked so a second call replaces it."""


def setup_logging(cfg, stream: IO[str] | None = None, logger: logging.Logger | None = None) -> logging.Handler:
    """Send records of ``logger`` (the root logger) to ``stream`` (stderr) as ``cfg.format``.

    ``cfg`` is a ``LogConfig`` (``format``: kv | json, ``level``: debug |
    info | warning | error). Calling it again replaces the handler it
    installed before (a reload) and leaves other handlers alone.
    """
    try:
        formatter = FORMATTERS[cfg.format]()
    except KeyError:
        raise ValueError(f"log.format: {cfg.format!r} is not one of {', '.join(FORMATTERS)}") from None
    try:
        level = LEVELS[cfg.level]
    except KeyError:
        raise ValueError(f"log.level: {cfg.level!r} is not one of {', '.join(LEVELS)}") from None
    target = logger if logger is not None else logging.getLogger()
    for old in [h for h in target.handlers if isinstance(h, _Handler)]:
        target.removeHandler(old)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RateLimit())
    target.addHandler(handler)
    target.setLevel(level)
    return handler


class _Cfg:
    __slots__ = ("format", "level")

    def __init__(self, format: str, level: str) -> None:
        self.format = format
        self.level = level


def setup(format: str = "kv", level: str = "info") -> logging.Handler:
    """``setup_logging`` from plain values: ``setup(cfg.log.format, cfg.log.level)``."""
    return setup_logging(_Cfg(format, level.lower()))
