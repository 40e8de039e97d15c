"""Per-run report: markdown tables + PNG plots of the variant comparison."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .distill import VARIANTS

METRICS = [("auc", "AUC", True), ("ne", "NE", False), ("logloss", "log-loss", False),
           ("calibration", "calib (pred/obs)", None), ("oracleMse", "MSE vs oracle p", False)]


def mean_sd(xs: list[float | None]) -> tuple[float, float, int]:
    v = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return float("nan"), float("nan"), 0
    a = np.array(v, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0, int(a.size)


def summarize(results: dict) -> dict:
    """results[task][variant] = [metrics per seed] -> summary with mean/sd and gains."""
    summary: dict = {}
    for task, per_var in results.items():
        s: dict = {}
        for v, runs in per_var.items():
            s[v] = {m: mean_sd([r.get(m) for r in runs]) for m, _, _ in METRICS}
        # gains over no-KD, per seed then averaged (paired by seed)
        gains: dict = {}
        base = per_var.get("none", [])
        for v in VARIANTS[1:]:
            if v not in per_var:
                continue
            ga = [r["auc"] - b["auc"] for r, b in zip(per_var[v], base) if r["auc"] is not None and b["auc"] is not None]
            gn = [b["ne"] - r["ne"] for r, b in zip(per_var[v], base)]
            gains[v] = {"auc": mean_sd(ga), "ne": mean_sd(gn)}
        ratio = {}
        if "kd" in gains:
            for v in ("kd_aux_adapter", "kd_aux_adapter_emb"):
                if v in gains:
                    for m in ("auc", "ne"):
                        kd = gains["kd"][m][0]
                        ratio[f"{v}/{m}"] = gains[v][m][0] / kd if abs(kd) > 1e-9 else float("nan")
        s["_gains"] = gains
        s["_ratio"] = ratio
        summary[task] = s
    return summary


def _fmt(ms: tuple[float, float, int], digits: int = 4) -> str:
    m, sd, n = ms
    if n == 0 or math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f} ± {sd:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def _table(headers: list[str], rows: list[list]) -> list[str]:
    """Markdown table lines: header, separator, one line per row."""
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def write_report(out_dir: Path, meta: dict, results: dict, extra: dict) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    lines = [f"# GEM-lite pipeline run `{meta.get('runId')}`", ""]
    lines.append(f"World: `{meta.get('world')}` (seed {meta.get('worldSeed')}), scale `{meta.get('scale')}`, "
                 f"student seeds {meta.get('seeds')}.  ")
    lines.append(f"Days: teacher {meta.get('teacherDays')}, students {meta.get('studentDays')}, "
                 f"adapter (freshest ground truth) {meta.get('adapterDays')}, evaluation (held out, later) {meta.get('evalDays')}.")
    lines.append("")
    lines.append("Metrics on the evaluation days; mean ± sd over seeds. NE = log-loss / entropy of the base rate "
                 "(lower is better); calib = mean predicted / observed rate (1 is perfect); "
                 "MSE vs oracle = mean squared error against the world's true probabilities.")
    lines.append("")
    lines.append("Which eval rows are used for what: the variant tables compare every variant and seed on all eval "
                 "rows (a comparison, nothing is chosen there). The eval users are split in two by a hash of the "
                 "user id; the published variant of each student is the servable one with the best mean AUC over "
                 "seeds on the *selection* half, and its numbers under \"Published\" (and in the manifest's "
                 "`lineage.metrics`) are measured on the other, *report* half, so they are not inflated by the choice.")
    lines.append("")
    lines.append("Every number is on the rows the server scores with the model: a ctr student's impressions, a cvr "
                 "student's clicks on *cpa* candidates only (the server asks for pCVR on cpa candidates alone, and "
                 "cpa clicks convert more often than the others, which the student cannot tell apart). A cvr "
                 "student's Platt calibration is fit on the selection half's cpa clicks; its published numbers are "
                 "after calibration (the variant tables are before it). Numbers on every row (\"all rows\") are "
                 "for comparison only.")
    lines.append("")
    for task, s in summary.items():
        ex = extra.get("tasks", {}).get(task, {})
        lines.append(f"## {task}")
        lines.append("")
        lines.append(f"Eval rows {ex.get('evalRows')}, positives {ex.get('evalPositives')}; oracle AUC "
                     f"{ex.get('oracle', {}).get('auc', float('nan')):.4f}, oracle NE {ex.get('oracle', {}).get('ne', float('nan')):.4f}; "
                     f"teacher AUC {ex.get('teacher', {}).get('auc') or float('nan'):.4f} / NE {ex.get('teacher', {}).get('ne', float('nan')):.4f}; "
                     f"adapted teacher AUC {ex.get('adapted', {}).get('auc') or float('nan'):.4f} / NE {ex.get('adapted', {}).get('ne', float('nan')):.4f}. "
                     f"Split by user: selection half {ex.get('selectionRows')} rows ({ex.get('selectionUsers')} users), "
                     f"report half {ex.get('reportRows')} rows ({ex.get('reportUsers')} users).")
        if ex.get("population"):
            lines.append("")
            lines.append(f"Graded on {ex['population']}.")
        if ex.get("allRows"):
            al = ex["allRows"]
            lines.append(f"All rows (every bid type, not served; comparison only): {al['rows']} rows, "
                         f"{al['positives']} positives, oracle AUC {al['oracle'].get('auc') or float('nan'):.4f}.")
        lines.append("")
        rows = []
        for v in VARIANTS:
            if v not in s:
                continue
            g = s["_gains"].get(v)
            rows.append([v, *(_fmt(s[v][m]) for m, _, _ in METRICS), _fmt(g["auc"]) if g else "—", _fmt(g["ne"]) if g else "—"])
        lines += _table(["variant", *(label for _, label, _ in METRICS), "ΔAUC vs none", "ΔNE vs none (−)"], rows)
        r = s["_ratio"]
        if r:
            lines.append("")
            lines.append("Gain ratio vs standard KD (gain over no-KD of the variant / gain of `kd`): " + ", ".join(
                f"{k} = {v:.2f}" for k, v in r.items()))
        lines.append("")
    ov = overall(results)
    if ov:
        lines.append("## All students together")
        lines.append("")
        lines.append("Gains over no-KD averaged over the students listed, per seed (paired), then mean ± sd over seeds.")
        lines.append("")
        lines += _table(["students", "variant", "ΔAUC", "ΔNE (−)", "ratio ΔAUC / ΔAUC(kd)", "ratio ΔNE / ΔNE(kd)"],
                        [[group, v, _fmt(r["auc"]), _fmt(r["ne"]), f"{r['ratioAuc']:.2f}", f"{r['ratioNe']:.2f}"]
                         for group, rows in ov.items() for v, r in rows.items()])
        lines.append("")
    if extra.get("latency"):
        lines.append("## Latency (CPU, one thread, one request of 500 candidates)")
        lines.append("")
        lines += _table(["model", "runtime", "history L", "ms / 500 candidates", "µs / candidate"],
                        [[row["model"], row["runtime"], row["L"], f"{row['ms']:.3f}", f"{1000 * row['ms'] / 500:.2f}"] for row in extra["latency"]])
        lines.append("")
    if extra.get("published"):
        lines.append("## Published")
        lines.append("")
        lines.append("Variant chosen on the selection half (mean AUC over seeds, shown for reference: it is biased up "
                     "by the choice); AUC and NE of the exported model (first seed) on the report half.")
        lines.append("")
        lines += _table(["model", "version", "variant", "bytes", "selection AUC (chosen on)", "report AUC", "report NE",
                         "report rows", "parity max |Δ|"],
                        [[p["name"], p["version"], p["variant"], p["bytes"], f"{p['selectionAuc']:.4f}", f"{p['auc']:.4f}",
                          f"{p['ne']:.4f}", p["reportRows"], f"{p['parity']:.2e}"]
                         for p in extra["published"]])
        lines.append("")
        lines.append("Calibration served (manifest `calibration`), and predicted / observed rate on the report half "
                     "before and after it:")
        lines.append("")
        lines += _table(["model", "calibration", "how", "pred/obs before", "pred/obs served"],
                        [[p["name"], _calibration_text(p.get("calibration")), p.get("calibrationFit", ""),
                          _num(p.get("uncalibratedCalibration")), _num(p.get("calibrated"))]
                         for p in extra["published"]])
        lines.append("")
        for p in extra["published"]:
            if not p.get("byBidType"):
                continue
            lines.append(f"{p['name']} on the report half by bid type (the server scores cpa only; the other rows "
                         "show what the student, blind to bid type, averages over):")
            lines.append("")
            lines += _table(["bid type", "clicks", "conversions", "observed", "truth (oracle)", "predicted",
                             "pred/truth", "after calibration", "calibrated/truth"],
                            [[bt, r["rows"], r["positives"], _num(r["observedRate"]), _num(r["oracleRate"]),
                              _num(r["predictedRate"]), _num(_ratio(r["predictedRate"], r["oracleRate"]), 3),
                              _num(r["servedRate"]), _num(_ratio(r["servedRate"], r["oracleRate"]), 3)]
                             for bt, r in p["byBidType"].items()])
            lines.append("")
    lines.append("![variants](variants.png)")
    lines.append("")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "results": results, "summary": summary,
                                                       "overall": ov, "extra": extra}, indent=1, default=_json_default))
    plot(out_dir / "variants.png", summary)
    return out_dir / "report.md"


def _num(x, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ratio(a, b):
    return a / b if a is not None and b else None


def _calibration_text(cal: dict | None) -> str:
    if not cal:
        return "n/a"
    if cal.get("method") == "platt":
        return f"platt (slope {cal['slope']:.3f}, intercept {cal['intercept']:.3f})"
    return cal.get("method", "n/a")


def overall(results: dict) -> dict:
    """Per-seed gains averaged over groups of students; ratio of the mean gains to standard KD's."""
    groups = {"ctr students": [t for t in results if t.endswith("-ctr")], "all students": list(results)}
    out: dict = {}
    for gname, tasks in groups.items():
        if not tasks or any("none" not in results[t] for t in tasks):
            continue
        n_seeds = min(len(results[t]["none"]) for t in tasks)
        rows = {}
        for v in VARIANTS[1:]:
            ga, gn = [], []
            for i in range(n_seeds):
                da = [results[t][v][i]["auc"] - results[t]["none"][i]["auc"] for t in tasks
                      if results[t][v][i]["auc"] is not None and results[t]["none"][i]["auc"] is not None]
                dn = [results[t]["none"][i]["ne"] - results[t][v][i]["ne"] for t in tasks]
                ga.append(float(np.mean(da)))
                gn.append(float(np.mean(dn)))
            rows[v] = {"auc": mean_sd(ga), "ne": mean_sd(gn)}
        for v in rows:
            ka, kn = rows["kd"]["auc"][0], rows["kd"]["ne"][0]
            rows[v]["ratioAuc"] = rows[v]["auc"][0] / ka if abs(ka) > 1e-9 else float("nan")
            rows[v]["ratioNe"] = rows[v]["ne"][0] / kn if abs(kn) > 1e-9 else float("nan")
        out[gname] = rows
    return out


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def plot(path: Path, summary: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    width = 0.8 / len(VARIANTS)
    colors = ["#999999", "#4c72b0", "#dd8452", "#55a868"]
    for ax, (m, label) in zip(axes, [("auc", "AUC (higher is better)"), ("ne", "NE (lower is better)"),
                                     ("calibration", "predicted / observed rate")]):
        for i, v in enumerate(VARIANTS):
            means = [summary[t].get(v, {}).get(m, (np.nan, 0, 0))[0] for t in tasks]
            sds = [summary[t].get(v, {}).get(m, (np.nan, 0, 0))[1] for t in tasks]
            x = np.arange(len(tasks)) + (i - 1.5) * width
            ax.bar(x, means, width, yerr=sds, label=v, color=colors[i], capsize=2)
        ax.set_xticks(np.arange(len(tasks)))
        ax.set_xticklabels(tasks, rotation=20)
        ax.set_title(label)
        vals = [summary[t].get(v, {}).get(m, (np.nan, 0, 0))[0] for t in tasks for v in VARIANTS]
        vals = [x for x in vals if not math.isnan(x)]
        if vals and m != "calibration":
            lo, hi = min(vals), max(vals)
            pad = (hi - lo) * 0.3 + 1e-3
            ax.set_ylim(lo - pad, hi + pad)
        if m == "calibration":
            ax.axhline(1.0, color="k", lw=0.8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
