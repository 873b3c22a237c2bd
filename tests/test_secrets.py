"""A DQS key never reaches any printer; bad `serve` input is one line and exit 4 (issue 12 items 11 and 16).

Stats and metrics are checked by ``test_metrics.test_no_secret_anywhere`` /
``test_collector_masks_secrets_passed_by_mistake`` and logs by
``test_logs.test_a_dqs_key_in_any_log_field_is_masked``; this file covers
``config show`` (text and --json), config errors at start and the "reload
failed" line, all through ``masking.mask_secrets``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fastlookup import cli
from fastlookup.client import Client
from fastlookup.testing.service import ServiceProcess

KEY = "sekrit0dqs0key4711"
ZONE = f"{KEY}.zen.dq.spamhaus.net"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTLOOKUP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastlookup", "serve", *args], capture_output=True, text=True, timeout=30, env=_env())


GOOD = """
[server]
socket = "{sock}"
[upstream]
servers = ["127.0.0.1:9"]
[health]
interval_s = 0
[policy.default]
dnsbl = ["{zone}"]
"""


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_config_show_masks_the_dqs_key(short_tmp, as_json):
    """`config show` (text and --json) prints a keyed zone as ***.zen.dq.spamhaus.net, in tables and policy lists."""
    path = f"{short_tmp}/c.toml"
    with open(path, "w") as fh:
        fh.write(GOOD.format(sock=f"{short_tmp}/fl.sock", zone=ZONE) + f'[dnsbl."{ZONE}"]\nweight = 2.0\n')
    result = CliRunner().invoke(cli.main, ["config", "show", "--config", path] + (["--json"] if as_json else []), env=_env())
    assert result.exit_code == 0, result.output
    assert KEY not in result.output and "***.zen.dq.spamhaus.net" in result.output


@pytest.mark.parametrize(
    "extra",
    [f'[dnsbl."{ZONE}"]\ncodes = ["not-a-code"]\n', f'[policy.other]\ndnsbl = ["{ZONE}=127.0.0.[999]"]\n', f'[policy.x]\ndnsbl = ["{ZONE} bad"]\n'],
    ids=["zone-table-codes", "policy-pattern", "policy-name"],
)
def test_config_errors_at_start_mask_the_dqs_key(short_tmp, extra):
    """A config error naming a keyed zone is one line, exit 4, and shows no key."""
    path = f"{short_tmp}/c.toml"
    with open(path, "w") as fh:
        fh.write(GOOD.format(sock=f"{short_tmp}/fl.sock", zone="bl.test") + extra)
    result = _serve("--config", path)
    assert result.returncode == 4, result.stderr
    assert KEY not in result.stderr and "dq.spamhaus.net" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_reload_failed_line_masks_the_dqs_key_and_keeps_the_old_config(short_tmp):
    """SIGHUP with a bad keyed zone (or a binary file) logs "reload failed" without the key; the old config stays."""
    sock = f"{short_tmp}/fl.sock"
    path = f"{short_tmp}/c.toml"
    with open(path, "w") as fh:
        fh.write(GOOD.format(sock=sock, zone="bl.test"))
    with ServiceProcess(["--config", path], socket=sock, env=_env()) as proc, Client(sock, timeout=2) as client:
        with open(path, "w") as fh:
            fh.write(GOOD.format(sock=sock, zone="bl.test") + f'[dnsbl."{ZONE}"]\ncodes = ["nope"]\n')
        proc.signal(signal.SIGHUP)
        assert proc.output.wait_for_count("reload failed", 1, 10), proc.output.tail()
        with open(path, "wb") as fh:
            fh.write(b"\xff\xfe\x00binary\x89PNG\r\n")
        proc.signal(signal.SIGHUP)
        assert proc.output.wait_for_count("reload failed", 2, 10), proc.output.tail()
        assert client.ping() is not None
        text = proc.output.tail(200)
        assert KEY not in text and "Traceback" not in text


@pytest.mark.parametrize(
    "setup, socket_name",
    [
        (None, "x" * 120 + ".sock"),
        ("file", "parent-is-a-file/fl.sock"),
    ],
    ids=["socket-path-over-107-bytes", "parent-is-a-regular-file"],
)
def test_bad_socket_paths_are_config_errors(short_tmp, setup, socket_name):
    """A socket path over 107 bytes, or under a regular file, is one line and exit 4, not a traceback."""
    if setup == "file":
        open(f"{short_tmp}/parent-is-a-file", "w").close()
    result = _serve("--socket", f"{short_tmp}/{socket_name}", "--upstream", "127.0.0.1:9")
    assert result.returncode == 4, result.stderr
    assert "server.socket" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x01binary", b'[server]\nsocket = "\xe9t\xe9"\n'], ids=["binary", "latin-1"])
def test_binary_or_non_utf8_config_is_a_config_error(short_tmp, content):
    """A binary or non-UTF-8 config file at start is one line and exit 4."""
    path = f"{short_tmp}/c.toml"
    with open(path, "wb") as fh:
        fh.write(content)
    result = _serve("--config", path)
    assert result.returncode == 4 and "not UTF-8" in result.stderr and "Traceback" not in result.stderr
