"""`fastlookup doctor` makes the set-ups that let mail through unchecked loud, each with its fix."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fastlookup.doctor import chrooted_smtpd, postfix_endpoints
from fastlookup.testing import Rbldnsd, free_port
from fastlookup.testing.service import ServiceThread, service_config

from docsnippets import blocks
from fixtures_servers import start_or_skip
from nonroot import open_dir
from test_postfix_chroot import ZONES, debian_master_cf

pytestmark = pytest.mark.slow

FASTLOOKUP = os.path.join(os.path.dirname(sys.executable), "fastlookup")
LISTS = '[policy.default]\ndnsbl = ["zen.spamhaus.org"]\n'


@pytest.mark.parametrize(
    "value, expected",
    [
        ("permit_mynetworks, check_policy_service { unix:/run/fastlookup/policy.sock, timeout=2s }", [("policy", "unix:/run/fastlookup/policy.sock")]),
        ("check_policy_service unix:private/policy, permit", [("policy", "unix:private/policy")]),
        ("check_policy_service inet:127.0.0.1:10040", [("policy", "inet:127.0.0.1:10040")]),
        ("check_policy_service 127.0.0.1:10040", [("policy", "inet:127.0.0.1:10040")]),
        ("check_client_access socketmap:inet:127.0.0.1:10041:default", [("socketmap", "inet:127.0.0.1:10041")]),
        ("check_client_access socketmap:unix:/run/fastlookup/sm.sock:strict", [("socketmap", "unix:/run/fastlookup/sm.sock")]),
        ("permit_mynetworks, reject_unauth_destination", []),
    ],
)
def test_postfix_endpoints_are_read_from_restrictions(value, expected):
    """Every check_policy_service and socketmap entry is found, in braces or not."""
    assert [(e.kind, e.address) for e in postfix_endpoints({"p": value})] == expected


def test_chrooted_smtpd_is_read_from_postconf_m():
    """Only smtpd services with "y" in the chroot column count as chrooted ("-" is off since Postfix 3.0)."""
    master = (
        "smtp       inet  n       -       y       -       -       smtpd\n"
        "submission inet  n       -       -       -       -       smtpd\n"
        "pickup     unix  n       -       y       60      1       pickup\n"
    )
    assert chrooted_smtpd(master) == ["smtp/inet"]


class Setup:
    """A private Postfix configuration directory (postconf only; no Postfix runs) and a fastlookup config."""

    def __init__(self) -> None:
        self.dir = open_dir("fastlookup-doctor-")
        self.conf = os.path.join(self.dir, "conf")
        os.makedirs(self.conf)
        os.makedirs(os.path.join(self.dir, "queue"), mode=0o755)

    def postfix(self, restrictions: str, chroot: bool = True) -> None:
        master = debian_master_cf().replace("{{", "{").replace("}}", "}").replace("{port}", "2525")
        if not chroot:
            master = re.sub(r"^(127\.0\.0\.1:2525\s+inet\s+n\s+-\s+)y", r"\1n", master, count=1, flags=re.M)
        with open(os.path.join(self.conf, "master.cf"), "w") as fh:
            fh.write(master)
        with open(os.path.join(self.conf, "main.cf"), "w") as fh:
            fh.write(f"compatibility_level = 3.6\nqueue_directory = {self.dir}/queue\n{restrictions}\n")

    def doctor(self, toml: str, *extra: str) -> subprocess.CompletedProcess:
        path = os.path.join(self.dir, "fastlookup.toml")
        with open(path, "w") as fh:
            fh.write(toml)
        return subprocess.run([FASTLOOKUP, "doctor", "--config", path, "--postfix-config", self.conf, *extra],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/bin"})


@pytest.fixture
def setup() -> Iterator[Setup]:
    """A fresh Setup, removed after the test."""
    s = Setup()
    yield s
    shutil.rmtree(s.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def lists() -> Iterator[Rbldnsd]:
    """An rbldnsd serving zen.spamhaus.org's test point, as the upstream resolver doctor asks."""
    server = Rbldnsd(ZONES, ttl_s=60)
    start_or_skip(server.start, "rbldnsd")
    yield server
    server.stop()


