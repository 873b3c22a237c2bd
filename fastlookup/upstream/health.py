"""Per-server health, like a resolver's infrastructure cache: RTT, backoff, order.

Why: with a fixed rotation and a fixed 0.8 s try timeout, a dead server in
the list costs every other query a whole try (``DEAD,GOOD`` answered at p50
400-800 ms). A resolver (unbound's infra cache, BIND's ADB) instead keeps,
per server, a smoothed RTT and its variance, backs a server that times out
off exponentially, and asks the best server first.

* RTT: RFC 6298 §2 smoothing (``srtt``, ``rttvar``, gains 1/8 and 1/4) of
  every reply's round-trip time (SERVFAIL and REFUSED replies included: the
  server is alive).
* A try's timeout (``rto``): ``srtt + max(4 * rttvar, floor)``, at most the
  ceiling (``upstream.timeout_s``); an unknown server gets the ceiling, so a
  slow but working server (a 700 ms blocklist) is never cut off before it
  was measured. Each consecutive timeout doubles it (RFC 6298 §5.5), still
  capped by the ceiling.
* Down: a try that got no reply at all (the pool keeps a try listening until
  ``timeout_s`` even after its ``rto`` passed and the next try started, so a
  resolver's slow cold lookup is a late reply, not a timeout) marks the
  server down for ``probe_min_s``, doubling with each consecutive timeout up
  to ``probe_max_s``. A down server is asked only
  when no other server is left; when its time is up the pool sends it one
  background probe (a real question, off the caller's path) and any reply
  brings it back.
* Order: up and unknown servers first, unknown before measured (so each is
  measured once), then by ``srtt``, a server whose last replies were
  failures (SERVFAIL, REFUSED, unparseable) after those whose were not;
  down servers last, soonest-due first.

No I/O and no event loop here: the pool calls ``sample``/``timed_out`` and
reads ``order``; the clock is the pool's (tests pass a fake one).
"""

from __future__ import annotations

__all__ = ["ServerHealth", "DOWN", "UNKNOWN", "UP"]

UNKNOWN = "unknown"
UP = "up"
DOWN = "down"

_ALPHA = 0.125  # RFC 6298 §2.3
_BETA = 0.25


class ServerHealth:
    """The RTT estimate and backoff state of one upstream server."""

    __slots__ = (
        "ceiling_s", "down_until", "errors", "failures", "floor_s", "measured", "probe_max_s", "probe_min_s", "rttvar", "srtt",
        "state",
    )

    def __init__(self, *, ceiling_s: float, floor_s: float, probe_min_s: float, probe_max_s: float) -> None:
        self.ceiling_s = ceiling_s
        self.floor_s = min(floor_s, ceiling_s)
        self.probe_min_s = probe_min_s
        self.probe_max_s = max(probe_max_s, probe_min_s)
        self.srtt = 0.0
        self.rttvar = 0.0
        self.measured = False  # a reply was timed: srtt means something
        self.failures = 0  # consecutive timeouts
        self.errors = 0  # consecutive failure replies (alive, but no use)
        self.down_until = 0.0
        self.state = UNKNOWN

    # --- what the pool reads -------------------------------------------------

    def rto(self) -> float:
        """How long a try on this server may take before the next try starts (seconds)."""
        if not self.measured:
            return self.ceiling_s
        base = self.srtt + max(4.0 * self.rttvar, self.floor_s)
        if self.failures:
            base *= 2.0 ** min(self.failures, 16)
        return min(base, self.ceiling_s)

    def hedge_after(self) -> float:
        """The top of the expected RTT band (``srtt + 2 rttvar``, at least a quarter of the
        floor): past it, a hedging pool asks the next server too. Never later than ``rto``."""
        if self.state != UP:
            return self.rto()
        return min(max(self.srtt + 2.0 * self.rttvar, self.floor_s / 4), self.rto())

    def rank(self, now: float) -> tuple[int, float]:
        """Sort key, lower first: (0, srtt) up, (0, -1) unknown, (1, due time) down."""
        if self.state == DOWN:
            return (1, self.down_until)
        if self.state == UNKNOWN:
            return (0, -1.0)
        if self.errors:
            return (0, self.srtt + min(self.errors, 8) * self.ceiling_s)
        return (0, self.srtt)

    def probe_due(self, now: float) -> bool:
        return self.state == DOWN and now >= self.down_until

    # --- what the pool reports -----------------------------------------------

    def sample(self, rtt: float) -> bool:
        """One reply after ``rtt`` seconds; True when the server was down and is back."""
        rtt = max(rtt, 0.0)
        if not self.measured:
            self.srtt = rtt
            self.rttvar = rtt / 2
            self.measured = True
        else:
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt
        back = self.state == DOWN
        self.state = UP
        self.failures = 0
        self.down_until = 0.0
        return back

    def replied(self, useful: bool) -> None:
        """After ``sample``: whether the reply was an answer (not SERVFAIL, REFUSED or garbage)."""
        self.errors = 0 if useful else self.errors + 1

    def timed_out(self, now: float) -> bool:
        """A try got no reply within its ``rto``; True when this took the server down."""
        self.failures += 1
        wait = min(self.probe_min_s * 2.0 ** min(self.failures - 1, 30), self.probe_max_s)
        self.down_until = now + wait
        went_down = self.state != DOWN
        self.state = DOWN
        return went_down

    def snapshot(self) -> dict[str, float | str]:
        """State, RTT estimate and timeout for ``stats``: seconds."""
        return {
            "state": self.state, "srtt_s": self.srtt, "rttvar_s": self.rttvar, "rto_s": self.rto(),
            "failures": self.failures, "errors": self.errors,
        }
