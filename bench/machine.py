"""Facts about the machine and the software of a run, for results.json and the docs."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["facts"]

_PACKAGES = ("dnspython", "msgpack", "uvloop", "redis", "hiredis", "pydnsbl", "aiodns", "pycares", "matplotlib")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _tool_version(args: list[str]) -> str | None:
    if shutil.which(args[0]) is None and shutil.which(args[0], path="/usr/sbin:/usr/local/sbin") is None:
        return None
    binary = shutil.which(args[0]) or shutil.which(args[0], path="/usr/sbin:/usr/local/sbin")
    try:
        out = subprocess.run([binary, *args[1:]], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else None


def _dpkg_version(package: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return (commit + ("+dirty" if dirty.stdout.strip() else "")) if commit else None


def facts(placement: dict) -> dict:
    """Everything a reader needs to judge the numbers: CPU, cores, software, placement, date."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        from fastlookup import __version__ as fl_version
    except ImportError:
        fl_version = None
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "fastlookup": fl_version,
        "git_commit": _git_commit(),
        "packages": versions,
        "servers": {
            "unbound": _tool_version(["unbound", "-V"]),
            "rbldnsd": _dpkg_version("rbldnsd"),
            "redis-server": _tool_version(["redis-server", "--version"]),
        },
        "placement": placement,
    }
