"""The one access model: each front its own socket, group and mode; a refused one says why and how to fix it."""

from __future__ import annotations

import grp
import os
import pathlib
import shutil
import pwd
import stat
import subprocess

import pytest

from fastlookup.adapters.listen import front_access
from fastlookup.config import load_config
from fastlookup.errors import ConfigError
from fastlookup.testing.service import ServiceThread, service_config

from fixtures_servers import skip_or_fail
from nonroot import make_prefix, open_dir


@pytest.mark.parametrize(
    "tables, key, expected",
    [
        ({}, "postfix.listen", (0o660, "")),
        ({"server": {"socket_group": "postfix", "socket_mode": "0600"}}, "postfix.exim", (0o600, "postfix")),
        ({"server": {"socket_group": "postfix"}, "postfix": {"exim_group": "Debian-exim"}}, "postfix.exim", (0o660, "Debian-exim")),
        ({"server": {"socket_group": "postfix"}, "postfix": {"exim_group": "Debian-exim"}}, "postfix.listen", (0o660, "postfix")),
        ({"postfix": {"socketmap_mode": "0666", "socketmap_group": "12"}}, "postfix.socketmap", (0o666, "12")),
        ({"postfix": {"listen_mode": "0600"}}, "postfix.listen", (0o600, "")),
    ],
)
def test_front_access_prefers_the_fronts_own_keys(tables, key, expected):
    """A front's own `<name>_mode`/`<name>_group` win; empty ones inherit server.socket_mode/socket_group."""
    assert front_access(load_config(None, environ={}, overrides=tables), key) == expected


def test_front_mode_must_be_octal_or_empty():
    """A front mode that is not octal fails at load, naming the key."""
    with pytest.raises(ConfigError, match=r"postfix.exim_mode: 'rw' is not an octal file mode"):
        load_config(None, environ={}, overrides={"postfix": {"exim_mode": "rw"}})


def _existing_group(*names: str) -> str:
    for name in names:
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            continue
    pytest.skip(f"none of the groups {names} exists")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving sockets other groups needs root or membership")
def test_each_front_gets_its_own_group_and_mode(tmp_path):
    """Postfix, Exim and the msgpack socket each get their own group and mode from one service."""
    os.chmod(tmp_path, 0o755)
    pf, ex, rpc = _existing_group("postfix"), _existing_group("Debian-exim", "mail"), _existing_group("nogroup", "daemon")
    config = service_config(
        str(tmp_path / "fastlookup.sock"),
        server={"socket_group": rpc},
        postfix={"listen": f"unix:{tmp_path}/policy.sock", "listen_group": pf,
                 "exim": f"unix:{tmp_path}/exim.sock", "exim_group": ex, "exim_mode": "0600",
                 "socketmap": "inet:127.0.0.1:0"},
    )
    service = ServiceThread(config).start()
    try:
        seen = {}
        for name in ("fastlookup.sock", "policy.sock", "exim.sock"):
            st = os.stat(tmp_path / name)
            seen[name] = (grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode))
    finally:
        service.stop()
    assert seen == {"fastlookup.sock": (rpc, 0o660), "policy.sock": (pf, 0o660), "exim.sock": (ex, 0o600)}


@pytest.fixture(scope="module")
def prefix():
    """A fastlookup install that user nobody can run (tests/nonroot.py)."""
    directory = open_dir()
    try:
        yield make_prefix(os.path.join(directory, "fastlookup"))
    except RuntimeError as exc:
        skip_or_fail(str(exc))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def nobody_dir():
    """A directory owned by nobody that nobody can reach."""
    directory = open_dir()
    yield pathlib.Path(directory)
    shutil.rmtree(directory, ignore_errors=True)


def _run_as_nobody(tmp_path, toml: str, prefix: str) -> subprocess.CompletedProcess:
    user = pwd.getpwnam("nobody")
    os.chown(tmp_path, user.pw_uid, user.pw_gid)
    (tmp_path / "f.toml").write_text(toml)
    os.chmod(tmp_path / "f.toml", 0o644)
    return subprocess.run(
        [f"{prefix}/bin/fastlookup", "serve", "--config", str(tmp_path / "f.toml")],
        capture_output=True, text=True, timeout=60, user=user.pw_uid, group=user.pw_gid, extra_groups=[],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}, cwd=str(tmp_path),
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the service as another user")
@pytest.mark.parametrize(
    "front, expected",
    [
        ('exim = "unix:{d}/exim.sock"\nexim_group = "{g}"\n', "is not a member of group '{g}'"),
        ('listen = "unix:/var/spool/postfix-fastlookup-test-no/private/policy.sock"\n', "cannot make the socket directory"),
    ],
)
def test_a_refused_socket_says_why_and_the_fix_without_a_traceback(nobody_dir, prefix, front, expected):
    """As a user outside the group (or without a writable directory) serve exits 4 with the reason and the fix."""
    tmp_path = nobody_dir
    group = _existing_group("Debian-exim", "mail")
    toml = (
        f'[server]\nsocket = "{tmp_path}/fastlookup.sock"\n[upstream]\nservers = ["127.0.0.1:9"]\n'
        "[postfix]\n" + front.format(d=tmp_path, g=group)
    )
    done = _run_as_nobody(tmp_path, toml, prefix)
    assert done.returncode == 4, done.stderr
    assert expected.format(g=group) in done.stderr
    assert "Traceback" not in done.stderr
    if "group" in expected:
        assert f"SupplementaryGroups={group}" in done.stderr


@pytest.mark.parametrize(
    "policy, warned",
    [({"default": {}}, True), ({"default": {"require_ptr": "defer"}}, False)],
)
def test_a_front_serving_an_empty_policy_is_logged(tmp_path, caplog, policy, warned):
    """A service whose MTA front would apply a policy that checks nothing says so at start."""
    config = service_config(str(tmp_path / "fastlookup.sock"), postfix={"listen": "inet:127.0.0.1:0"}, policy=policy)
    with caplog.at_level("WARNING", logger="fastlookup.service"):
        ServiceThread(config).start().stop()
    assert any("checks nothing" in r.getMessage() for r in caplog.records) == warned
