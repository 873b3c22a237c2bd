"""Process plumbing shared by the controllers: find a binary, wait, stop by pid.

Every wait here is a readiness check with a bounded backoff, never a blind
sleep: ``wait_until`` calls ``check`` until it is true, stops early when the
process died (so the error shows its output instead of a timeout), and gives up
after ``timeout_s``.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "ServerNotFound",
    "ServerStartError",
    "OutputReader",
    "find_binary",
    "popen",
    "udp_answers",
    "stop_process",
    "end_child",
    "start_on_free_port",
    "start_python_module",
    "wait_until",
]

_INSTALL_HINT = "run scripts/install-system.sh"
# The directory holding the fastlookup package, so a Python child imports this same tree.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


class ServerNotFound(FileNotFoundError):
    """A server binary the helper needs is not installed."""


class ServerStartError(RuntimeError):
    """A server did not become ready; the message carries its last output."""


def find_binary(name: str) -> str:
    """Return the path of ``name`` (also looking in sbin), or raise ``ServerNotFound``."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if path is None:
        raise ServerNotFound(f"{name} not found: {_INSTALL_HINT}")
    return path


class OutputReader:
    """Drain a child's merged stdout/stderr in a thread, keeping the last lines.

    Draining matters: a child that fills a 64 KiB pipe blocks forever. Waiters
    can block on a condition until a line matching a predicate has arrived.
    """

    def __init__(self, proc: subprocess.Popen[str], *, watch: Sequence[str] = (), keep: int = 200) -> None:
        self._proc = proc
        self._lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._seen: collections.Counter[str] = collections.Counter()
        # Set before the thread starts, or lines read meanwhile would go uncounted.
        self._watch: tuple[str, ...] = tuple(watch)
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"output-{proc.pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                for needle in self._watch:
                    if needle in line:
                        self._seen[needle] += 1
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def count(self, needle: str) -> int:
        """How many lines containing ``needle`` (one of ``watch``) arrived so far."""
        with self._cond:
            return self._seen[needle]

    def wait_for_count(self, needle: str, at_least: int, timeout_s: float) -> bool:
        """Block until ``count(needle) >= at_least``, the child closed its output, or ``timeout_s`` passed."""
        with self._cond:
            self._cond.wait_for(lambda: self._seen[needle] >= at_least or self._closed, timeout_s)
            return self._seen[needle] >= at_least

    def wait_line(self, prefix: str, timeout_s: float) -> str | None:
        """Return the first kept line starting with ``prefix``, waiting up to ``timeout_s``."""

        def found() -> str | None:
            return next((line for line in self._lines if line.startswith(prefix)), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None or self._closed, timeout_s)
            return found()

    def tail(self, n: int = 20) -> str:
        """The last ``n`` lines, for error messages."""
        with self._cond:
            return "\n".join(list(self._lines)[-n:])

    def join(self, timeout_s: float = 2.0) -> None:
        """Wait for the pipe to close (after the child exited)."""
        self._thread.join(timeout_s)


def udp_answers(host: str, port: int, wire: bytes, timeout_s: float = 0.2) -> bool:
    """Readiness probe: does anything answer this datagram?

    The socket is connected, so an ICMP port unreachable (nothing bound yet)
    fails at once instead of costing the whole timeout.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect((host, port))
            sock.send(wire)
            return bool(sock.recv(65535))
        except OSError:  # refused, timed out
            return False


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    proc: subprocess.Popen[str] | None = None,
    output: Callable[[], str] | None = None,
) -> None:
    """Call ``check`` with a 5 ms..100 ms backoff until it returns true.

    Raises ``ServerStartError`` naming ``what`` when ``timeout_s`` passes or
    ``proc`` exits first; the message includes ``output()`` when given.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        if proc is not None and proc.poll() is not None:
            tail = output() if output else ""
            raise ServerStartError(f"{what}: exited with code {proc.returncode} before it was ready\n{tail}")
        if check():
            return
        now = time.monotonic()
        if now >= deadline:
            tail = output() if output else ""
            raise ServerStartError(f"{what}: not ready after {timeout_s:.1f}s\n{tail}")
        time.sleep(min(delay, deadline - now))  # backoff between readiness probes
        delay = min(delay * 2, 0.1)


def stop_process(proc: subprocess.Popen[str], timeout_s: float = 5.0, *, sig: int = signal.SIGTERM) -> int | None:
    """Stop ``proc`` by its pid: SIGCONT (it may be paused), ``sig``, wait, then SIGKILL.

    Returns the exit code. Only the process we started is signalled, never a
    name or a process group.
    """
    if proc.poll() is None:
        for s in (signal.SIGCONT, sig):
            try:
                os.kill(proc.pid, s)
            except ProcessLookupError:
                break
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
    return proc.returncode


def popen(args: Sequence[str], *, stdin: int = subprocess.DEVNULL, **kwargs: object) -> subprocess.Popen[str]:
    """Start a server child with its output merged into one text pipe."""
    return subprocess.Popen(  # noqa: S603 - argv is built by our controllers
        list(args),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def end_child(proc: subprocess.Popen[str], output: OutputReader | None, timeout_s: float = 5.0) -> int | None:
    """Stop a child we started (``stop_process``), close the stdin we hold, and let its output thread end."""
    code = stop_process(proc, timeout_s)
    if proc.stdin is not None:
        proc.stdin.close()
    if output is not None:
        output.join()
    return code


def start_on_free_port(
    pick_port: Callable[[], int],
    launch: Callable[[int], subprocess.Popen[str]],
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    attempts: int = 3,
    watch: Sequence[str] = (),
) -> tuple[subprocess.Popen[str], OutputReader]:
    """Start a server on a port picked just before, and return once ``ready()`` says it serves.

    ``launch(port)`` records the port (the controller's config and ``ready``
    probe use it), writes what the server needs and starts it. A free port can
    be taken by another process between picking and binding: when the server
    says "address already in use" it is stopped and started again on a new
    ``pick_port()``, up to ``attempts`` times. Any other failure stops the child
    and raises ``ServerStartError`` at once. ``what`` names the server for the
    error and may hold ``{port}``; ``watch`` is passed to ``OutputReader``.
    """
    for attempt in range(attempts):
        port = pick_port()
        proc = launch(port)
        output = OutputReader(proc, watch=watch)
        try:
            wait_until(ready, timeout_s=timeout_s, what=what.format(port=port), proc=proc, output=output.tail)
        except ServerStartError:
            in_use = "address already in use" in output.tail().lower()
            end_child(proc, output)
            if in_use and attempt + 1 < attempts:
                continue  # another process took the free port first: pick another
            raise
        return proc, output
    raise ServerStartError(f"{what}: no attempt to start")  # only when attempts < 1


def start_python_module(
    module: str, args: Sequence[str], *, timeout_s: float, what: str
) -> tuple[subprocess.Popen[str], OutputReader, int]:
    """Run ``python -m module args`` from this source tree; return after its ``READY <port>`` line.

    Used for the test servers the benchmark runs as processes (so they never
    compete with the measured code for the GIL). Its stdin is a pipe we hold:
    such a child exits when it closes, so a killed parent leaves no stray
    server. Returns (process, output, port); on no READY line within
    ``timeout_s`` the child is stopped and ``ServerStartError`` names ``what``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
    proc = popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE, env=env)
    output = OutputReader(proc)
    line = output.wait_line("READY ", timeout_s)
    if line is None:
        tail = output.tail()
        end_child(proc, output)
        raise ServerStartError(f"{what}: no READY line in {timeout_s:.0f}s\n{tail}")
    return proc, output, int(line.split()[1])
