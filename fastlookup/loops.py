"""Event loop implementations by name, from an explicit table (house rule 8).

``server.loop`` in the config names one: ``"uvloop"``, ``"asyncio"`` or
``"auto"`` (uvloop when it can be imported, else asyncio). uvloop is imported
only when it is chosen, so nothing else pays for it (uvicorn's pattern).
"""

from __future__ import annotations

import asyncio
from typing import Callable

from .errors import ConfigError

__all__ = ["LOOPS", "resolve", "loop_factory"]

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _uvloop() -> LoopFactory:
    import uvloop

    return uvloop.new_event_loop


def _asyncio() -> LoopFactory:
    return asyncio.new_event_loop


#: name -> a function returning the loop factory (so importing is deferred).
LOOPS: dict[str, Callable[[], LoopFactory]] = {"uvloop": _uvloop, "asyncio": _asyncio}


def resolve(name: str) -> str:
    """The concrete loop name for ``name``; ``"auto"`` is uvloop if importable."""
    if name == "auto":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "asyncio"
        return "uvloop"
    if name not in LOOPS:
        raise ConfigError(f"server.loop: {name!r} is not one of auto, {', '.join(LOOPS)}")
    return name


def loop_factory(name: str = "auto") -> LoopFactory:
    """A callable making a new event loop of the named kind (for ``asyncio.Runner``)."""
    concrete = resolve(name)
    try:
        return LOOPS[concrete]()
    except ImportError:
        raise ConfigError(f"server.loop: {name!r} needs the uvloop package (pip install uvloop)") from None
