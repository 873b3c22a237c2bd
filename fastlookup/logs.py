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
URLs. Standard library only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

__all__ = ["setup_logging", "setup", "KvFormatter", "JsonFormatter", "FORMATTERS", "LEVELS", "kv_escape", "record_fields"]

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
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key if key not in fields else "extra_" + key] = value
    if record.exc_info and record.exc_info[0] is not None:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        fields["exc"] = record.exc_text
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


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
