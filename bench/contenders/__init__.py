"""The contenders, by name, in the order they run (an explicit table, house rule 8).

Each entry makes a fresh ``Contender``; ``bench.runner`` runs each at every
concurrency level. The issue's names come first; ``floor-batched`` (the limit of the batched
rows), ``fastlookup-batched``, ``fastlookup-redis-batched`` and
``fastlookup-fleet`` are the extras.
"""

from __future__ import annotations

from typing import Callable

from .base import Contender, Unknown, WrongAnswer
from .dnspython_direct import DnspythonContender
from .fleet import FleetContender
from .pydnsbl_check import PydnsblContender
from .viaclient import FastlookupContender, FloorContender

__all__ = ["CONTENDERS", "Contender", "Unknown", "WrongAnswer"]

CONTENDERS: dict[str, Callable[[], Contender]] = {
    "floor": FloorContender,
    "floor-batched": lambda: FloorContender(batched=True),
    "dnspython-direct": lambda: DnspythonContender("dnspython-direct"),
    "unbound": lambda: DnspythonContender("unbound"),
    "pydnsbl": PydnsblContender,
    "fastlookup-cold": lambda: FastlookupContender("cold"),
    "fastlookup-memory": lambda: FastlookupContender("memory"),
    "fastlookup-batched": lambda: FastlookupContender("batched"),
    "fastlookup-redis": lambda: FastlookupContender("redis"),
    "fastlookup-redis-batched": lambda: FastlookupContender("redis-batched"),
    "fastlookup-fleet": FleetContender,
}
