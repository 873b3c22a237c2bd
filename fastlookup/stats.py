"""Counters and latency histograms kept as plain numbers.

The hot path only adds to dicts here (tens of nanoseconds); the ``stats``
RPC method reads them, and ``fastlookup.metrics`` exposes the same numbers
to Prometheus at scrape time through a custom collector, so no Prometheus
object is touched while serving. Labelled series are keyed by a tuple of
label values. Standard library only.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

__all__ = ["Stats", "Histogram", "LATENCY_BUCKETS_S"]

#: Upper bounds (seconds) of latency histogram buckets: DNS on loopback
#: answers in ~0.1 ms, real resolvers in 1-100 ms, timeouts near 1 s.
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """A cumulative-free histogram: counts per bucket, sum and count."""

    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


class Stats:
    """All of one service's counters, gauges and histograms.

    ``counters[name][labels]`` is an int; ``labels`` is a tuple of label
    values (``()`` for an unlabelled series). ``LABELS[name]`` names them.
    """

    def __init__(self) -> None:
        self.counters: defaultdict[str, defaultdict[tuple, int]] = defaultdict(lambda: defaultdict(int))
        self.gauges: dict[str, dict[tuple, float]] = defaultdict(dict)
        self.histograms: dict[str, dict[tuple, Histogram]] = defaultdict(dict)
        self.labels: dict[str, tuple[str, ...]] = {}

    def inc(self, name: str, labels: tuple = (), n: int = 1) -> None:
        self.counters[name][labels] += n

    def set(self, name: str, value: float, labels: tuple = ()) -> None:
        self.gauges[name][labels] = value

    def observe(self, name: str, value: float, labels: tuple = ()) -> None:
        series = self.histograms[name]
        hist = series.get(labels)
        if hist is None:
            hist = series[labels] = Histogram()
        hist.observe(value)

    def declare(self, name: str, *label_names: str) -> None:
        """Record the label names of a series, for the Prometheus exposition."""
        self.labels[name] = label_names

    def total(self, name: str) -> int:
        return sum(self.counters[name].values()) if name in self.counters else 0

    def snapshot(self) -> dict:
        """A msgpack-friendly map: ``name`` -> total, ``name/l1,l2`` -> value per series."""
        out: dict[str, float] = {}
        for name, series in sorted(self.counters.items()):
            out[name] = sum(series.values())
            for labels, value in series.items():
                if labels:
                    out[name + "/" + ",".join(map(str, labels))] = value
        for name, series in sorted(self.gauges.items()):
            for labels, value in series.items():
                out[name + ("/" + ",".join(map(str, labels)) if labels else "")] = value
        return out
