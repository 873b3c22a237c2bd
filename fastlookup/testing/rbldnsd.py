"""Run a real rbldnsd on loopback with zone data given as text.

::

    with Rbldnsd({"bl.test": [("ip4set", rfc5782_ip4set()), ("ip6trie", rfc5782_ip6trie())],
                  "dbl.test": ("dnset", rfc5782_dnset())}) as rbl:
        dns.query.udp(q, rbl.address[0], port=rbl.port)

How it runs (``man rbldnsd``): ``rbldnsd -n -b 127.0.0.1/PORT -w DIR -c 0 -t TTL
zone:type:file ...`` — ``-n`` stays in the foreground so we own the pid; no
``-q``, so zones load before serving and data errors are printed; no ``-r``
(chroot needs root). rbldnsd refuses to run as root: as root we pass ``-u
rbldns`` (or ``nobody``), which is why the data directory is a world-readable
temp dir of our own, not pytest's private ``tmp_path``. ``-c 0`` turns off the
mtime polling; ``reload`` instead rewrites the files, moves their mtime
forward (rbldnsd compares whole seconds) and sends SIGHUP, then waits for the
"zones reloaded" line.

Gotchas: rbldnsd serves UDP only (no TCP, so no answer over 512 bytes can be
retried); a zone may be made of several datasets (give a list of (type, data));
bad data lines are only warnings to rbldnsd, so with ``strict=True`` (the
default) they fail the start instead of silently listing less.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence

import dns.message
import dns.rdatatype

from fastlookup.testing._proc import (
    OutputReader,
    ServerStartError,
    end_child,
    find_binary,
    popen,
    start_on_free_port,
    udp_answers,
)
from fastlookup.testing.ports import free_port

__all__ = ["Rbldnsd", "ZoneData"]

ZoneData = tuple[str, str]
"""(rbldnsd dataset type, data text), e.g. ``("ip4set", "127.0.0.2\\n")``."""

_RELOADED = "zones reloaded"
_DATA_WARNING = "rbldnsd: file "
_START_ATTEMPTS = 3


def _normalise(zones: Mapping[str, ZoneData | Sequence[ZoneData]]) -> dict[str, list[ZoneData]]:
    out: dict[str, list[ZoneData]] = {}
    for zone, spec in zones.items():
        datasets = [spec] if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) else spec
        name = zone.rstrip(".").lower()
        out[name] = [
            (str(kind), tuple(map(str, data)) if isinstance(data, (list, tuple)) else str(data))  # type: ignore[misc]
            for kind, data in datasets
        ]
        if not out[name]:
            raise ValueError(f"Rbldnsd zones[{zone!r}]: no dataset; give (type, data) or a list of them")
    return out


def _run_as_user() -> str | None:
    """The -u user when we are root (rbldnsd refuses root), else None (it keeps our user)."""
    if os.geteuid() != 0:
        return None
    for user in ("rbldns", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return user
    raise ServerStartError("rbldnsd runs as root only with -u; neither user 'rbldns' nor 'nobody' exists")


class Rbldnsd:
    """Controller for one rbldnsd process serving test zones on 127.0.0.1."""

    def __init__(
        self,
        zones: Mapping[str, ZoneData | Sequence[ZoneData]],
        *,
        port: int | None = None,
        ttl_s: int = 60,
        strict: bool = True,
        start_timeout_s: float = 5.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._zones = _normalise(zones)
        if not self._zones:
            raise ValueError("Rbldnsd: zones is empty; give at least one zone")
        self._want_port = port
        self._ttl_s = ttl_s
        self._strict = strict
        self._start_timeout_s = start_timeout_s
        self._extra_args = tuple(extra_args)
        self._port = 0
        self._dir: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._output: OutputReader | None = None
        self._mtime = 0.0

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The UDP port rbldnsd listens on."""
        if not self._port:
            raise RuntimeError("Rbldnsd: not started; use `with Rbldnsd(...) as rbl` or rbl.start()")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", port)`` (UDP only)."""
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        """The rbldnsd process id."""
        if self._proc is None:
            raise RuntimeError("Rbldnsd: not started")
        return self._proc.pid

    @property
    def zones(self) -> list[str]:
        """The zone names served."""
        return list(self._zones)

    def output(self) -> str:
        """rbldnsd's recent output (load statistics, warnings), for debugging."""
        return self._output.tail(50) if self._output else ""

    # -- files ---------------------------------------------------------------

    def _files(self) -> list[tuple[str, str, str, str]]:
        """(zone, type, file name, data) for every file, in command-line order.

        A dataset given as a list of texts is one dataset read from several
        files (rbldnsd's ``zone:type:file1,file2``).
        """
        return [(zone, kind, name, text) for zone, kind, names in self._datasets() for name, text in names]

    def _datasets(self) -> list[tuple[str, str, list[tuple[str, str]]]]:
        out = []
        for zone, datasets in self._zones.items():
            for i, (kind, data) in enumerate(datasets):
                if isinstance(data, tuple):
                    names = [(f"{zone}.{i}.{j}.{kind}", text) for j, text in enumerate(data)]
                else:
                    names = [(f"{zone}.{i}.{kind}", data)]
                out.append((zone, kind, names))
        return out

    def _write_files(self) -> None:
        """Write every data file world-readable, each with an mtime newer than any before."""
        assert self._dir is not None
        # rbldnsd notices a change by mtime in whole seconds: always step it forward.
        self._mtime = max(time.time(), self._mtime + 1.0)
        for _zone, _kind, name, data in self._files():
            path = os.path.join(self._dir, name)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(data if data.endswith("\n") else data + "\n")
            os.chmod(path, 0o644)
            os.utime(path, (self._mtime, self._mtime))

    # -- lifecycle -----------------------------------------------------------

    def _command(self, binary: str) -> list[str]:
        assert self._dir is not None
        args = [binary, "-n", "-b", f"127.0.0.1/{self._port}", "-w", self._dir, "-c", "0", "-t", str(self._ttl_s)]
        user = _run_as_user()
        if user is not None:
            args += ["-u", user]
        args += list(self._extra_args)
        args += [f"{zone}:{kind}:{','.join(n for n, _ in names)}" for zone, kind, names in self._datasets()]
        return args

    def _launch(self, binary: str, port: int) -> subprocess.Popen[str]:
        self._port = port
        return popen(self._command(binary))

    def _answers(self) -> bool:
        """Readiness: any reply to a query in the first zone (zones load before rbldnsd serves)."""
        query = dns.message.make_query(f"2.0.0.127.{next(iter(self._zones))}.", dns.rdatatype.A)
        return udp_answers("127.0.0.1", self._port, query.to_wire())

    def _check_warnings(self, since: int, what: str) -> None:
        assert self._output is not None
        if self._strict and self._output.count(_DATA_WARNING) > since:
            tail = self._output.tail()
            self.stop()
            raise ServerStartError(f"rbldnsd {what}: the zone data has bad lines (strict=True)\n{tail}")

    def start(self) -> Rbldnsd:
        """Write the data, start rbldnsd, and return once it answered a real query."""
        if self._proc is not None:
            raise RuntimeError("Rbldnsd: already started")
        binary = find_binary("rbldnsd")
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="fastlookup-rbldnsd-")
            os.chmod(self._dir, 0o755)  # readable by the -u user rbldnsd switches to
        self._write_files()
        try:
            self._proc, self._output = start_on_free_port(
                lambda: self._want_port or free_port("udp"),
                lambda port: self._launch(binary, port),
                self._answers,
                timeout_s=self._start_timeout_s,
                what="rbldnsd on 127.0.0.1/{port}",
                attempts=1 if self._want_port else _START_ATTEMPTS,  # a port asked for is never swapped
                watch=(_RELOADED, _DATA_WARNING),
            )
        except ServerStartError:
            self.stop()
            raise
        # Data warnings come before rbldnsd's first "zones reloaded" line: wait for it, then judge.
        self._output.wait_for_count(_RELOADED, 1, self._start_timeout_s)
        self._check_warnings(0, "start")
        return self

    def reload(self, zones: Mapping[str, ZoneData | Sequence[ZoneData]]) -> None:
        """Serve new data: SIGHUP and wait for the reload if the zone layout is the same, else restart."""
        new = _normalise(zones)
        if self._proc is None or self._output is None:
            self._zones = new
            return
        same_layout = [(z, [k for k, _ in d]) for z, d in new.items()] == [
            (z, [k for k, _ in d]) for z, d in self._zones.items()
        ]
        self._zones = new
        if not same_layout:
            self._restart()
            return
        reloads, warnings = self._output.count(_RELOADED), self._output.count(_DATA_WARNING)
        self._write_files()
        os.kill(self._proc.pid, signal.SIGHUP)
        if not self._output.wait_for_count(_RELOADED, reloads + 1, self._start_timeout_s):
            raise ServerStartError(f"rbldnsd: no '{_RELOADED}' within {self._start_timeout_s}s\n{self.output()}")
        self._check_warnings(warnings, "reload")

    def _restart(self) -> None:
        """Stop and start again on the same port (the command line changes with the zone layout)."""
        port = self._port
        self._kill_proc()
        want, self._want_port = self._want_port, port
        try:
            self.start()
        finally:
            self._want_port = want

    def _kill_proc(self) -> None:
        if self._proc is not None:
            end_child(self._proc, self._output)
            self._proc = None

    def stop(self) -> None:
        """Stop rbldnsd by pid (SIGTERM, wait, SIGKILL) and remove the data. Safe to call twice."""
        self._kill_proc()
        self._port = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Rbldnsd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
