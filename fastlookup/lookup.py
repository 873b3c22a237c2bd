"""Run a check's pure logic against the cache, resolving only what it misses.

Every method (``dnsbl``, ``fcrdns``, ``check``...) is written once, as a pure
function ``evaluate(get) -> result`` where ``get(name, rdtype)`` returns an
``Answer`` or None when the answer is not known yet. It must carry on past a
None (so one pass discovers every question it can ask in parallel) and its
result is only used once a pass had no None.

* ``try_sync`` runs one pass on memory hits alone: when nothing is missing
  the result is final and no task, future or await was needed — the hot path.
* ``run`` repeats passes: the questions a pass missed are resolved together
  (concurrently, coalesced), then the pure logic runs again, until nothing is
  missing or the deadline has passed, when missing answers become ``timeout``
  and the logic fails open on them.

So there is one tree of logic for the sync and the async path, and a check
with N zones asks its N questions at once.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from .model import Answer
from .resolver import Question, Resolver

__all__ = ["Get", "Lookup", "try_sync", "run", "final", "MISSING", "MAX_ROUNDS"]

T = TypeVar("T")
Get = Callable[[str, str], "Answer | None"]

#: A check's chain of dependent questions is short (PTR -> A, A -> TXT,
#: MX -> A); this bounds a buggy evaluator that keeps asking new questions.
MAX_ROUNDS = 8


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: Returned by ``try_sync`` when the memory tier could not answer everything.
MISSING = _Missing()


class Lookup:
    """The ``get`` handed to evaluators: known answers, then memory, else record a miss."""

    __slots__ = ("resolver", "known", "missing", "exhausted", "_peek")

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.known: dict[Question, Answer] = {}
        self.missing: list[Question] = []
        self.exhausted = False  # no more rounds: unknown answers are timeouts
        self._peek = resolver.peek  # bound once: every get of a pass calls it

    def __call__(self, name: str, rdtype: str) -> Answer | None:
        known = self.known
        question = (name, rdtype)
        if known:
            answer = known.get(question)
            if answer is not None:
                return answer
        answer = self._peek(name, rdtype)
        if answer is None:
            if self.exhausted:
                return Answer("timeout", (), 0, "upstream")
            self.missing.append(question)
        else:
            known[question] = answer
        return answer


def final(get: Get) -> bool:
    """True when the pass in progress has missed nothing so far: its result will be used.

    Evaluators call it at the end of a pass to do a once-per-call side effect
    (a verdict's log line) only on the pass whose result is returned.
    """
    return not getattr(get, "missing", ())


def try_sync(resolver: Resolver, evaluate: Callable[[Get], T]) -> tuple[T | _Missing, Lookup]:
    """One pass on memory alone; ``(result, lookup)`` or ``(MISSING, lookup)``."""
    lookup = Lookup(resolver)
    result = evaluate(lookup)
    if lookup.missing:
        return MISSING, lookup
    return result, lookup


async def run(resolver: Resolver, evaluate: Callable[[Get], T], deadline: float, lookup: Lookup | None = None) -> T:
    """Evaluate with upstream help until complete or ``deadline`` (on ``resolver.clock``)."""
    if lookup is None:
        result, lookup = try_sync(resolver, evaluate)
        if result is not MISSING:
            return result  # type: ignore[return-value]
    for _ in range(MAX_ROUNDS):
        missing = list(dict.fromkeys(lookup.missing))
        lookup.missing.clear()
        lookup.known.update(await resolver.resolve_many(missing, deadline))
        result = evaluate(lookup)
        if not lookup.missing:
            return result
    # Still asking after MAX_ROUNDS: every question not known now is a timeout,
    # so this last pass completes whatever new questions it would ask.
    lookup.exhausted = True
    lookup.missing.clear()
    return evaluate(lookup)
