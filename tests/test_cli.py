"""The command line: exit codes, human and JSON output, config show, serve's errors, bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest
from click.testing import CliRunner

from fastlookup import cli


def run(*args: str, env: dict | None = None):
    """Invoke the CLI in-process like the `fastlookup` script (usage errors exit 4)."""
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def sock(fl_service) -> str:
    return fl_service.socket


CHECK_CASES = [
    # (args, exit code, text in the human output)
    (["192.0.2.99"], 1, "REJECT 554"),
    (["192.0.2.1"], 0, "ACCEPT"),
    (["192.0.2.1", "--sender", "x@spam.example"], 1, "REJECT"),
    (["192.0.2.1", "--helo", "host.example.test", "--sender", "a@example.test", "--recipient", "b@example.test"], 0, "ACCEPT"),
    (["not-an-ip"], 4, "invalid_argument"),
    (["192.0.2.1", "--policy", "nosuch"], 4, "nosuch"),
]


@pytest.mark.parametrize("args, code, text", CHECK_CASES)
def test_check_exit_codes_and_output(sock, args, code, text):
    """check exits 0 for accept, 1 for reject, 4 for a bad argument, and says why."""
    result = run("check", *args, "--socket", sock)
    assert result.exit_code == code, result.output
    assert text in result.output


def test_check_json_is_the_verdict(sock):
    """check --json prints the contract's Verdict map."""
    result = run("check", "192.0.2.99", "--json", "--socket", sock)
    verdict = json.loads(result.output)
    assert result.exit_code == 1 and verdict["action"] == "reject" and verdict["smtp_code"] == 554


def test_check_defer_exits_2(make_service):
    """A defer verdict exits 2."""
    svc = make_service(policy={"default": {"dnsbl": ["bl.test"], "allow": [], "on_listed": "defer"}})
    result = run("check", "192.0.2.99", "--socket", svc.socket)
    assert result.exit_code == 2 and "DEFER 450" in result.output  # Postfix's defer_code


def test_unreachable_service_exits_3(short_tmp):
    """Every client command exits 3 when the service cannot be reached (check does not fail open here)."""
    missing = f"{short_tmp}/missing.sock"
    for args in (["check", "192.0.2.1"], ["ping"], ["stats"], ["lookup", "a", "host.example.test"]):
        result = run(*args, "--socket", missing, "--timeout", "0.2")
        assert result.exit_code == 3, (args, result.output)
        assert "unavailable" in result.output


def test_socket_comes_from_the_environment(sock):
    """FASTLOOKUP_SOCKET is used when --socket is not given."""
    result = run("ping", env={"FASTLOOKUP_SOCKET": sock})
    assert result.exit_code == 0 and result.output.startswith("ok: fastlookup")


LOOKUP_CASES = [
    # (args, exit code, text in the human output)
    (["a", "host.example.test"], 0, "192.0.2.1"),
    (["a", "missing.example.test"], 1, "nxdomain"),
    (["aaaa", "host.example.test"], 0, "2001:db8::1"),
    (["ptr", "192.0.2.1"], 0, "host.example.test"),
    (["query", "example.test", "--type", "mx"], 0, "10 mx.example.test"),
    (["query", "example.test", "--type", "BOGUS"], 4, "invalid_argument"),
    (["fcrdns", "192.0.2.1"], 0, "pass"),
    (["fcrdns", "192.0.2.66"], 1, "fail"),
    (["fcrdns", "192.0.2.200"], 1, "none"),
    (["dnsbl", "192.0.2.99"], 1, "LISTED"),
    (["dnsbl", "192.0.2.1"], 0, "not listed"),
    (["dnsbl", "192.0.2.1", "--zone", "errorcode.test"], 2, "could not check (list_error)"),
    (["dnsbl", "198.51.100.9", "--zone", "bl.test", "--zone", "listall.test"], 1, "listall.test"),
    (["rhsbl", "spam.example"], 1, "Spam domain"),
    (["rhsbl", "ham.example"], 0, "not listed"),
    (["a", "host.example.test", "--zone", "bl.test"], 4, "--zone"),
    (["nosuch", "x"], 4, "nosuch"),
]


@pytest.mark.parametrize("args, code, text", LOOKUP_CASES)
def test_lookup_exit_codes_and_output(sock, args, code, text):
    """lookup prints what was found and where from, and exits by the outcome."""
    result = run("lookup", *args, "--socket", sock)
    assert result.exit_code == code, result.output
    assert text in result.output


def test_lookup_shows_the_cache_tier(sock):
    """The human output names the tier that answered: upstream first, memory next."""
    assert "from upstream" in run("lookup", "a", "host.example.test", "--socket", sock).output
    assert "from memory" in run("lookup", "a", "host.example.test", "--socket", sock).output


def test_lookup_json_is_the_answer(sock):
    """lookup --json prints the contract's map."""
    result = run("lookup", "a", "host.example.test", "--json", "--socket", sock)
    assert json.loads(result.output)["records"] == ["192.0.2.1"]


def test_ping_and_stats(sock):
    """ping and stats exit 0; stats --json is a map of counters."""
    assert run("ping", "--socket", sock).exit_code == 0
    assert json.loads(run("ping", "--json", "--socket", sock).output)["ok"] is True
    result = run("stats", "--json", "--socket", sock)
    assert result.exit_code == 0 and "connections" in json.loads(result.output)
    assert "connections" in run("stats", "--socket", sock).output


