#!/usr/bin/python3
"""Plot a load-test result JSON (bench or swap) to PNG.

usage: /usr/bin/python3 loadtest/plot.py RESULT.json OUT.png [COPY.png ...]
bench: 2xx latency percentiles vs concurrency (server and SKIP_INFERENCE floor) and throughput vs
concurrency against the raw model ceiling. swap: server RSS over publish/swap cycles.
"""
import json
import shutil
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_bench(result, out):
    normal = result["sweep"]["normal"]
    floor = result["sweep"]["floor"]
    conc = [p["concurrency"] for p in normal]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    # 2xx latency (p50Ok...): a point that sheds answers most requests 503 in a few ms, and over all
    # responses its percentiles fall as it refuses more. Results from before these keys have only
    # the all-responses ones, and say so in the legend.
    ok = all("p50Ok" in p for p in normal + floor)
    which = "2xx" if ok else "all responses"
    for key, style, color in (("p50", "o-", "tab:blue"), ("p90", "s-", "tab:orange"), ("p99", "^-", "tab:red")):
        field = key + "Ok" if ok else key
        left.plot(conc, [p[field] for p in normal], style, color=color, label=f"server {key} ({which})")
        left.plot([p["concurrency"] for p in floor], [p[field] for p in floor], style.replace("-", "--"), color=color, alpha=0.4, label=f"floor {key} ({which})")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("concurrency (connections)")
    left.set_ylabel("latency (ms)")
    left.set_title(f"POST /v1/rank latency ({which})")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, ncol=2)

    cand = result["bodies"]["candidates"]
    right.plot(conc, [p["candPerS"] for p in normal], "o-", label="server cand/s")
    right.plot([p["concurrency"] for p in floor], [p["rps"] * cand for p in floor], "o--", alpha=0.6, label="floor (SKIP_INFERENCE) cand/s")
    ceiling = result["ceiling"]["serverCeilingCandPerS"]
    right.axhline(ceiling, color="red", linestyle=":", label=f"raw session.run ceiling ({ceiling:,} cand/s)")
    right.set_xscale("log", base=2)
    if ceiling > 10 * max(p["candPerS"] for p in normal):
        right.set_yscale("log")
    right.set_xlabel("concurrency (connections)")
    right.set_ylabel("candidates / s")
    right.set_title(f"throughput ({cand} candidates per request)")
    right.grid(True, which="both", alpha=0.3)
    rps_axis = right.secondary_yaxis("right", functions=(lambda x: x / cand, lambda x: x * cand))
    rps_axis.set_ylabel("requests / s")
    right.legend(fontsize=7)
    host = result["host"]
    fig.suptitle(f"bench {result['startedAt']}  ({host['cpus']} CPUs, pool {result['server']['poolSize']}, load avg {host['loadavg'][0]})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_swap(result, out):
    rss = result["cycles"]["rss"]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    per = result["cycles"].get("perCycle", [])
    if per:
        ax.plot([s["cycle"] for s in per], [s["rssMiB"] for s in per], "-", color="0.7", lw=0.8, label="RSS every cycle")
    floors = result["cycles"].get("blockMinima", [])
    if floors:
        ax.plot([s["cycle"] for s in floors], [s["rssMiB"] for s in floors], "s--", ms=4, label=f"block minima ({result['cycles'].get('blockMinimaSlope', 0):+.3f} MiB/cycle after the first)")
    ax.plot([s["cycle"] for s in rss], [s["rssMiB"] for s in rss], "o-", label="sampled RSS")
    fit = result["cycles"]["fit"]
    xs = [rss[0]["cycle"], rss[-1]["cycle"]]
    ax.plot(xs, [fit["intercept"] + fit["slope"] * x for x in xs], "--", label=f"fit {fit['slope']:+.3f} MiB/cycle")
    ax.set_xlabel("publish/swap cycle")
    ax.set_ylabel("RSS (MiB)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.6)
    ax.set_title(f"swap {result['startedAt']}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        result = json.load(f)
    kind = result.get("kind")
    if kind == "bench":
        plot_bench(result, sys.argv[2])
    elif kind == "swap":
        plot_swap(result, sys.argv[2])
    else:
        sys.exit(f"unknown result kind {kind!r}")
    for copy in sys.argv[3:]:
        shutil.copyfile(sys.argv[2], copy)


if __name__ == "__main__":
    main()
