"""The benchmark harness: MTA lookup latency, fastlookup and the alternatives side by side.

``python -m bench [--quick] [--out DIR]`` (or ``fastlookup bench``) starts its
own loopback world (rbldnsd, the project's test DNS server, redis-server,
unbound), drives one seeded Zipf workload of SMTP connections through every
contender at the same concurrency levels, and writes ``results.json`` and
``latency.png``. ``docs/benchmarks.md`` explains the figures.

Modules, one job each:

* ``workload``   the seeded hosts, listings and Zipf connection stream
* ``world``      the upstream servers and the fastlookup/floor services, by pid
* ``procs``      pinning, /proc CPU times, starting and stopping children
* ``floor``      the bare uvloop msgpack echo server (the limit)
* ``contenders`` one small module per way of making a check, and the table
* ``load``       the bounded load loops (threads or asyncio tasks)
* ``figures``    percentiles, rows, ratios, goals
* ``report``     the terminal table, results.json and the CDF plot
* ``progress``   the stderr progress bar
* ``machine``    facts about this machine and the run's CPU placement
* ``memory_tier`` issue 3's figures: a memory hit's cost and bytes per entry
* ``redis_tier`` issue 5's figures: a Redis-only hit and MGET batching
"""

from __future__ import annotations
