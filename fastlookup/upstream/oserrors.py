"""Socket errors that say "this process", not "that server": out of file descriptors.

Past ``RLIMIT_NOFILE`` (EMFILE) or the system's file table (ENFILE) no query
can open a socket; each miss ends ``status: "error"``. That is an operator's
problem, so it must be seen: counted as ``fd_exhausted`` and logged once per
``INTERVAL_S`` with how many happened since (never once per query).
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Any

__all__ = ["note_os_error", "INTERVAL_S"]

log = logging.getLogger("fastlookup.upstream")

INTERVAL_S = 60.0
_FD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
_state = {"last": None, "since": 0}


def note_os_error(stats: Any, exc: OSError, clock: Any = time.monotonic) -> bool:
    """Count and (once per interval) log ``exc`` when it is fd exhaustion (then True); other errors are the server's."""
    if exc.errno not in _FD_ERRNOS:
        return False
    if stats is not None:
        stats.inc("fd_exhausted")
    now = clock()
    last = _state["last"]
    if last is not None and now - last < INTERVAL_S:
        _state["since"] += 1
        return True
    since, _state["since"], _state["last"] = _state["since"], 0, now
    log.error(
        "out of file descriptors (%s): upstream queries fail with status error; raise LimitNOFILE / ulimit -n "
        "or lower upstream.max_in_flight (%d more since the last report)",
        errno.errorcode.get(exc.errno, exc.errno), since,
    )
    return True
