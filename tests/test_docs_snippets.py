"""The docs' snippets are real: TOML loads, main.cf passes postconf, the Exim ACL passes exim -bV, the unit verifies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import NoReturn

import pytest

from fastlookup.config import load_config
from fastlookup.testing import Rbldnsd, ServerNotFound, rfc5782_ip4set, soa_line
from fastlookup.testing._proc import find_binary
from fastlookup.testing.service import ServiceThread

from docsnippets import DOCS, blocks, console
from fixtures_servers import skip_or_fail
from nonroot import open_dir

ROOT = DOCS.parent
EXIM = "/opt/fastlookup-test/exim/usr/sbin/exim4"


def _missing(what: str) -> NoReturn:
    skip_or_fail(f"{what} is missing (scripts/install-system.sh installs it)")


TOML_SNIPPETS = [(doc.name, i, text) for doc in sorted(DOCS.glob("*.md")) for i, text in enumerate(blocks(doc.name, "toml"))]
TOML_FILES = ["docs/config-example.toml", "docker/fastlookup.toml", "docker/fastlookup-host.toml"]


@pytest.mark.parametrize("doc, index, text", TOML_SNIPPETS, ids=[f"{d}[{i}]" for d, i, _ in TOML_SNIPPETS])
def test_every_toml_snippet_loads(tmp_path, doc, index, text):
    """Each ```toml block of docs/ is a valid configuration for the real loader."""
    path = tmp_path / "snippet.toml"
    path.write_text(text)
    load_config(path, environ={})


@pytest.mark.parametrize("name", TOML_FILES)
def test_shipped_config_files_load(name):
    """The example configuration files load as they are."""
    load_config(ROOT / name, environ={})


def test_there_are_snippets_to_test():
    """The docs keep their snippets in fenced blocks the tests find (a renamed fence would skip the checks)."""
    assert len(TOML_SNIPPETS) >= 5
    assert len(blocks("postfix.md", "main.cf")) == 2 and len(blocks("access.md", "main.cf")) == 1
    assert len(blocks("postfix.md", "console")) == 2 and len(blocks("exim.md", "console")) == 1


MAIN_CF_SNIPPETS = [(f"{doc}[{i}]", text) for doc in ("postfix.md", "access.md") for i, text in enumerate(blocks(doc, "main.cf"))]


@pytest.mark.parametrize("where, text", MAIN_CF_SNIPPETS, ids=[w for w, _ in MAIN_CF_SNIPPETS])
def test_main_cf_snippets_pass_postconf_and_postfix_check(where, text):
    """Each main.cf block of postfix.md and access.md, in a private config directory, passes `postconf -n` without warnings and `postfix check`."""
    postconf = shutil.which("postconf", path="/usr/sbin:/usr/bin") or _missing("postconf")
    directory = open_dir("fastlookup-maincf-")
    try:
        conf = os.path.join(directory, "conf")
        os.makedirs(conf)
        os.makedirs(os.path.join(directory, "queue"))
        os.makedirs(os.path.join(directory, "data"))
        shutil.chown(os.path.join(directory, "data"), user="postfix")
        shutil.copy("/usr/share/postfix/master.cf.dist", os.path.join(conf, "master.cf"))
        with open(os.path.join(conf, "main.cf"), "w") as fh:
            fh.write(f"compatibility_level = 3.6\nqueue_directory = {directory}/queue\ndata_directory = {directory}/data\n"
                     "maillog_file = /dev/stdout\n" + text)
        done = subprocess.run([postconf, "-c", conf, "-n"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        name = text.split("=", 1)[0].strip()
        assert any(line.startswith(name + " = ") for line in done.stdout.splitlines())
        done = subprocess.run([find_binary("postfix"), "-c", conf, "check"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    finally:
        shutil.rmtree(directory, ignore_errors=True)


EXIM_WRAPPER = """\
primary_hostname = mx.fastlookup.test
hostlist relay_from_hosts = 127.0.0.1
acl_smtp_rcpt = acl_check_rcpt
begin acl
{acl}
  accept
"""


def test_exim_acl_passes_exim_bV(tmp_path):
    """The ACL of exim.md, in a minimal Exim configuration, passes the unpacked Debian Exim's `-C FILE -bV`."""
    if not os.access(EXIM, os.X_OK):
        _missing(EXIM + " (scripts/unpack-exim.sh)")
    (acl,) = [b for b in blocks("exim.md", "") if b.startswith("acl_check_rcpt:")]
    path = tmp_path / "exim.conf"
    path.write_text(EXIM_WRAPPER.format(acl=acl))
    os.chmod(tmp_path, 0o755)
    os.chmod(path, 0o644)
    done = subprocess.run([EXIM, "-C", str(path), "-bV"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file" in done.stdout and "error" not in (done.stdout + done.stderr).lower()


def test_exim_acl_names_the_exim_socket():
    """The ACL reads the Exim front's socket as exim.md's TOML configures it, never the msgpack socket."""
    (toml,) = blocks("exim.md", "toml")
    listen = load_config(None, environ={}, overrides=__import__("tomllib").loads(toml)).postfix.exim
    (acl,) = [b for b in blocks("exim.md", "") if b.startswith("acl_check_rcpt:")]
    assert "${readsocket{" + listen.removeprefix("unix:") + "}" in acl
    assert "fastlookup.sock" not in acl


@pytest.mark.slow
def test_exim_try_it_prints_what_the_page_shows():
    """exim.md's "Try it", against a service configured from the page's TOML, prints exactly the output shown."""
    if shutil.which("socat") is None:
        _missing("socat")
    (toml,) = blocks("exim.md", "toml")
    command, shown = console(blocks("exim.md", "console")[0])
    zones = {"zen.spamhaus.org": [("ip4set", soa_line("zen.spamhaus.org") + rfc5782_ip4set(test_txt="https://www.spamhaus.org/query/ip/$"))]}
    rbl = Rbldnsd(zones, ttl_s=60)
    directory = open_dir("fastlookup-exim-")
    service = None
    try:
        try:
            rbl.start()
        except ServerNotFound as exc:
            _missing(str(exc))
        path = os.path.join(directory, "f.toml")
        with open(path, "w") as fh:
            fh.write(toml.replace("/run/fastlookup/", directory + "/"))
        config = load_config(path, environ={}, overrides={
            "server": {"socket": f"{directory}/fastlookup.sock"}, "upstream": {"servers": [f"{rbl.address[0]}:{rbl.address[1]}"]}})
        service = ServiceThread(config).start()
        done = subprocess.run(["bash", "-c", command.replace("/run/fastlookup/", directory + "/")],
                              capture_output=True, text=True, timeout=30)
    finally:
        if service is not None:
            service.stop()
        rbl.stop()
        shutil.rmtree(directory, ignore_errors=True)
    assert (done.returncode, done.stdout) == (0, shown), done.stderr


def test_systemd_unit_and_drop_ins_verify(tmp_path):
    """docker/fastlookup.service with each drop-in passes `systemd-analyze verify` (ExecStart pointed at this install)."""
    analyze = shutil.which("systemd-analyze") or _missing("systemd-analyze (package systemd)")
    unit = (ROOT / "docker" / "fastlookup.service").read_text()
    assert "ExecStart=/opt/fastlookup/bin/fastlookup serve" in unit
    fastlookup = os.path.join(os.path.dirname(sys.executable), "fastlookup")
    (tmp_path / "fastlookup.service").write_text(unit.replace("/opt/fastlookup/bin/fastlookup", fastlookup))
    shutil.copytree(ROOT / "docker" / "fastlookup.service.d", tmp_path / "fastlookup.service.d")
    done = subprocess.run([analyze, "verify", str(tmp_path / "fastlookup.service")], capture_output=True, text=True, timeout=60)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "fastlookup" in line]
    assert done.returncode == 0 and not lines, done.stdout + done.stderr


def test_host_install_steps_name_real_files():
    """deployment.md's host install block builds the wheel, makes its directories (install -D) and names files that exist."""
    (block,) = [b for b in blocks("deployment.md", "sh") if "systemd-tmpfiles" in b]
    assert "pip wheel" in block
    for line in block.splitlines():
        words = line.lstrip("# ").split()
        if words[:1] == ["install"]:
            assert "-D" in words, line
        for word in words:
            if word.startswith("docker/"):
                assert (ROOT / word).exists(), word
    assert "docker/fastlookup-host.toml" in block and "docker/fastlookup.toml" not in block


def test_one_eviction_policy_everywhere():
    """Every maxmemory-policy the docs and compose.yaml recommend is the one of deployment.md's sizing statement."""
    import re

    texts = [p.read_text() for p in DOCS.glob("*.md")] + [(ROOT / "docker" / "compose.yaml").read_text()]
    found = set()
    for text in texts:
        found |= set(re.findall(r"maxmemory-policy[`\"]?,?\s*[`\"]?([a-z-]+)", text))
    assert found == {"allkeys-lru"}


def test_container_config_takes_its_resolver_from_the_environment_and_allows_no_bridge():
    """The sidecar's upstream comes from FASTLOOKUP_UPSTREAM or resolv.conf (never 127.0.0.1), and allow skips no Docker client."""
    import ipaddress

    compose = (ROOT / "docker" / "compose.yaml").read_text()
    assert "FASTLOOKUP_UPSTREAM__SERVERS: ${FASTLOOKUP_UPSTREAM:-}" in compose
    config = load_config(ROOT / "docker" / "fastlookup.toml", environ={"FASTLOOKUP_UPSTREAM__SERVERS": ""})
    assert config.upstream.servers == ()
    bridge = ipaddress.ip_address("172.17.0.1")
    assert not any(bridge in ipaddress.ip_network(n) for n in config.policy["default"].allow)