def test_empty_policy_fails(setup):
    """With no config the default policy checks nothing: doctor says so and exits 1."""
    setup.postfix("")
    done = setup.doctor("", "--no-resolvers")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  policy 'default' checks nothing" in done.stdout
    assert "no DNSBL or RHSBL zone is configured" in done.stdout


def test_absolute_socket_under_chrooted_smtpd_fails(setup):
    """The documented mistake — an absolute unix path for a chrooted smtpd — is a FAIL with the loopback TCP fix."""
    sock = f"{setup.dir}/run/policy.sock"
    setup.postfix(f"smtpd_recipient_restrictions = check_policy_service {{ unix:{sock}, timeout=2s, default_action=DUNNO }}")
    done = setup.doctor(f'[postfix]\nlisten = "unix:{sock}"\n' + LISTS, "--no-resolvers")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"smtpd runs chrooted in {setup.dir}/queue" in done.stdout
    assert "every client passes unchecked" in done.stdout
    assert 'fix: listen on loopback TCP: [postfix] listen = "inet:127.0.0.1:10040"' in done.stdout


def test_documented_setup_passes(setup, lists):
    """docs/postfix.md's TOML and main.cf with the service running: no FAIL, exit 0, the resolver answers."""
    ports = {"10040": str(free_port("tcp")), "10041": str(free_port("tcp"))}
    (toml,) = blocks("postfix.md", "toml")
    main_cf = "".join(blocks("postfix.md", "main.cf"))
    for old, new in ports.items():
        toml, main_cf = toml.replace(old, new), main_cf.replace(old, new)
    toml = f'[upstream]\nservers = ["{lists.address[0]}:{lists.address[1]}"]\n' + toml
    setup.postfix(main_cf)
    from fastlookup.config import load_config

    path = os.path.join(setup.dir, "service.toml")
    with open(path, "w") as fh:
        fh.write(toml)
    config = load_config(path, environ={}, overrides={"server": {"socket": f"{setup.dir}/fastlookup.sock"}})
    with ServiceThread(config):
        done = setup.doctor(toml)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert f"smtpd_recipient_restrictions: policy inet:127.0.0.1:{ports['10040']}: answers" in done.stdout
    assert f"smtpd_client_restrictions: socketmap inet:127.0.0.1:{ports['10041']}: answers" in done.stdout
    assert f"upstream {lists.address[0]}:{lists.address[1]} answers (2.0.0.127.zen.spamhaus.org A: NOERROR)" in done.stdout


def test_stopped_service_and_dead_resolver_fail(setup):
    """Nothing listening on the documented port and a resolver that does not answer are both FAILs."""
    port, dead = free_port("tcp"), free_port("udp")
    setup.postfix(f"smtpd_recipient_restrictions = check_policy_service {{ inet:127.0.0.1:{port}, default_action=DUNNO }}")
    done = setup.doctor(f'[upstream]\nservers = ["127.0.0.1:{dead}"]\ntimeout_s = 0.2\n[postfix]\nlisten = "inet:127.0.0.1:{port}"\n'
                        + LISTS, "--timeout", "0.3")
    assert done.returncode == 1, done.stdout
    assert f"inet:127.0.0.1:{port}: nothing answers" in done.stdout
    assert f"upstream 127.0.0.1:{dead} does not answer" in done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="probing as user postfix needs root")
