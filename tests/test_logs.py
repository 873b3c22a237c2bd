"""Structured logs: key=value and JSON, one line per record whatever the input."""

from __future__ import annotations

import io
import json
import logging

import pytest

from fastlookup.config import LogConfig
from fastlookup.logs import kv_escape, setup_logging

HOSTILE = 'evil\nts=forged level=info msg="x" \r\t\\ \u2028 \x00 = "q"'


@pytest.fixture
def logger():
    """A private logger whose handlers and level are restored after the test."""
    log = logging.getLogger("fastlookup.test_logs")
    handlers, level = list(log.handlers), log.level
    log.propagate = False
    yield log
    log.handlers[:] = handlers
    log.setLevel(level)
    log.propagate = True


def emit(logger, fmt: str, level: str = "info", **extra) -> str:
    stream = io.StringIO()
    setup_logging(LogConfig(format=fmt, level=level), stream=stream, logger=logger)
    logger.info("verdict %s", "reject", extra=extra)
    return stream.getvalue()


@pytest.mark.parametrize(
    "value, expected",
    [
        ("plain", "plain"),
        ("192.0.2.1", "192.0.2.1"),
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("nul\x00", '"nul\\x00"'),
        ("sep\u2028", '"sep\\u2028"'),
        ("", '""'),
        (None, "null"),
        (True, "true"),
        (1.5, "1.5"),
        (["a", "b"], "a,b"),
    ],
)
def test_kv_escape_table(value, expected):
    """A kv value is bare when safe and quoted with every special character escaped otherwise."""
    assert kv_escape(value) == expected


def test_kv_verdict_line_is_one_line_with_fields_in_order(logger):
    """The kv format writes ts, level, logger, msg and then the extras in the order given, on one line."""
    out = emit(logger, "kv", ip="192.0.2.1", action="reject", zone="bl.test", helo=HOSTILE)
    assert out.endswith("\n") and out.count("\n") == 1
    line = out.rstrip("\n")
    assert line.startswith("ts=")
    keys = [part.split("=", 1)[0] for part in line.split(" ") if "=" in part and not part.startswith(('"', "\\"))]
    assert keys[:7] == ["ts", "level", "logger", "msg", "ip", "action", "zone"]
    assert " level=info logger=fastlookup.test_logs " in line
    assert 'msg="verdict reject"' in line
    assert "\u2028" not in line and "\r" not in line and "\x00" not in line


def test_json_verdict_line_round_trips(logger):
    """The json format writes one json.dumps object per record whose fields survive a hostile value."""
    out = emit(logger, "json", ip="192.0.2.1", action="reject", helo=HOSTILE, score=1.5, codes=["127.0.0.2"])
    assert out.count("\n") == 1 and len(out.splitlines()) == 1
    record = json.loads(out)
    assert list(record)[:4] == ["ts", "level", "logger", "msg"]
    assert record["msg"] == "verdict reject"
    assert record["helo"] == HOSTILE
    assert record["score"] == 1.5 and record["codes"] == ["127.0.0.2"]
    assert record["ts"].endswith("Z")


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_traceback_stays_on_one_line(logger, fmt):
    """An exception's traceback becomes one escaped exc field, not extra lines."""
    stream = io.StringIO()
    setup_logging(LogConfig(format=fmt), stream=stream, logger=logger)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("failed")
    out = stream.getvalue()
    assert len(out.splitlines()) == 1
    assert "ValueError" in out and "exc" in out


