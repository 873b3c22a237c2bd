"""Config loading: defaults, the example file, env overrides, precedence, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastlookup.config import Config, load_config
from fastlookup.errors import ConfigError

EXAMPLE = Path(__file__).parent / "data" / "config-example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fastlookup.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_gives_the_defaults():
    """With no file and no env, every key has its default and the default policy exists."""
    config = load_config(environ={})
    assert config.to_dict() == Config().to_dict()
    assert config.server.socket == "/run/fastlookup/fastlookup.sock"
    assert config.socket_mode == 0o660
    assert config.upstream.servers == ()  # resolv.conf at start
    assert "default" in config.policy


def test_example_file_loads():
    """The shared example config (copied into tests/data) loads without error."""
    config = load_config(EXAMPLE, environ={})
    assert config.upstream.servers == ("127.0.0.1:53",)
    assert config.policy["default"].dnsbl == ("zen.spamhaus.org",)
    assert config.dnsbl["zen.spamhaus.org"].codes == ("127.0.0.2-127.0.0.11",)
    assert config.rhsbl["dbl.spamhaus.org"].targets == ("client", "helo", "sender")
    assert config.cache.prefetch is True


ENV_CASES = [
    # (env, (table, key), expected)
    ({"FASTLOOKUP_UPSTREAM__SERVERS": "1.1.1.1:53, 9.9.9.9"}, ("upstream", "servers"), ("1.1.1.1:53", "9.9.9.9")),
    ({"FASTLOOKUP_UPSTREAM__SERVERS": '["8.8.8.8"]'}, ("upstream", "servers"), ("8.8.8.8",)),
    ({"FASTLOOKUP_UPSTREAM__TIMEOUT_S": "0.25"}, ("upstream", "timeout_s"), 0.25),
    ({"FASTLOOKUP_CACHE__PREFETCH": "off"}, ("cache", "prefetch"), False),
    ({"FASTLOOKUP_CACHE__PREFETCH": "Yes"}, ("cache", "prefetch"), True),
    ({"FASTLOOKUP_CACHE__MEMORY_ENTRIES": "5000"}, ("cache", "memory_entries"), 5000),
    ({"FASTLOOKUP_REDIS__URL": "redis://127.0.0.1:6379/0"}, ("redis", "url"), "redis://127.0.0.1:6379/0"),
    ({"FASTLOOKUP_SERVER__SOCKET_MODE": "0600"}, ("server", "socket_mode"), "0600"),
]


@pytest.mark.parametrize("env, where, expected", ENV_CASES)
def test_env_overrides_are_parsed_by_key_type(env, where, expected):
    """FASTLOOKUP_<TABLE>__<KEY> sets a key, parsed by its type (lists, numbers, booleans)."""
    config = load_config(environ=env)
    table, key = where
    assert getattr(getattr(config, table), key) == expected


def test_env_reaches_nested_tables():
    """Nested tables take env too: FASTLOOKUP_POLICY__DEFAULT__DEADLINE_S."""
    config = load_config(environ={"FASTLOOKUP_POLICY__DEFAULT__DEADLINE_S": "0.5", "FASTLOOKUP_POLICY__STRICT__DNSBL": "bl.test"})
    assert config.policy["default"].deadline_s == 0.5
    assert config.policy["strict"].dnsbl == ("bl.test",)


def test_precedence_file_then_env_then_overrides(tmp_path):
    """defaults < TOML file < env < CLI overrides."""
    path = write(tmp_path, '[server]\nsocket = "/file.sock"\nmax_batch = 10\ngrace_s = 1.0\n')
    env = {"FASTLOOKUP_SERVER__SOCKET": "/env.sock", "FASTLOOKUP_SERVER__MAX_BATCH": "20"}
    config = load_config(path, environ=env, overrides={"server": {"socket": "/flag.sock"}})
    assert config.server.socket == "/flag.sock"
    assert config.server.max_batch == 20
    assert config.server.grace_s == 1.0
    assert config.server.max_in_flight == 10000


def test_unrelated_env_is_ignored():
    """Variables without the prefix and __ separator (FASTLOOKUP_SOCKET, FASTLOOKUP_CONFIG) are not config keys."""
    config = load_config(environ={"FASTLOOKUP_SOCKET": "/x.sock", "FASTLOOKUP_CONFIG": "/x.toml", "OTHER__X": "1"})
    assert config.server.socket == "/run/fastlookup/fastlookup.sock"


ERROR_CASES = [
    # (toml text, env, text that must be in the message)
    ("[bogus]\nx = 1\n", {}, "bogus: unknown table"),
    ("[server]\nsockett = \"/x\"\n", {}, "server.sockett: unknown key"),
    ("[cache]\nmin_ttl_s = -1\n", {}, "cache.min_ttl_s: -1 is out of range"),
    ("[cache]\nmin_ttl_s = \"60\"\n", {}, "cache.min_ttl_s: expected an integer"),
    ("[cache]\nmin_ttl_s = 7200\nmax_ttl_s = 3600\n", {}, "cache.min_ttl_s: 7200 is above cache.max_ttl_s"),
    ("[server]\nsocket_mode = \"rw\"\n", {}, "server.socket_mode: 'rw' is not an octal file mode"),
    ("[server]\nloop = \"twisted\"\n", {}, "server.loop: 'twisted' is not one of"),
    ("[cache]\nprefetch = \"yes\"\n", {}, "cache.prefetch: expected true or false"),
    ("[policy.default]\nallow = [\"10.0.0.0/33\"]\n", {}, "policy.default.allow: '10.0.0.0/33' is not an IP network"),
    ("[policy.default]\non_listed = \"drop\"\n", {}, "policy.default.on_listed: 'drop' is not one of"),
    ("[policy.default]\ndnsbl = [\"not a zone\"]\n", {}, "policy.default.dnsbl[0]: 'not a zone' is not a domain name"),
    ("[rhsbl.\"dbl.test\"]\ntargets = [\"client\", \"body\"]\n", {}, "rhsbl.dbl.test.targets: 'body' is not one of"),
    ("", {"FASTLOOKUP_UPSTREAM__ATTEMPTS": "many"}, "upstream.attempts: expected a number"),
    ("", {"FASTLOOKUP_CACHE__PREFETCH": "perhaps"}, "cache.prefetch: expected true or false"),
    ("", {"FASTLOOKUP_NOPE__X": "1"}, "nope: unknown table"),
    ("[server\n", {}, "is not valid TOML"),
]


@pytest.mark.parametrize("text, env, message", ERROR_CASES)
def test_bad_config_fails_with_a_message_naming_the_key(tmp_path, text, env, message):
    """Unknown keys and bad values fail at load with the key's name and what is wrong."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env)
    assert message in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    """A config path that does not exist fails with the path in the message."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_config_is_frozen():
    """Config is frozen data: assigning a key fails."""
    config = load_config(environ={})
    with pytest.raises(AttributeError):
        config.server.socket = "/x"  # type: ignore[misc]


def test_to_dict_masks_passwords():
    """to_dict masks the password of the Redis URL; the raw value stays in the Config."""
    config = load_config(environ={"FASTLOOKUP_REDIS__URL": "rediss://u:pw@redis.example:6380/1"})
    assert config.to_dict()["redis"]["url"] == "rediss://u:***@redis.example:6380/1"
    assert config.to_dict(mask_secrets=False)["redis"]["url"] == "rediss://u:pw@redis.example:6380/1"


LOOP_CASES = [("asyncio", "asyncio"), ("uvloop", "uvloop"), ("auto", "uvloop")]


@pytest.mark.parametrize("name, concrete", LOOP_CASES)
def test_server_loop_picks_from_the_loop_table(name, concrete):
    """server.loop names a loop implementation; auto means uvloop when it is installed."""
    import asyncio

    from fastlookup import loops

    assert loops.resolve(name) == concrete
    loop = loops.loop_factory(name)()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert type(loop).__module__.split(".")[0] == ("uvloop" if concrete == "uvloop" else "asyncio")
    finally:
        loop.close()


def test_unknown_loop_name_is_a_config_error():
    """A loop name outside the table is refused with the key's name."""
    from fastlookup import loops

    with pytest.raises(ConfigError, match="server.loop"):
        loops.resolve("twisted")
