"""The sync client of the fastlookup service (``from fastlookup import Client``).

Only the standard library, msgpack and ``fastlookup.errors`` are imported —
no dnspython, redis, uvloop, asyncio, not even ``typing`` — because MTA hooks
start once per SMTP connection and their start-up time is part of every one.

::

    from fastlookup import Client

    client = Client()                       # $FASTLOOKUP_SOCKET or /run/fastlookup/fastlookup.sock
    verdict = client.check("192.0.2.1", helo="mx.example.com", sender="a@example.com")
    if verdict["action"] != "accept":
        print(verdict["smtp_code"], verdict["text"])

Results are plain ``dict``s with exactly the keys of the wire contract
(``docs/protocol.md``): they cost nothing to build, print and serialise as
they are (``json.dumps``), and new optional fields the service adds later
appear without a client upgrade. ``Answer`` keeps the wire key ``"from"``.

Behaviour:

* one connection per client, opened on first use, guarded by a lock: safe to
  share between threads (calls on one client run one at a time; give busy
  threads their own client for parallelism, or use ``pipeline``);
* ``timeout`` (seconds) bounds each whole call, connecting included; any
  method takes ``timeout=`` to override it for one call;
* after the service restarts, the next call finds the old connection broken
  and retries once on a new one;
* when the service cannot be reached in time (or sheds load, or fails
  internally), ``check`` returns an ``accept`` verdict with ``fail_open:
  True`` so a hook never blocks mail because the lookup service is down —
  unless the client was made with ``fail_open=False``, when it raises
  ``ServiceUnavailable`` like every other method;
* an error the service answers raises the matching ``errors.RpcError``
  subclass (``InvalidArgument``, ``TooLarge``...).

``pipeline(calls)`` sends many requests before reading any answer and matches
the answers by msgid, in whatever order they arrive.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import msgpack

from .errors import InternalError, Overloaded, RpcError, ServiceUnavailable, error_for_code

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start-up; annotations are strings here
    from typing import Any, Iterable, Sequence

__all__ = ["Client", "socket_path", "DEFAULT_SOCKET", "ENV_SOCKET", "fail_open_verdict"]

DEFAULT_SOCKET = "/run/fastlookup/fastlookup.sock"
ENV_SOCKET = "FASTLOOKUP_SOCKET"
# The framing constants of ``fastlookup.wire`` (a test keeps them equal):
# importing wire would pull in ``typing`` and build a NamedTuple at start-up.
REQUEST, RESPONSE, MAX_MSGID = 0, 1, 2**32 - 1
_RECV = 1 << 16
_monotonic = time.monotonic
_getpid = os.getpid
_MAX_RESPONSE = 256 << 20  # a batch of many listings can be large; nothing legitimate is larger


def socket_path(path: str | os.PathLike | None = None) -> str:
    """The socket to use: ``path``, else ``$FASTLOOKUP_SOCKET``, else the default path."""
    if path:
        return os.fspath(path)
    return os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET


def fail_open_verdict(elapsed_ms: float = 0.0) -> dict:
    """The verdict ``check`` returns when the service could not answer: accept, ``fail_open``."""
    return {
        "action": "accept",
        "smtp_code": None,
        "text": "",
        "score": 0.0,
        "reasons": [],
        "fail_open": True,
        "elapsed_ms": round(elapsed_ms, 3),
    }


class _Broken(Exception):
    """The connection ended or failed: retry once on a new one, if it was reused."""


class Client:
    """A blocking, thread-safe client of one fastlookup service (see the module docstring)."""

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 1.0, fail_open: bool = True) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout: {timeout!r} must be a positive number of seconds")
        self.path = socket_path(path)
        self.timeout = float(timeout)
        self.fail_open = fail_open
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._sock_timeout = 0.0
        self._pid = 0
        self._unpacker: msgpack.Unpacker | None = None
        self._packer = msgpack.Packer(autoreset=True, use_bin_type=True)
        self._msgid = 0

    def __repr__(self) -> str:
        return f"Client(path={self.path!r}, timeout={self.timeout}, fail_open={self.fail_open})"

    # --- the methods of the contract ---------------------------------------------

    def ping(self, *, timeout: float | None = None) -> dict:
        """``{"ok": True, "version": str, "uptime_s": float}``."""
        return self.call("ping", None, timeout=timeout)

    def query(self, name: str, type: str = "A", *, timeout: float | None = None) -> dict:
        """An Answer for ``name``/``type`` (A, AAAA, PTR, TXT, MX, NS, CNAME, SOA)."""
        return self.call("query", {"name": name, "type": type}, timeout=timeout)

    def ptr(self, ip: str, *, timeout: float | None = None) -> dict:
        """The PTR Answer of an IPv4/IPv6 address."""
        return self.call("ptr", {"ip": ip}, timeout=timeout)

    def a(self, name: str, *, timeout: float | None = None) -> dict:
        """The A Answer of ``name``."""
        return self.call("a", {"name": name}, timeout=timeout)

    def aaaa(self, name: str, *, timeout: float | None = None) -> dict:
        """The AAAA Answer of ``name``."""
        return self.call("aaaa", {"name": name}, timeout=timeout)

    def fcrdns(self, ip: str, *, timeout: float | None = None) -> dict:
        """The forward-confirmed reverse DNS Confirmation of ``ip``."""
        return self.call("fcrdns", {"ip": ip}, timeout=timeout)

    def dnsbl(self, ip: str, zones: Sequence[str] | None = None, *, timeout: float | None = None) -> dict:
        """The Listing of ``ip`` on ``zones`` (default: the service's DNSBL zones)."""
        args: dict = {"ip": ip}
        if zones is not None:
            args["zones"] = list(zones)
        return self.call("dnsbl", args, timeout=timeout)

    def rhsbl(self, domain: str, zones: Sequence[str] | None = None, *, timeout: float | None = None) -> dict:
        """The Listing of ``domain`` on ``zones`` (default: the service's RHSBL zones)."""
        args: dict = {"domain": domain}
        if zones is not None:
            args["zones"] = list(zones)
        return self.call("rhsbl", args, timeout=timeout)

    def check(
        self,
        ip: str,
        helo: str | None = None,
        sender: str | None = None,
        recipient: str | None = None,
        policy: str | None = None,
        *,
        timeout: float | None = None,
        authenticated: bool = False,
    ) -> dict:
        """The Verdict for a connecting client; fails open (see the module docstring).

        ``authenticated``: a SASL-authenticated submission, accepted without lookups
        unless the policy sets ``authenticated = "check"``.
        """
        args: dict = {"ip": ip}
        for key, value in (("helo", helo), ("sender", sender), ("recipient", recipient), ("policy", policy)):
            if value is not None:
                args[key] = value
        if authenticated:
            args["authenticated"] = True
        started = time.perf_counter()
        try:
            return self.call("check", args, timeout=timeout)
        except (ServiceUnavailable, Overloaded, InternalError) as exc:
            if not self.fail_open:
                if isinstance(exc, ServiceUnavailable):
                    raise
                raise ServiceUnavailable(f"fastlookup could not check {ip}: {exc}") from exc
            import logging  # only on this rare path: keeps the import light

            logging.getLogger("fastlookup.client").warning("fastlookup check of %s failed open: %s", ip, exc)
            return fail_open_verdict((time.perf_counter() - started) * 1000)

    def batch(self, calls: Iterable[Sequence[Any]], *, timeout: float | None = None) -> dict:
        """Many calls in one request: ``{"results": [[error, result], ...]}`` in call order."""
        wire_calls = []
        for call in calls:
            method, *rest = call
            wire_calls.append([method, rest[0] if rest and rest[0] is not None else {}])
        return self.call("batch", {"calls": wire_calls}, timeout=timeout)

    def stats(self, *, timeout: float | None = None) -> dict:
        """The service's counters."""
        return self.call("stats", None, timeout=timeout)

    # --- generic calls ---------------------------------------------------------------

    def call(self, method: str, args: dict | None = None, *, timeout: float | None = None) -> Any:
        """One call by method name; the result map, or raises (see the module docstring)."""
        if timeout is None:
            timeout = self.timeout
        deadline = _monotonic() + timeout
        lock = self._lock
        if not lock.acquire(True, timeout):
            raise ServiceUnavailable(f"fastlookup at {self.path}: the connection stayed busy for {timeout}s")
        try:
            msgid = self._msgid = self._msgid + 1 if self._msgid < MAX_MSGID else 0
            payload = self._packer.pack([REQUEST, msgid, method, [args] if args else []])
            error, result = self._exchange(payload, {msgid}, deadline, timeout)[msgid]
        finally:
            lock.release()
        if error is None:
            return result
        raise _error(error)

    def pipeline(
        self,
        calls: Iterable[Sequence[Any]],
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list:
        """Send every ``(method, args)`` call before reading; the results in call order.

        Answers are matched by msgid, whatever order they arrive in. An error
        answer raises its ``RpcError`` after all answers were read, or with
        ``return_exceptions=True`` takes that call's place in the list.
        ``timeout`` bounds the whole pipeline.
        """
        items = []
        for call in calls:
            method, *rest = call
            items.append((method, rest[0] if rest else None))
        if not items:
            return []
        return self._run(items, timeout, return_exceptions)

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the exchange ------------------------------------------------------------------

    def _run(self, items: list[tuple[str, dict | None]], timeout: float | None, return_exceptions: bool) -> list:
        timeout = self.timeout if timeout is None else timeout
        deadline = _monotonic() + timeout
        if not self._lock.acquire(True, timeout):
            raise ServiceUnavailable(f"fastlookup at {self.path}: the connection stayed busy for {timeout}s")
        try:
            ids = []
            chunks = []
            pack = self._packer.pack
            msgid = self._msgid
            for method, args in items:
                msgid = msgid + 1 if msgid < MAX_MSGID else 0
                ids.append(msgid)
                chunks.append(pack([REQUEST, msgid, method, [args] if args else []]))
            self._msgid = msgid
            payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            responses = self._exchange(payload, set(ids), deadline, timeout)
        finally:
            self._lock.release()
        out = []
        first_error: RpcError | None = None
        for msgid in ids:
            error, result = responses[msgid]
            if error is None:
                out.append(result)
                continue
            exc = _error(error)
            if first_error is None:
                first_error = exc
            out.append(exc)
        if first_error is not None and not return_exceptions:
            raise first_error
        return out

    def _exchange(self, payload: bytes, want: set[int], deadline: float, timeout: float) -> dict[int, tuple]:
        """Send and read under the lock; one retry when a reused connection turns out broken."""
        if self._sock is not None and self._pid != _getpid():
            self._sock = None  # inherited over fork(): the parent owns that connection
        for attempt in (0, 1):
            fresh = self._sock is None
            if fresh:
                self._connect(deadline, timeout)
            try:
                self._settimeout(deadline)
                try:
                    self._sock.sendall(payload)  # type: ignore[union-attr]
                except socket.timeout:
                    raise
                except OSError as exc:  # EPIPE, ECONNRESET: the service went away
                    raise _Broken(f"connection lost while sending ({exc.strerror or exc})") from None
                return self._receive(set(want), deadline)
            except _Broken as exc:
                self._drop()
                if fresh or attempt:
                    raise ServiceUnavailable(f"fastlookup at {self.path}: {exc}") from None
            except socket.timeout:
                self._drop()  # answers may still come: this connection is out of step now
                raise ServiceUnavailable(f"fastlookup at {self.path}: no answer within {timeout}s") from None
        raise AssertionError("unreachable")

    def _connect(self, deadline: float, timeout: float) -> None:
        remaining = deadline - _monotonic()
        if remaining <= 0:
            raise ServiceUnavailable(f"fastlookup at {self.path}: no answer within {timeout}s")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(remaining)
        try:
            sock.connect(self.path)
        except socket.timeout:
            sock.close()
            raise ServiceUnavailable(f"fastlookup at {self.path}: connecting took over {timeout}s") from None
        except FileNotFoundError:
            sock.close()
            raise ServiceUnavailable(
                f"fastlookup at {self.path}: no such socket; is the service running? (set FASTLOOKUP_SOCKET or pass path=)"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise ServiceUnavailable(f"fastlookup at {self.path}: connection refused; is the service running?") from None
        except PermissionError:
            sock.close()
            raise ServiceUnavailable(
                f"fastlookup at {self.path}: permission denied; add this user to the socket's group (server.socket_group)"
            ) from None
        except OSError as exc:
            sock.close()
            raise ServiceUnavailable(f"fastlookup at {self.path}: cannot connect: {exc}") from None
        self._sock = sock
        self._sock_timeout = remaining
        self._pid = _getpid()
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=_MAX_RESPONSE, strict_map_key=False)

    def _settimeout(self, deadline: float) -> None:
        remaining = deadline - _monotonic()
        if remaining <= 0:
            raise socket.timeout()
        # settimeout costs two syscalls: only change it when the deadline is noticeably different.
        if remaining < self._sock_timeout * 0.9 or remaining > self._sock_timeout * 1.5:
            self._sock.settimeout(remaining)  # type: ignore[union-attr]
            self._sock_timeout = remaining

    def _receive(self, want: set[int], deadline: float) -> dict[int, tuple]:
        """Read until every msgid in ``want`` (consumed) has its response."""
        sock, unpacker = self._sock, self._unpacker
        assert sock is not None and unpacker is not None
        got: dict[int, tuple] = {}
        first = True
        while True:
            try:
                for msg in unpacker:
                    if type(msg) is not list or len(msg) != 4 or msg[0] != RESPONSE:
                        self._drop()
                        raise ServiceUnavailable(f"fastlookup at {self.path}: not a msgpack-rpc response: {str(msg)[:80]}")
                    msgid = msg[1]
                    if msgid in want:
                        got[msgid] = (msg[2], msg[3])
                        want.discard(msgid)
                    elif msgid is None and msg[2] is not None:
                        # The service could not read our request's msgid: it refused the frame.
                        self._drop()
                        raise _error(msg[2])
            except (ValueError, msgpack.UnpackException) as exc:
                self._drop()
                raise ServiceUnavailable(f"fastlookup at {self.path}: garbled response ({exc})") from None
            if not want:
                return got
            if first:
                first = False  # the timeout set before sending still holds
            else:
                self._settimeout(deadline)
            try:
                data = sock.recv(_RECV)
            except socket.timeout:
                raise
            except OSError as exc:
                raise _Broken(f"connection lost while reading ({exc.strerror or exc})") from None
            if not data:
                raise _Broken("the service closed the connection")
            unpacker.feed(data)

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        self._unpacker = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _error(error: Any) -> RpcError:
    if isinstance(error, dict):
        return error_for_code(str(error.get("code", "internal")), str(error.get("message", "")))
    return InternalError(f"the service answered an error that is not a map: {str(error)[:80]}")
