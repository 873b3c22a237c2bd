"""The qmail front's cost per SMTP connection: whole-process CPU, side by side with a bare interpreter.

    python -m bench.qmail_front                 # 40 runs of each, interleaved
    python -m bench.qmail_front --runs 100 --json out.json

tcpserver starts ``fastlookup-rblsmtpd`` once per connection, so its start-up
is paid on every SMTP connection. Each row is the CPU (user + system, from
``wait4``'s rusage) of one whole process — the launcher's shell, the Python
start, the front, and the ``true`` it execs — for the median of ``--runs``
runs. The rows run round-robin in one loop, so a busy neighbour slows them
all alike, and the ratios compare each row with ``python -I -S -c pass`` of
the same run. Goals (issue #11): at most 1.2x the bare interpreter without a
lookup (``RBLSMTPD=""``), at most 1.5x with one.

The lookup rows ask a real fastlookup service (in this process, its CPU not
counted: it serves every connection anyway) over its unix socket; its
upstream is the project's test DNS server holding ``bl.test`` with
127.0.0.2 listed, warm in the memory tier, as on a busy MX. As root, the
server also listens on port 53 of a spare 127.53.2.x so the original
``rblsmtpd`` can ask it through ``$DNSCACHEIP`` for its own lookup row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "measure", "GOALS"]

#: Ratio to the bare interpreter that each kind of row must stay within.
GOALS = {"no lookup": 1.2, "lookup": 1.5}
ZONE_RECORDS = {
    ("2.0.0.127.bl.test", "A"): ["127.0.0.2"],
    ("2.0.0.127.bl.test", "TXT"): ["Listed: see http://bl.test/127.0.0.2"],
}


def cpu_ms(argv: list[str], env: dict[str, str]) -> float:
    """CPU (user + system) of one whole process run of ``argv``, stdin/stdout/stderr on /dev/null."""
    actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        raise RuntimeError(f"{argv} exited with status {status}")
    return (usage.ru_utime + usage.ru_stime) * 1000.0


def measure(rows: list[tuple[str, str, list[str], dict[str, str]]], runs: int) -> list[dict]:
    """Every row ``runs`` times, round-robin; per row the median, min and p90 CPU in ms."""
    samples: dict[str, list[float]] = {name: [] for name, _, _, _ in rows}
    for _ in range(runs):
        for name, _, argv, env in rows:
            samples[name].append(cpu_ms(argv, env))
    out = []
    for name, kind, argv, _ in rows:
        values = sorted(samples[name])
        out.append({
            "name": name, "kind": kind, "command": " ".join(argv), "runs": len(values),
            "median_ms": round(statistics.median(values), 3), "min_ms": round(values[0], 3),
            "p90_ms": round(values[int(0.9 * (len(values) - 1))], 3),
        })
    bare = next(r["median_ms"] for r in out if r["kind"] == "bare")
    for row in out:
        row["ratio"] = round(row["median_ms"] / bare, 3)
        goal = GOALS.get(row["kind"]) if row["name"].startswith("fastlookup") else None
        row["goal"] = goal
        row["meets_goal"] = None if goal is None else row["ratio"] <= goal
    return out


def _spare_port53() -> str | None:
    from fastlookup.testing.ports import port_is_free

    if os.geteuid() != 0:
        return None
    return next((f"127.53.2.{i}" for i in range(1, 20) if port_is_free(53, "udp", f"127.53.2.{i}")), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.qmail_front", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="runs of each row (at least 20; default 40)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if not 20 <= args.runs <= 10000:
        parser.error("--runs: between 20 and 10000")

    from fastlookup.testing import DnsServer
    from fastlookup.testing.service import ServiceThread, service_config

    front = Path(sys.executable).with_name("fastlookup-rblsmtpd")
    true = shutil.which("true") or "/bin/true"
    original = shutil.which("rblsmtpd")
    address = _spare_port53()
    dns = DnsServer(ZONE_RECORDS, soa=[("bl.test", 300, 300)], hosts=(address,) if address else ("127.0.0.1",),
                    port=53 if address else 0)
    directory = tempfile.mkdtemp(prefix="fastlookup-qmailbench-")
    try:
        dns.start()
        config = service_config(f"{directory}/fastlookup.sock", [dns.address], cache={"min_ttl_s": 300})
        with ServiceThread(config) as service:
            for ip in ("127.0.0.1", "127.0.0.2"):  # warm: the lookups are memory hits, as on a busy MX
                service.call("dnsbl", {"ip": ip, "zones": ["bl.test"]})
            base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FASTLOOKUP_SOCKET": service.socket}
            rows = [
                ("python -I -S -c pass", "bare", [sys.executable, "-I", "-S", "-c", "pass"], base),
                ("fastlookup-rblsmtpd, RBLSMTPD=\"\"", "no lookup", [str(front), true], {**base, "RBLSMTPD": ""}),
                ("fastlookup-rblsmtpd -r bl.test, not listed", "lookup", [str(front), "-r", "bl.test", true],
                 {**base, "TCPREMOTEIP": "127.0.0.1"}),
                ("fastlookup-rblsmtpd -r bl.test, listed (blocked dialogue)", "lookup",
                 [str(front), "-r", "bl.test", true], {**base, "TCPREMOTEIP": "127.0.0.2"}),
            ]
            if original:
                rows.append(("original rblsmtpd, RBLSMTPD=\"\"", "no lookup", [original, true], {**base, "RBLSMTPD": ""}))
                if address:
                    rows.append(("original rblsmtpd -r bl.test, not listed", "lookup", [original, "-r", "bl.test", true],
                                 {**base, "TCPREMOTEIP": "127.0.0.1", "DNSCACHEIP": address}))
            for _, _, argv_, env in rows:  # one untimed run each: caches, pyc files
                cpu_ms(argv_, env)
            result = measure(rows, args.runs)
    finally:
        dns.stop()
        shutil.rmtree(directory, ignore_errors=True)

    print(f"whole-process CPU per run, median of {args.runs} (round-robin, one run); ratio to the bare interpreter")
    print(f"{'':60s} {'median':>8s} {'min':>7s} {'p90':>7s} {'ratio':>6s}  goal")
    for row in result:
        goal = "" if row["goal"] is None else f"<= {row['goal']}x {'met' if row['meets_goal'] else 'MISSED'}"
        print(f"{row['name']:60s} {row['median_ms']:7.2f}ms {row['min_ms']:6.2f}ms {row['p90_ms']:6.2f}ms "
              f"{row['ratio']:5.2f}x  {goal}")
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "rows": result}, indent=2) + "\n")
    return 0 if all(r["meets_goal"] is not False for r in result) else 1


if __name__ == "__main__":
    raise SystemExit(main())
