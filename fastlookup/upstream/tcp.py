"""One DNS exchange over TCP, used when a UDP reply came back truncated.

RFC 1035 §4.2.2 / RFC 7766 §8: each message is preceded by its length as a
two-byte big-endian number. One connection per retry is enough here: TCP is
the rare path (TXT answers over 1232 bytes), so no connection reuse or
pipelining (RFC 7766 §6.2) is attempted. Built on ``asyncio.open_connection``,
which uvloop implements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["exchange"]


async def exchange(
    host: str,
    port: int,
    wire: bytes,
    accept: Callable[[bytes], Any],
    timeout: float,
    on_drop: Callable[[], None] = lambda: None,
    live: set | None = None,
) -> Any:
    """Send ``wire`` over a new TCP connection; return ``accept(reply)`` of the first accepted reply.

    Returns ``None`` when ``timeout`` seconds (connect included) pass first.
    Raises ``OSError`` when the connection fails or closes before an accepted
    reply. The transport is kept in ``live`` meanwhile, so that a shutdown
    can close it.
    """
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            if live is not None:
                live.add(writer.transport)
            writer.write(len(wire).to_bytes(2, "big") + wire)
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                result = accept(await reader.readexactly(size))
                if result is not None:
                    return result
                on_drop()  # not the answer to our question (RFC 5452 §9.1); read on
    except TimeoutError:
        return None
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError(f"TCP connection to {host}:{port} closed before an answer") from exc
    finally:
        if writer is not None:
            if live is not None:
                live.discard(writer.transport)
            writer.close()