@pytest.mark.parametrize("args", [["--nope"], ["check"], ["check", "1.2.3.4", "--bogus"], ["nosuchcommand"], ["check", "1.2.3.4", "--timeout", "0"]])
def test_usage_errors_exit_4(args):
    """Unknown options, missing arguments and unknown commands exit 4."""
    assert run(*args).exit_code == 4


def test_help_lists_the_exit_codes():
    """--help documents the exit codes."""
    result = run("--help")
    assert result.exit_code == 0
    for line in ("0  accept", "1  reject", "2  defer", "3  service unreachable", "4  bad usage"):
        assert line in result.output
    assert "Exit codes" in run("check", "--help").output


# --- config show and serve -------------------------------------------------------------------


def test_config_show_masks_secrets_and_round_trips_as_toml(short_tmp):
    """config show merges file and env, masks the Redis password, and its TOML form parses back."""
    path = f"{short_tmp}/c.toml"
    with open(path, "w") as fh:
        fh.write('[server]\nsocket = "/tmp/x.sock"\n[dnsbl."zen.spamhaus.org"]\nweight = 2.0\n')
    env = {"FASTLOOKUP_REDIS__URL": "redis://user:s3cret@127.0.0.1:6379/0", "FASTLOOKUP_CACHE__MIN_TTL_S": "30"}
    as_json = run("config", "show", "--config", path, "--json", env=env)
    assert as_json.exit_code == 0
    data = json.loads(as_json.output)
    assert data["server"]["socket"] == "/tmp/x.sock" and data["cache"]["min_ttl_s"] == 30
    assert "s3cret" not in as_json.output and data["redis"]["url"] == "redis://user:***@127.0.0.1:6379/0"
    as_toml = run("config", "show", "--config", path, env=env)
    assert "s3cret" not in as_toml.output
    parsed = tomllib.loads(as_toml.output)
    assert parsed["server"] == data["server"] and parsed["dnsbl"]["zen.spamhaus.org"]["weight"] == 2.0


def test_config_show_bad_value_names_the_key_and_exits_4(short_tmp):
    """A bad value in the file exits 4 with the key's name."""
    path = f"{short_tmp}/c.toml"
    with open(path, "w") as fh:
        fh.write("[cache]\nmin_ttl_s = -5\n")
    result = run("config", "show", "--config", path)
    assert result.exit_code == 4 and "cache.min_ttl_s" in result.output


def _serve(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTLOOKUP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run([sys.executable, "-m", "fastlookup", "serve", *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize(
    "args, text",
    [
        (["--upstream", "not-an-address"], "upstream.servers[0]"),
        (["--config", "/nonexistent/fastlookup.toml"], "does not exist"),
    ],
)
def test_serve_refuses_a_bad_config_with_exit_4(short_tmp, args, text):
    """serve exits 4 with a message naming the bad key instead of starting."""
    result = _serve("--socket", f"{short_tmp}/fl.sock", *args)
    assert result.returncode == 4, result.stderr
    assert text in result.stderr


def test_serve_refuses_a_socket_a_live_service_holds(sock):
    """serve exits 1 when another instance answers on the socket."""
    result = _serve("--socket", sock)
    assert result.returncode == 1 and "another fastlookup instance" in result.stderr


# --- bench ------------------------------------------------------------------------------------------


def test_bench_says_where_it_is_available(monkeypatch):
    """Without the bench package, `fastlookup bench` explains it needs a source checkout and exits 4."""
    monkeypatch.setattr(cli, "_bench_main", lambda: None)
    result = run("bench", "--quick")
    assert result.exit_code == 4 and "source checkout" in result.output


def test_bench_passes_its_arguments_through(monkeypatch):
    """With the bench package, `fastlookup bench ARGS` calls bench.__main__.main(ARGS) and exits with its code."""
    seen = []
    monkeypatch.setattr(cli, "_bench_main", lambda: lambda argv: seen.append(argv) or 0)
    result = run("bench", "--quick", "--out", "/tmp/x", "--help")
    assert result.exit_code == 0 and seen == [["--quick", "--out", "/tmp/x", "--help"]]


def test_client_commands_import_no_engine():
    """Importing the CLI loads neither the engine nor dnspython, redis, uvloop or asyncio."""
    code = "import sys, json; import fastlookup.cli; print(json.dumps(sorted(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTLOOKUP_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    modules = json.loads(out.stdout)
    assert [m for m in modules if m.split(".")[0] in ("dns", "redis", "uvloop", "asyncio", "prometheus_client")] == []
    assert "fastlookup.service" not in modules and "fastlookup.resolver" not in modules


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["lookup", "dnsbl", "127.0.0.2"], 4, "no dnsbl zones configured"),
        (["lookup", "rhsbl", "test"], 4, "no rhsbl zones configured"),
        (["check", "192.0.2.1"], 0, "note: no DNSBL zones are configured"),
    ],
)
def test_no_zones_is_said_not_not_listed(make_service, args, code, text):
    """With no zones configured lookup refuses (exit 4) and check notes it, instead of a clean "not listed"."""
    svc = make_service(policy={"default": {"allow": []}})
    result = run(*args, "--socket", svc.socket)
    assert result.exit_code == code, result.output
    assert text in result.output
    assert "is not listed" not in result.output


def test_serve_help_shows_its_own_exit_codes():
    """serve --help lists serve's exit codes, not the client commands' (listed / defer / unreachable)."""
    out = run("serve", "--help").output
    assert "stopped by SIGTERM" in out and "listed" not in out and "unreachable" not in out
