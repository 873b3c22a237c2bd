"""The services under test as processes: a fastlookup service, and the floor.

A fastlookup service is started the way ``fastlookup serve --config FILE``
starts one (``fastlookup.service.run`` on the loaded config) with a TOML file
written here: its socket, one upstream (a fresh unbound), the benchmark's
zones as the default DNSBL/RHSBL zones, zone health probing off (it would
add upstream queries), optionally a Redis URL and a memory size. Readiness
is a real ``ping`` answered on the socket; CPU seconds come from its pid.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import msgpack

from fastlookup.testing._proc import ServerStartError, wait_until

from .procs import Child, RunsChild
from .workload import Workload

__all__ = ["FastlookupService", "FloorService", "rpc_call"]

_ROOT = str(Path(__file__).resolve().parents[1])
REDIS_TIMEOUT_S = 0.5
_RUN = (
    "import sys\n"
    "from fastlookup.config import load_config\n"
    "from fastlookup.service import run\n"
    "run(load_config(sys.argv[1]), config_path=sys.argv[1])\n"
)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    return env


def rpc_call(path: str, method: str, args: dict | None = None, timeout_s: float = 2.0):
    """One msgpack-RPC call over a fresh connection (readiness and stats; not the measured path)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(path)
        sock.sendall(msgpack.packb([0, 1, method, [args] if args else []]))
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError(f"{path}: closed before answering {method}")
            unpacker.feed(data)
            for msg in unpacker:
                if msg[2] is not None:
                    raise RuntimeError(f"{method}: {msg[2]}")
                return msg[3]
    raise TimeoutError(f"{path}: no answer to {method} in {timeout_s}s")


def _pings(path: str) -> bool:
    if not os.path.exists(path):
        return False
    try:
        rpc_call(path, "ping", timeout_s=0.5)
    except (OSError, ConnectionError, RuntimeError, TimeoutError):
        return False
    return True


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FastlookupService(RunsChild):
    """One fastlookup service process on its own socket."""

    def __init__(
        self,
        name: str,
        workdir: str,
        workload: Workload,
        upstream: tuple[str, int],
        *,
        redis_url: str = "",
        memory_entries: int = 1_000_000,
        key_prefix: str = "",
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.socket = os.path.join(workdir, f"{name}.sock")
        self.config = os.path.join(workdir, f"{name}.toml")
        lines = [
            "[server]",
            f"socket = {_toml_str(self.socket)}",
            'socket_mode = "0600"',
            'loop = "uvloop"',
            "[upstream]",
            f"servers = [{_toml_str(f'{upstream[0]}:{upstream[1]}')}]",
            "timeout_s = 1.0",
            "attempts = 2",
            "[cache]",
            f"memory_entries = {memory_entries}",
            "[health]",
            "interval_s = 0",
            "[log]",
            'level = "warning"',
        ]
        if redis_url:
            # The whole run shares one CPU, so a Redis round trip waits behind every other
            # process: the default 50 ms timeout opens the breaker under load and turns
            # Redis hits into upstream queries. 0.5 s keeps this a measurement of hits.
            lines += ["[redis]", f"url = {_toml_str(redis_url)}", f"timeout_s = {REDIS_TIMEOUT_S}"]
            if key_prefix:  # a fleet of its own: keys no earlier service wrote
                lines += [f"key_prefix = {_toml_str(key_prefix)}"]
        for zone in workload.zones:
            lines += [f"[dnsbl.{_toml_str(zone)}]"]
        lines += [f"[rhsbl.{_toml_str(workload.rhsbl_zone)}]"]
        with open(self.config, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        self.config_text = "\n".join(line for line in lines if not line.startswith("socket = "))
        self.child: Child | None = None

    def start(self, timeout_s: float = 20.0) -> "FastlookupService":
        self.child = Child(self.name, [sys.executable, "-c", _RUN, self.config], env=_env(), cwd=self.workdir)
        try:
            wait_until(lambda: _pings(self.socket), timeout_s=timeout_s, what=f"fastlookup service {self.name}",
                       proc=self.child.proc, output=self.child.output.tail)
        except ServerStartError:
            self.stop()
            raise
        return self

    def stats(self) -> dict:
        try:
            return rpc_call(self.socket, "stats") or {}
        except (OSError, ConnectionError, RuntimeError, TimeoutError):
            return {}


class FloorService(RunsChild):
    """``python -m bench.floor`` with the workload's expected answers in its dict."""

    def __init__(self, workdir: str, workload: Workload) -> None:
        self.socket = os.path.join(workdir, "floor.sock")
        self.answers = os.path.join(workdir, "floor-answers.msgpack")
        table: dict[str, dict] = {"ptr": {}, "fcrdns": {}, "dnsbl": {}, "rhsbl": {}}
        for host in workload.hosts:
            expected = workload.expected(host)
            for method in ("ptr", "fcrdns", "dnsbl"):
                table[method][host.ip] = expected[method]
            table["rhsbl"][host.domain] = expected["rhsbl"]
        with open(self.answers, "wb") as fh:
            fh.write(msgpack.packb(table))
        self.child: Child | None = None

    def start(self, timeout_s: float = 10.0) -> "FloorService":
        args = [sys.executable, "-m", "bench.floor", "--socket", self.socket, "--answers", self.answers]
        self.child = Child("floor", args, env=_env())
        try:
            wait_until(lambda: _pings(self.socket), timeout_s=timeout_s, what="floor server",
                       proc=self.child.proc, output=self.child.output.tail)
        except ServerStartError:
            self.stop()
            raise
        return self

    def stats(self) -> dict:
        return {}
