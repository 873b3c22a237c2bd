"""Fault rules for the test DNS server: what to do wrong, globally or per name.

A rule is a frozen ``Faults`` value. The table holds one global rule and one
rule per query name; for a query the name rule wins outright (rules are not
merged), so ``set(name, delay_s=1)`` on top of a global ``drop`` answers that
name late and drops the rest. Setting a rule replaces the previous rule of the
same scope.

``fail_n`` is the only stateful fault: the next N queries the rule applies to
get SERVFAIL, then the rule answers normally. The count lives in the table,
not in the frozen rule.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

import dns.name

__all__ = ["Faults", "FaultTable", "NO_FAULTS"]


@dataclass(frozen=True, slots=True)
class Faults:
    """What the server does wrong for the queries a rule applies to.

    ``delay_s``: answer this much later, without holding up other queries.
    ``drop``: never answer (a blackholed server).
    ``servfail`` / ``refused``: answer with that rcode and no records.
    ``truncate``: over UDP send TC=1 with no records; TCP gets the full answer.
    ``wrong_id``: over UDP first send a reply with another message ID, then the real one.
    ``wrong_question``: over UDP first send a reply with the right ID for another
    question, then the real one.
    ``fail_n``: SERVFAIL the next ``fail_n`` queries, then answer normally.
    ``garbage``: reply with the query's ID and question but an answer section
    that does not parse (a broken server or middlebox).
    """

    delay_s: float = 0.0
    drop: bool = False
    servfail: bool = False
    refused: bool = False
    truncate: bool = False
    wrong_id: bool = False
    wrong_question: bool = False
    fail_n: int = 0
    garbage: bool = False

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ValueError(f"faults.delay_s: {self.delay_s!r} is negative; use 0 for no delay")
        if self.fail_n < 0:
            raise ValueError(f"faults.fail_n: {self.fail_n!r} is negative; use 0 for none")


NO_FAULTS = Faults()


class FaultTable:
    """The global rule, the per-name rules, and the remaining ``fail_n`` counts."""

    def __init__(self, default: Faults = NO_FAULTS) -> None:
        self._lock = threading.Lock()
        self._global = default
        self._by_name: dict[dns.name.Name, Faults] = {}
        # Remaining fail_n per scope; the key None is the global rule.
        self._fail_left: dict[dns.name.Name | None, int] = {None: default.fail_n}

    def set(self, name: dns.name.Name | None, faults: Faults) -> None:
        """Make ``faults`` the rule for ``name`` (None: the global rule), resetting its ``fail_n``."""
        with self._lock:
            if name is None:
                self._global = faults
            else:
                self._by_name[name] = faults
            self._fail_left[name] = faults.fail_n

    def clear(self, name: dns.name.Name | None = None) -> None:
        """Remove the rule for ``name``; ``None`` clears every rule, global and per name."""
        with self._lock:
            if name is None:
                self._global = NO_FAULTS
                self._by_name.clear()
                self._fail_left = {None: 0}
            else:
                self._by_name.pop(name, None)
                self._fail_left.pop(name, None)

    def for_query(self, qname: dns.name.Name) -> Faults:
        """The rule for one arriving query; consumes one ``fail_n`` and reports it as ``servfail``."""
        with self._lock:
            scope: dns.name.Name | None = qname if qname in self._by_name else None
            rule = self._by_name[qname] if scope is not None else self._global
            left = self._fail_left.get(scope, 0)
            if left > 0:
                self._fail_left[scope] = left - 1
                return dataclasses.replace(rule, servfail=True, fail_n=0)
            return rule