@pytest.mark.parametrize("group, fails", [("", True), ("postfix", False)])
def test_unix_socket_is_probed_as_postfix(setup, group, fails):
    """Without chroot, a unix policy socket is tried as user postfix: a socket outside its group is a FAIL."""
    sock = f"{setup.dir}/policy.sock"
    setup.postfix(f"smtpd_recipient_restrictions = check_policy_service {{ unix:{sock}, default_action=DUNNO }}", chroot=False)
    toml = f'[postfix]\nlisten = "unix:{sock}"\nlisten_group = "{group}"\n' + LISTS
    config = service_config(f"{setup.dir}/fastlookup.sock", postfix={"listen": f"unix:{sock}", "listen_group": group})
    with ServiceThread(config):
        done = setup.doctor(toml, "--no-resolvers")
    assert (done.returncode == 1) == fails, done.stdout
    if fails:
        assert "user postfix cannot connect: Permission denied" in done.stdout
        assert 'listen_group = "postfix"' in done.stdout
    else:
        assert f"unix:{sock}: user postfix can connect" in done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="probing as other users needs root")
@pytest.mark.parametrize(
    "tables, extra, expected",
    [
        ({"postfix": {"exim": "unix:{d}/exim.sock"}}, (), "FAIL  postfix.exim unix:{d}/exim.sock: user Debian-exim cannot connect"),
        ({"postfix": {"exim": "unix:{d}/exim.sock", "exim_group": "Debian-exim"}}, (), "ok    postfix.exim unix:{d}/exim.sock: user Debian-exim can connect"),
        ({}, ("--rblsmtpd-user", "nobody:nogroup"), "FAIL  server.socket {d}/fastlookup.sock: tcpserver's user nobody:nogroup cannot connect"),
        ({"server": {"socket_group": "nogroup"}}, ("--rblsmtpd-user", "nobody:nogroup"), "ok    server.socket {d}/fastlookup.sock: user nobody:nogroup can connect"),
    ],
)
def test_exim_and_tcpserver_users_are_probed(setup, tables, extra, expected):
    """The Exim socket is tried as Debian-exim and the msgpack socket as tcpserver's user:group; a wrong group is a FAIL."""
    import grp
    import json

    try:
        grp.getgrnam("Debian-exim")
    except KeyError:
        pytest.skip("no Debian-exim group (scripts/unpack-exim.sh makes it)")
    d = setup.dir
    tables = json.loads(json.dumps(tables).replace("{d}", d))
    setup.postfix("")
    toml = "".join(f"[{t}]\n" + "".join(f'{k} = "{v}"\n' for k, v in keys.items()) for t, keys in tables.items())
    toml = f'[server]\nsocket = "{d}/fastlookup.sock"\n' + toml.replace("[server]\n", "") + LISTS
    config = service_config(f"{d}/fastlookup.sock", **tables)
    with ServiceThread(config):
        done = setup.doctor(toml, "--no-resolvers", *extra)
    assert expected.format(d=d) in done.stdout, done.stdout
    assert (done.returncode == 1) == expected.startswith("FAIL"), done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="probing inside the chroot needs root")
@pytest.mark.parametrize("group, fails", [("", True), ("postfix", False)])
def test_socket_inside_the_jail_is_probed_from_inside(setup, group, fails):
    """A relative unix path under a chrooted smtpd is tried inside the jail as user postfix (access.md's alternative)."""
    sock = f"{setup.dir}/queue/fastlookup/policy.sock"
    setup.postfix("smtpd_recipient_restrictions = check_policy_service { unix:fastlookup/policy.sock, default_action=DUNNO }")
    toml = f'[postfix]\nlisten = "unix:{sock}"\nlisten_group = "{group}"\n' + LISTS
    config = service_config(f"{setup.dir}/fastlookup.sock", postfix={"listen": f"unix:{sock}", "listen_group": group})
    with ServiceThread(config):
        done = setup.doctor(toml, "--no-resolvers")
    assert (done.returncode == 1) == fails, done.stdout
    if fails:
        assert "user postfix cannot connect inside the chroot: Permission denied" in done.stdout
    else:
        assert "policy unix:fastlookup/policy.sock: user postfix can connect from inside the chroot" in done.stdout
