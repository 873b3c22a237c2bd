"""``python -m bench`` / ``fastlookup bench``: run the side-by-side benchmark.

    python -m bench --quick --out /tmp/bench-out
    python -m bench --delay-ms 30 --delay-spread-ms 10 --ips 20000 --concurrency 1,8,32 --out out/

Modes set the defaults (``--tiny`` seconds, for the smoke test; ``--quick``
under 3 minutes on 2 cores; none: the full run); every other flag wins over
the mode. Exit status: 0 when results were written, 2 on bad arguments,
1 when the world could not be set up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time

from . import figures, machine, procs, report
from .contenders import CONTENDERS
from .progress import Progress
from .runner import MODES, Run, Settings

__all__ = ["main", "parse_args"]


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers like 1,8,32") from None
    if not levels or any(not 1 <= n <= 256 for n in levels):
        raise argparse.ArgumentTypeError(f"{text!r}: every level must be 1..256")
    return levels


def _names(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown contender(s) {unknown}; known: {', '.join(CONTENDERS)}")
    return names


def parse_args(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a run of under 3 minutes on a 2-core machine")
    mode.add_argument("--tiny", action="store_true", help="a run of seconds on a tiny workload (the smoke test)")
    p.add_argument("--out", default="bench-out", help="directory for results.json and latency.png (default: bench-out)")
    p.add_argument("--delay-ms", type=float, default=0.0,
                   help="delay of every answer from upstream (PTR, A and the blocklist zones), to model a network (default 0)")
    p.add_argument("--delay-spread-ms", type=float, default=0.0,
                   help="uniform +/- spread around --delay-ms, seeded (default 0; at most --delay-ms)")
    p.add_argument("--ips", type=int, help="distinct client IPs of the Zipf workload")
    p.add_argument("--listed-share", type=float, default=0.1, help="share of the IPs (and domains) listed (default 0.1)")
    p.add_argument("--zones", type=int, help="DNSBL zones asked per connection")
    p.add_argument("--concurrency", type=_levels, help="connections in flight, e.g. 1,8,32")
    p.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    p.add_argument("--max-checks", type=int, help="connections per cell at most")
    p.add_argument("--max-seconds", type=float, help="seconds per cell at most")
    p.add_argument("--contenders", type=_names, default=tuple(CONTENDERS), help="comma-separated subset, in run order")
    p.add_argument("--cpus", default="auto",
                   help="pin the whole run: 'auto' (the idlest CPU at start), 'none', or a list like '1' (default auto)")
    p.add_argument("--timeout", type=float, default=2.5, help="per-call client timeout in seconds (default 2.5)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)
    name = "tiny" if args.tiny else "quick" if args.quick else "full"
    d = MODES[name]
    settings = Settings(
        mode=name,
        ips=args.ips if args.ips is not None else d["ips"],
        listed_share=args.listed_share,
        zones=args.zones if args.zones is not None else d["zones"],
        seed=args.seed,
        delay_ms=max(0.0, args.delay_ms),
        delay_spread_ms=max(0.0, args.delay_spread_ms),
        concurrency=args.concurrency or d["concurrency"],
        max_checks=args.max_checks if args.max_checks is not None else d["max_checks"],
        max_s=args.max_seconds if args.max_seconds is not None else d["max_s"],
        warm_max_s=d["warm_max_s"],
        client_timeout_s=args.timeout,
        contenders=args.contenders,
    )
    if settings.max_checks < 1 or settings.max_s <= 0:
        p.error("--max-checks and --max-seconds must be positive")
    if settings.delay_ms > 60_000 or settings.delay_spread_ms > settings.delay_ms:
        p.error("--delay-ms must be at most 60000 and --delay-spread-ms at most --delay-ms")
    return settings, args


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops every child


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_args(argv)
    try:
        cpus = procs.pin(args.cpus)
    except ValueError as exc:
        print(f"python -m bench: {exc}", file=sys.stderr)
        return 2
    try:
        from .workload import make_workload

        make_workload(settings.ips, settings.listed_share, settings.zones, settings.seed)  # validates
    except ValueError as exc:
        print(f"python -m bench: {exc}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (an embedding caller): its own handling applies
        pass
    workdir = tempfile.mkdtemp(prefix="fastlookup-bench-")
    progress = Progress(len(settings.contenders) * len(settings.concurrency), enabled=not args.quiet)
    t0 = time.monotonic()
    load_start = [round(x, 2) for x in os.getloadavg()]
    rows: list[dict] = []
    run = Run(settings, workdir, progress)
    place = procs.placement(cpus)
    try:
        progress.note(f"setting up: {settings.ips} IPs, {settings.zones} zones, placement {cpus or 'unpinned'} ...")
        try:
            run.start()
        except Exception as exc:
            print(f"python -m bench: could not set up the upstream servers: {exc}", file=sys.stderr)
            return 1
        for name in settings.contenders:
            rows += run.measure(CONTENDERS[name]())
        place = procs.placement(cpus, run.pids())
    finally:
        run.close()
        shutil.rmtree(workdir, ignore_errors=True)
    figures.add_ratios(rows)
    workload = run.workload.describe()
    workload.update(
        {
            "mode": settings.mode,
            "delay_ms": settings.delay_ms,
            "delay_spread_ms": settings.delay_spread_ms,
            "delay_applies_to": "every answer from upstream: a delaying UDP forwarder stands in front of the "
            "test DNS server (PTR, A) and of rbldnsd (DNSBL/RHSBL A and TXT)",
            "concurrency_levels": list(settings.concurrency),
            "max_checks_per_cell": settings.max_checks,
            "max_seconds_per_cell": settings.max_s,
            "check": "one SMTP connection: ptr + fcrdns + dnsbl on every zone + rhsbl on the client's domain; "
            "every part judged against the workload (bench/contenders/verify.py)",
            "failures": "unknown/timeout and wrong answers are their own columns and count in the percentiles "
            f"at the client timeout ({settings.client_timeout_s} s) or what they took when longer",
            "concurrency_model": "threads with one sync client each (floor, fastlookup); "
            "asyncio tasks on one uvloop loop (dnspython, pydnsbl)",
            "warm_ups": run.warm_notes,
            "service_config": run.service_config,
        }
    )
    facts = machine.facts(place)
    # Other processes on the machine share its CPUs; the load average says how busy it was.
    facts["load_average_start"] = load_start
    facts["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results = {
        "machine": facts,
        "workload": workload,
        "contenders": rows,
        "goals": figures.goals(rows),
        "duration_s": round(time.monotonic() - t0, 1),
    }
    json_path = os.path.join(args.out, "results.json")
    png_path = os.path.join(args.out, "latency.png")
    report.write_json(results, json_path)
    try:
        report.plot(results, png_path)
    except ImportError as exc:
        print(f"python -m bench: no plot ({exc}); install the bench extra: pip install 'fastlookup[bench]'", file=sys.stderr)
    print(report.table(results))
    print(f"\nwrote {json_path} and {png_path} in {results['duration_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
