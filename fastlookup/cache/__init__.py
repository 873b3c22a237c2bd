"""Cache tiers: the in-process memory tier and the fleet-wide Redis tier.

Both store ``Entry`` values; the resolver reads memory first, then the
shared tier, then upstream (read-through).
"""

from .entry import Entry, TtlPolicy
from .memory import MemoryCache

__all__ = ["Entry", "TtlPolicy", "MemoryCache"]
