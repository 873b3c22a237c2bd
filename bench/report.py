"""The run's three outputs: a table on the terminal, results.json, and the latency plot.

The plot is the latency CDF of every contender, one panel per concurrency
level, log-scaled in latency, drawn with matplotlib's Agg backend (no
display needed). It is drawn from the ``cdf_ms`` points kept in
results.json, so ``python -m bench.report results.json out.png`` redraws it.
"""

from __future__ import annotations

import json
import math
import sys

__all__ = ["table", "write_json", "plot", "main"]

_COLUMNS = (
    ("contender", "name", "{}", 24),
    ("conc", "concurrency", "{}", 4),
    ("ok", "checks", "{}", 6),
    ("unk/tmo", "unknown", "{}", 7),
    ("err", "errors", "{}", 4),
    ("p50 ms", "p50_ms", "{:.3f}", 9),
    ("p90 ms", "p90_ms", "{:.3f}", 9),
    ("p99 ms", "p99_ms", "{:.3f}", 9),
    ("p99.9 ms", "p999_ms", "{:.3f}", 9),
    ("checks/s", "checks_per_s", "{:.0f}", 8),
    ("upstrm q/chk", "upstream_queries_per_check", "{:.3f}", 12),
    ("cpu s", "cpu_s", "{:.2f}", 6),
    ("p50 x floor*", "p50_vs_floor", "{:.2f}", 12),
    ("p50 x direct", "p50_vs_direct", "{:.3f}", 12),
    ("rate x direct", "checks_per_s_vs_direct", "{:.2f}", 13),
)


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(results: dict) -> str:
    """The rows as a fixed-width text table, skipped rows with their reason."""
    lines = [" ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, _, _, w) in enumerate(_COLUMNS))]
    lines.append("-" * len(lines[0]))
    for row in results["contenders"]:
        if row.get("skipped"):
            lines.append(f"{row['name']:<24} {row['concurrency']:<4} skipped: {row['skipped']}")
            continue
        cells = []
        for i, (_, key, fmt, width) in enumerate(_COLUMNS):
            text = _cell(row.get(key), fmt)
            if key == "name" and row.get("marked"):
                text = "!" + text  # a cell with unknown/timeout or wrong answers: not a clean measurement
            cells.append(text.ljust(width) if i <= 1 else text.rjust(width))
        lines.append(" ".join(cells))
    lines.append("! = the cell had unknown/timeout answers or errors (counted at the timeout in the percentiles); "
                 "* batched rows against floor-batched")
    goals = results.get("goals") or []
    if goals:
        lines.append("")
        lines.append("goals:")
        for g in goals:
            met = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
            lines.append(f"  {g['goal']} [{g['contender']} c={g['concurrency']}]: {g['value']} (limit {g['limit']}) {met}")
    return "\n".join(lines)


def write_json(results: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1, allow_nan=False)
        fh.write("\n")


def plot(results: dict, path: str) -> None:
    """Latency CDF per contender (log-x), one panel per concurrency level, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["contenders"] if not r.get("skipped") and r.get("cdf_ms")]
    levels = sorted({r["concurrency"] for r in results["contenders"]})
    names = list(dict.fromkeys(r["name"] for r in results["contenders"]))
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, max(1, len(levels)), figsize=(4.6 * max(1, len(levels)), 4.2), sharey=True, squeeze=False)
    for ax, level in zip(axes[0], levels):
        for row in rows:
            if row["concurrency"] != level:
                continue
            xs = [max(p[0], 1e-4) for p in row["cdf_ms"]]
            ys = [p[1] for p in row["cdf_ms"]]
            i = names.index(row["name"])
            ax.plot(xs, ys, label=row["name"], color=colours(i % 10),
                    linestyle="--" if row["name"] == "floor" else "-", linewidth=1.4)
        ax.set_xscale("log")
        ax.set_title(f"concurrency {level}")
        ax.set_xlabel("latency per check (ms, log)")
        ax.grid(True, which="both", alpha=0.25)
    axes[0][0].set_ylabel("fraction of checks")
    axes[0][0].set_ylim(0, 1.0)
    handles, labels = [], []
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4) or 1, fontsize="small", frameon=False)
    machine = results.get("machine", {})
    wl = results.get("workload", {})
    fig.suptitle(
        f"fastlookup benchmark: {wl.get('distinct_ips')} Zipf IPs, {len(wl.get('dnsbl_zones', []))} DNSBL zones, "
        f"delay {wl.get('delay_ms', 0)} ms -- {machine.get('cores')} cores, {machine.get('date_utc', '')[:10]}",
        fontsize="medium",
    )
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report results.json [out.png]``: print the table, redraw the plot."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m bench.report results.json [latency.png]", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        results = json.load(fh)
    print(table(results))
    if len(args) > 1:
        plot(results, args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
