"""The floor: a bare uvloop msgpack-RPC server on a unix socket, answering from a dict.

No validation, no cache, no DNS, no stats: decode a frame, look the answer
up by ``(method, ip-or-domain)``, encode, write. Measured with the same sync
client as fastlookup, it is the latency no real service can beat, so the
benchmark shows how close fastlookup's memory hit is to the limit.

Run as a process: ``python -m bench.floor --socket PATH --answers FILE``
(FILE: msgpack ``{method: {key: result}}``); prints ``READY`` once it
listens and exits on SIGTERM or when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import msgpack

__all__ = ["FloorProtocol", "main"]

_NOT_FOUND = {"status": "nxdomain", "records": [], "ttl": 0, "from": "memory"}


class FloorProtocol(asyncio.Protocol):
    """One connection: every complete frame of a read is answered in one write."""

    __slots__ = ("table", "transport", "unpacker", "packer")

    def __init__(self, table: dict) -> None:
        self.table = table
        self.transport: asyncio.Transport | None = None
        self.unpacker = msgpack.Unpacker(raw=False)
        self.packer = msgpack.Packer()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def answer(self, method: str, args: dict):
        if method == "batch":
            return {"results": [[None, self.answer(m, a or {})] for m, a in args["calls"]]}
        if method == "ping":
            return {"ok": True, "version": "floor", "uptime_s": 0.0}
        by_key = self.table.get(method)
        if by_key is None:
            return {}
        return by_key.get(args.get("ip") or args.get("domain"), _NOT_FOUND)

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        pack = self.packer.pack
        out = [pack([1, msg[1], None, self.answer(msg[2], msg[3][0] if msg[3] else {})]) for msg in self.unpacker]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def serve(path: str, table: dict) -> None:
    loop = asyncio.get_running_loop()
    if os.path.exists(path):
        os.unlink(path)
    server = await loop.create_unix_server(lambda: FloorProtocol(table), path)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    print("READY", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()
    if os.path.exists(path):
        os.unlink(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="unix socket path to listen on")
    parser.add_argument("--answers", required=True, help="msgpack file {method: {ip-or-domain: result}}")
    args = parser.parse_args(argv)
    with open(args.answers, "rb") as fh:
        table = msgpack.unpackb(fh.read(), raw=False)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.socket, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
