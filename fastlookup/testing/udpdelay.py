"""A delaying UDP DNS forwarder: puts a network's latency in front of a server that has none.

rbldnsd answers in microseconds and has no delay option; a real blocklist
answers in 20-700 ms. This forwarder listens on loopback, forwards every
query to one upstream server (rewriting the DNS ID so concurrent clients
never collide) and sends each reply back ``delay_ms`` late, plus or minus a
uniform ``spread_ms`` (seeded), as a WAN would. Queries are counted at the
upstream server as before; the forwarder only adds time.

Run as a process (the benchmark's form, so it never competes for the
harness's GIL): ``python -m fastlookup.testing.udpdelay --upstream
127.0.0.1:PORT --delay-ms 30 --spread-ms 10``. It prints ``READY <port>``,
and exits on SIGTERM or when its stdin closes. ``DelayForwarder`` is the
controller. UDP only: neither rbldnsd nor the benchmark's answers need TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys

from fastlookup.testing._proc import OutputReader, end_child, start_python_module

__all__ = ["DelayForwarder", "main"]

#: Queries waiting for their upstream reply at most; past it the oldest ID slot is reused.
MAX_PENDING = 65536
MAX_DATAGRAM = 65535


class _Relay:
    """The two sockets and the table of IDs in flight."""

    def __init__(self, delay_s: float, spread_s: float, seed: int) -> None:
        self.delay_s = delay_s
        self.spread_s = spread_s
        self.rng = random.Random(seed)
        self.pending: dict[int, tuple[tuple, bytes]] = {}
        self.next_id = 0
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None
        self.loop = asyncio.get_running_loop()

    def query(self, data: bytes, addr: tuple) -> None:
        if len(data) < 12 or self.back is None:
            return  # not a DNS message: dropped
        new_id = self.next_id
        self.next_id = (self.next_id + 1) % MAX_PENDING
        self.pending[new_id] = (addr, data[:2])
        self.back.sendto(new_id.to_bytes(2, "big") + data[2:])

    def reply(self, data: bytes) -> None:
        if len(data) < 12 or self.front is None:
            return
        entry = self.pending.pop(int.from_bytes(data[:2], "big"), None)
        if entry is None:
            return  # late or unknown: dropped, as a client would
        addr, old_id = entry
        delay = self.delay_s
        if self.spread_s:
            delay += self.rng.uniform(-self.spread_s, self.spread_s)
        out = old_id + data[2:]
        if delay <= 0:
            self.front.sendto(out, addr)
        else:
            self.loop.call_later(delay, self.front.sendto, out, addr)


class _Front(asyncio.DatagramProtocol):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        self.relay.query(data, addr)


class _Back(asyncio.DatagramProtocol):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        self.relay.reply(data)


async def serve(listen_port: int, upstream: tuple[str, int], delay_s: float, spread_s: float, seed: int) -> None:
    loop = asyncio.get_running_loop()
    relay = _Relay(delay_s, spread_s, seed)
    front, _ = await loop.create_datagram_endpoint(lambda: _Front(relay), local_addr=("127.0.0.1", listen_port))
    back, _ = await loop.create_datagram_endpoint(lambda: _Back(relay), remote_addr=upstream)
    relay.front, relay.back = front, back  # type: ignore[assignment]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        fd = sys.stdin.fileno()
        loop.add_reader(fd, lambda: stop.set() if not os.read(fd, 4096) else None)
    except (OSError, ValueError):
        pass
    print(f"READY {front.get_extra_info('sockname')[1]}", flush=True)
    await stop.wait()
    front.close()
    back.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastlookup.testing.udpdelay", description=__doc__.splitlines()[0])
    p.add_argument("--upstream", type=_address, required=True, help="HOST:PORT of the server to forward to")
    p.add_argument("--port", type=int, default=0, help="port to listen on, 127.0.0.1 (default: a free one)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="delay of every reply (default 0)")
    p.add_argument("--spread-ms", type=float, default=0.0, help="uniform +/- spread around the delay (default 0)")
    p.add_argument("--seed", type=int, default=1, help="seed of the spread (default 1)")
    args = p.parse_args(argv)
    if not 0 <= args.delay_ms <= 60_000 or not 0 <= args.spread_ms <= args.delay_ms:
        p.error("--delay-ms must be 0..60000 and --spread-ms 0..delay")
    asyncio.run(serve(args.port, args.upstream, args.delay_ms / 1000.0, args.spread_ms / 1000.0, args.seed))
    return 0


class DelayForwarder:
    """Controller: ``DelayForwarder(("127.0.0.1", 5300), delay_ms=30, spread_ms=10).start()``."""

    def __init__(self, upstream: tuple[str, int], *, delay_ms: float, spread_ms: float = 0.0, seed: int = 1,
                 start_timeout_s: float = 10.0) -> None:
        self.upstream = upstream
        self.delay_ms = delay_ms
        self.spread_ms = spread_ms
        self.seed = seed
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self._output: OutputReader | None = None
        self.port = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("DelayForwarder: not started")
        return self._proc.pid

    def start(self) -> "DelayForwarder":
        args = ["--upstream", f"{self.upstream[0]}:{self.upstream[1]}", "--delay-ms", str(self.delay_ms),
                "--spread-ms", str(self.spread_ms), "--seed", str(self.seed)]
        self._proc, self._output, self.port = start_python_module(
            "fastlookup.testing.udpdelay", args, timeout_s=self._start_timeout_s, what="DelayForwarder")
        return self

    def stop(self) -> None:
        """Stop the child by pid; safe to call twice."""
        if self._proc is not None:
            end_child(self._proc, self._output)
            self._proc = None
        self.port = 0


if __name__ == "__main__":
    sys.exit(main())