def test_level_filters_and_setup_replaces_its_own_handler(logger):
    """The configured level drops lower records, and a second setup replaces the first handler only."""
    other = logging.NullHandler()
    logger.addHandler(other)
    first = io.StringIO()
    setup_logging(LogConfig(level="warning"), stream=first, logger=logger)
    second = io.StringIO()
    setup_logging(LogConfig(level="warning"), stream=second, logger=logger)
    logger.info("dropped")
    logger.warning("kept")
    assert first.getvalue() == ""
    assert second.getvalue().count("\n") == 1 and "msg=kept" in second.getvalue()
    ours = [h for h in logger.handlers if type(h).__module__ == "fastlookup.logs"]
    assert other in logger.handlers and len(ours) == 1


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_policy_verdict_line_is_one_line(fmt, tmp_path):
    """The policy engine's verdict record (logger fastlookup.verdict) for a reject is one line, hostile HELO or not."""
    import asyncio

    from doubles import FakeUpstream

    from fastlookup.config import load_config
    from fastlookup.model import Answer
    from fastlookup.service import Service

    config = load_config(
        environ={},
        overrides={"server": {"socket": str(tmp_path / "fl.sock")}, "policy": {"default": {"dnsbl": ["bl.test"]}}},
    )
    upstream = FakeUpstream({("99.2.0.192.bl.test", "A"): Answer("ok", ("127.0.0.2",), 300)})
    verdict_log = logging.getLogger("fastlookup.verdict")
    saved = list(verdict_log.handlers), verdict_log.level, verdict_log.propagate
    stream = io.StringIO()
    try:
        verdict_log.propagate = False
        setup_logging(LogConfig(format=fmt), stream=stream, logger=verdict_log)

        async def main():
            service = Service(config, upstream=upstream)
            return await service.call("check", {"ip": "192.0.2.99", "helo": HOSTILE})

        verdict = asyncio.run(main())
    finally:
        verdict_log.handlers[:], verdict_log.level, verdict_log.propagate = saved[0], saved[1], saved[2]
    assert verdict["action"] == "reject"
    out = stream.getvalue()
    assert out.count("\n") == 1 and len(out.splitlines()) == 1, out
    line = out.splitlines()[0]
    if fmt == "json":
        record = json.loads(line)
        assert record["logger"] == "fastlookup.verdict" and record["msg"].startswith("verdict action=reject")
    else:
        assert line.startswith("ts=") and " logger=fastlookup.verdict " in line and 'msg="verdict action=reject' in line


# --- issue 12: bounded, rate-limited, masked ---------------------------------------------


def _capture(clock):
    import io

    from fastlookup.logs import KvFormatter, RateLimit

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KvFormatter())
    handler.addFilter(RateLimit(10.0, clock=clock))
    logger = logging.getLogger("fastlookup.test12")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_an_error_class_is_logged_once_per_interval_with_a_count():
    """1,000 identical tracebacks in an interval make one line; the next interval's line says how many were left out."""
    now = [0.0]
    logger, stream = _capture(lambda: now[0])
    for i in range(1000):
        try:
            raise ValueError("x" * 100_000)
        except ValueError:
            logger.exception("internal error in %s: %s", "dnsbl", "ValueError")
    now[0] = 11.0
    try:
        raise ValueError("again")
    except ValueError:
        logger.exception("internal error in %s: %s", "dnsbl", "ValueError")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "suppressed=999" in lines[1]
    assert len(stream.getvalue()) < 20_000  # the 100 kB exception text is cut, not printed twice


def test_client_input_in_a_log_line_is_cut_and_escaped():
    """A 1 MB argument with newlines and ESC becomes at most ~200 characters, escaped, on one line."""
    logger, stream = _capture(lambda: 0.0)
    logger.info("bad helo %s", "\x1b[31m\nforged=line " + "h" * 1_000_000)
    out = stream.getvalue()
    assert out.count("\n") == 1 and "\x1b" not in out and len(out) < 500


def test_a_dqs_key_in_any_log_field_is_masked():
    """A DQS key in a message, an extra field or an exception text never reaches the log."""
    logger, stream = _capture(lambda: 0.0)
    try:
        raise RuntimeError("zone sekritKEY1.zen.dq.spamhaus.net failed")
    except RuntimeError:
        logger.exception("lookup under %s", "sekritKEY1.zen.dq.spamhaus.net", extra={"zone": "sekritKEY1.zen.dq.spamhaus.net"})
    out = stream.getvalue()
    assert "sekritKEY1" not in out and "***.zen.dq.spamhaus.net" in out
