"""Children of a run: CPU placement, CPU seconds from /proc, start and stop by pid.

On a 2-vCPU VM where client and server run decides most of a one-call
latency (``perf-facts.md``: ~10 µs wake-up on the same vCPU, ~70 µs across,
and the placement flips between runs). So by default the harness pins
itself to one CPU before it starts anything; every child inherits the mask,
and ``placement()`` records it in results.json. CPU seconds are read from
``/proc/PID/stat`` (utime + stime of all the process's threads).
"""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from collections.abc import Sequence

from fastlookup.testing._proc import OutputReader, ServerStartError, popen, stop_process

__all__ = ["Child", "cpu_seconds", "pin", "placement", "ServerStartError"]

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (this process when None) so far."""
    path = f"/proc/{pid if pid is not None else 'self'}/stat"
    try:
        with open(path, "rb") as fh:
            stat = fh.read()
    except OSError:
        return float("nan")
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of proc(5)


def _idle_ticks() -> dict[int, int]:
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("cpu") and line[3].isdigit():
                fields = line.split()
                out[int(fields[0][3:])] = int(fields[4]) + int(fields[5])  # idle + iowait
    return out


def idlest_cpu(allowed: list[int], sample_s: float = 0.3) -> int:
    """The allowed CPU with the most idle time over ``sample_s`` (other work shares this machine)."""
    try:
        before = _idle_ticks()
        time.sleep(sample_s)  # a measurement window, not a wait for a condition
        after = _idle_ticks()
    except (OSError, ValueError, IndexError):
        return allowed[-1]
    return max(reversed(allowed), key=lambda c: after.get(c, 0) - before.get(c, 0))


def pin(spec: str) -> list[int] | None:
    """Pin this process (and so every child started later) to the CPUs of ``spec``.

    ``spec``: ``"auto"`` (the idlest allowed CPU right now: other work may
    share the machine), ``"none"`` (leave it to the scheduler) or a list like
    ``"1"`` / ``"0,1"``. Returns the CPUs, or None.
    """
    if spec == "none" or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if spec == "auto":
        cpus = [idlest_cpu(allowed)]
    else:
        try:
            cpus = sorted({int(c) for c in spec.split(",") if c.strip()})
        except ValueError:
            raise ValueError(f"--cpus: {spec!r} is not 'auto', 'none' or a list like '1' or '0,1'") from None
        bad = [c for c in cpus if c not in allowed]
        if not cpus or bad:
            raise ValueError(f"--cpus: {spec!r} names CPUs outside the allowed set {allowed}")
    os.sched_setaffinity(0, cpus)
    return cpus


def placement(cpus: list[int] | None, pids: dict[str, int] | None = None) -> dict:
    """Where the run's processes may run: the pinned CPUs and each child's mask."""
    out: dict = {
        "pinned": cpus is not None,
        "cpus": cpus if cpus is not None else sorted(os.sched_getaffinity(0)),
        "online_cpus": os.cpu_count(),
        "note": (
            "harness, clients, services and upstream servers all pinned to the same CPU(s); "
            "'auto' picks the idlest CPU at start"
            if cpus is not None
            else "not pinned: the scheduler placed processes; one-call latencies vary with placement"
        ),
    }
    if pids:
        masks = {}
        for name, pid in pids.items():
            try:
                masks[name] = sorted(os.sched_getaffinity(pid))
            except OSError:
                continue
        out["process_cpus"] = masks
    out["machine"] = platform.machine()
    return out


class Child:
    """One server process we started: its output drained, stopped by its pid only."""

    def __init__(self, name: str, args: Sequence[str], *, env: dict | None = None, cwd: str | None = None) -> None:
        self.name = name
        self.args = list(args)
        # stdin is a pipe we hold: a child that watches it (the floor) exits when we die.
        self.proc: subprocess.Popen[str] = popen(self.args, stdin=subprocess.PIPE, env=env, cwd=cwd)
        self.output = OutputReader(self.proc)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def fail(self, what: str) -> ServerStartError:
        return ServerStartError(f"{self.name}: {what}\ncommand: {' '.join(self.args)}\n{self.output.tail(30)}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM by pid, wait, SIGKILL; safe to call twice."""
        with self._lock:
            stop_process(self.proc, timeout_s)
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.output.join(1.0)


class RunsChild:
    """A benchmark server run as one ``Child``: its pid, CPU seconds and stop, in one place."""

    child: Child | None = None

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def cpu_seconds(self) -> float:
        return self.child.cpu_seconds() if self.child else 0.0

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None
