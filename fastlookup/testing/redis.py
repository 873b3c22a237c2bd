"""Run real redis-server processes on loopback: one server, or a small cluster.

::

    with RedisServer() as rs:           # a free port, no persistence
        client = redis.Redis.from_url(rs.url)
        rs.kill(); rs.restart()          # fault tests: a crash, then the same port again

Safety: we never talk to a Redis we did not start. An explicit ``port`` that
is already taken fails the start, and readiness asks ``INFO server`` for the
``process_id`` and requires it to be our child's pid, so a stray Redis on the
port (6379 included) is never mistaken for ours.

Readiness uses a raw RESP socket, not redis-py, so this module works without
the client library and cannot be fooled by its retries.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from typing import BinaryIO

from fastlookup.testing._proc import OutputReader, ServerStartError, find_binary, popen, stop_process, wait_until
from fastlookup.testing.ports import free_port, port_is_free

__all__ = ["RedisServer", "RedisCluster", "redis_command"]

_HOST = "127.0.0.1"
_CLUSTER_BUS_OFFSET = 10000  # Redis Cluster's node-to-node bus listens on port + 10000


def _encode(args: Sequence[str]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _read_reply(fh: BinaryIO) -> object:
    """Read one RESP2 reply: simple string, error, integer, bulk string or array."""
    line = fh.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else fh.read(size + 2)[:-2].decode()
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(fh) for _ in range(size)]
    raise ConnectionError(f"redis: unexpected reply {line[:40]!r}")


def redis_command(port: int, *args: str, password: str | None = None, timeout_s: float = 1.0) -> object:
    """Send one command to the Redis on 127.0.0.1:``port`` and return its decoded reply."""
    with socket.create_connection((_HOST, port), timeout=timeout_s) as sock, sock.makefile("rb") as fh:
        if password is not None:
            sock.sendall(_encode(["AUTH", password]))
            _read_reply(fh)
        sock.sendall(_encode(list(args)))
        return _read_reply(fh)


class RedisServer:
    """Controller for one ``redis-server`` on 127.0.0.1, without persistence."""

    def __init__(
        self,
        port: int | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        *,
        unixsocket: bool = False,
        start_timeout_s: float = 5.0,
    ) -> None:
        self._want_port = port
        self.password = password
        self._extra_args = tuple(extra_args)
        self._unixsocket = unixsocket
        self._start_timeout_s = start_timeout_s
        self._port = 0
        self._dir: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._output: OutputReader | None = None

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (kept across ``restart``)."""
        if not self._port:
            raise RuntimeError("RedisServer: not started; use `with RedisServer() as rs` or rs.start()")
        return self._port

    @property
    def host(self) -> str:
        """Always 127.0.0.1."""
        return _HOST

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:PORT/0``."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{_HOST}:{self.port}/0"

    @property
    def unix_socket(self) -> str | None:
        """The unix socket path when started with ``unixsocket=True``."""
        if not self._unixsocket or self._dir is None:
            return None
        return os.path.join(self._dir, "redis.sock")

    @property
    def pid(self) -> int:
        """The redis-server process id."""
        if self._proc is None:
            raise RuntimeError("RedisServer: not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Whether our redis-server process is alive (it may be paused)."""
        return self._proc is not None and self._proc.poll() is None

    def command(self, *args: str) -> object:
        """Send one command over a fresh connection (for tests that need no client library)."""
        return redis_command(self.port, *args, password=self.password)

    # -- lifecycle -----------------------------------------------------------

    def _command_line(self, binary: str) -> list[str]:
        assert self._dir is not None
        args = [binary, "--port", str(self._port), "--bind", _HOST, "--save", "", "--appendonly", "no"]
        args += ["--daemonize", "no", "--dir", self._dir, "--protected-mode", "yes"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self._unixsocket:
            args += ["--unixsocket", os.path.join(self._dir, "redis.sock"), "--unixsocketperm", "700"]
        return args + list(self._extra_args)

    def _is_ours(self) -> bool:
        """Readiness: the process answering on our port reports our child's pid."""
        assert self._proc is not None
        try:
            info = self.command("INFO", "server")
        except (OSError, ConnectionError, RuntimeError):
            return False
        return isinstance(info, str) and f"process_id:{self._proc.pid}\r\n" in info

    def start(self) -> RedisServer:
        """Start redis-server and return once it answers ``INFO`` with our pid."""
        if self.running:
            raise RuntimeError("RedisServer: already running")
        binary = find_binary("redis-server")
        if self._want_port is not None and not port_is_free(self._want_port, "tcp"):
            raise ServerStartError(
                f"RedisServer: port {self._want_port} is in use by a process we did not start; "
                "pass port=None to pick a free one"
            )
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="fastlookup-redis-")
        self._port = self._want_port or free_port("tcp")
        self._proc = popen(self._command_line(binary))
        self._output = OutputReader(self._proc)
        try:
            wait_until(
                self._is_ours,
                timeout_s=self._start_timeout_s,
                what=f"redis-server on {_HOST}:{self._port}",
                proc=self._proc,
                output=self._output.tail,
            )
        except ServerStartError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop by pid (SIGCONT, SIGTERM, wait, SIGKILL) and remove the data dir. Safe to call twice."""
        self._end(signal.SIGTERM)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL redis (a crash, for fault tests); ``restart`` brings it back on the same port."""
        self._end(signal.SIGKILL)

    def _end(self, sig: int) -> None:
        if self._proc is not None:
            stop_process(self._proc, sig=sig)
            if self._output is not None:
                self._output.join()
            self._proc = None

    def restart(self) -> RedisServer:
        """Stop (if running) and start again on the same port; the data is gone (no persistence)."""
        port = self._port
        self._end(signal.SIGTERM)
        want, self._want_port = self._want_port, port or self._want_port
        try:
            return self.start()
        finally:
            self._want_port = want

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server)."""
        os.kill(self.pid, signal.SIGSTOP)
        wait_until(lambda: self._state() in ("T", "t", None), timeout_s=2.0, what="redis-server pause")

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        os.kill(self.pid, signal.SIGCONT)
        wait_until(lambda: self._state() not in ("T", "t"), timeout_s=2.0, what="redis-server resume")

    def _state(self) -> str | None:
        """The process state letter from /proc (None where /proc is not available)."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisCluster:
    """``n`` (>= 3) cluster-enabled redis-servers joined by ``redis-cli --cluster create``."""

    def __init__(self, n: int = 3, *, start_timeout_s: float = 30.0) -> None:
        if n < 3:
            raise ValueError(f"RedisCluster.n: {n} is too small; redis-cli --cluster create needs 3 masters")
        self.n = n
        self._start_timeout_s = start_timeout_s
        self.nodes: list[RedisServer] = []

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``[("127.0.0.1", port), ...]`` for every node."""
        return [(_HOST, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the first node (a cluster client discovers the rest)."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        """One URL per node."""
        return [node.url for node in self.nodes]

    @staticmethod
    def _cluster_port(taken: set[int]) -> int:
        """A free TCP port whose cluster bus port (+10000) is free too."""
        for _ in range(100):
            port = free_port("tcp")
            bus = port + _CLUSTER_BUS_OFFSET
            if port not in taken and bus < 65536 and port_is_free(bus, "tcp"):
                return port
        raise ServerStartError("RedisCluster: no port with a free cluster bus port (+10000) in 100 tries")

    def _state_ok(self) -> bool:
        for node in self.nodes:
            try:
                info = node.command("CLUSTER", "INFO")
            except (OSError, ConnectionError, RuntimeError):
                return False
            if not isinstance(info, str) or "cluster_state:ok" not in info:
                return False
        return True

    def start(self) -> RedisCluster:
        """Start the nodes, create the cluster, and return once every node says ``cluster_state:ok``."""
        cli = find_binary("redis-cli")
        taken: set[int] = set()
        try:
            for _ in range(self.n):
                port = self._cluster_port(taken)
                taken.add(port)
                node = RedisServer(
                    port=port,
                    extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                "--cluster-node-timeout", "2000"),
                )
                self.nodes.append(node.start())
            create = [cli, "--cluster", "create", *(f"{h}:{p}" for h, p in self.startup_nodes)]
            create += ["--cluster-replicas", "0", "--cluster-yes"]
            done = subprocess.run(  # noqa: S603 - fixed argv
                create, capture_output=True, text=True, timeout=self._start_timeout_s, check=False
            )
            if done.returncode != 0:
                output = f"{done.stdout}{done.stderr}"
                raise ServerStartError(f"redis-cli --cluster create failed ({done.returncode}):\n{output}")
            wait_until(self._state_ok, timeout_s=self._start_timeout_s, what="redis cluster_state:ok")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node by pid. Safe to call twice."""
        for node in self.nodes:
            node.stop()
        self.nodes = []

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
