"""One command: teacher -> students (4 variants x seeds) -> evaluation -> report -> export -> publish.

    /usr/bin/python3 -m pipeline.gemlite.cli run --world out/world-small --repo models [--scale small|full]
        [--seeds 1,2,3] [--tasks feed-ctr,...] [--no-publish] [--out pipeline/runs/<id>]
    /usr/bin/python3 -m pipeline.gemlite.cli synth --out out/synth-tiny      # tiny synthetic world (tests)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import evaluate as ev
from .data import FeatureSpec, Task, World, fit_feature_spec, plan_batches
from .distill import (VARIANTS, adapted_preds, attach_soft_labels, bid_types, build_cache, fit_adapter, predict,
                      teacher_outputs, teacher_preds, train_student, train_teacher, user_ids)
from .export import bench_student, check_parity, dummy_inputs, export_student, torch_scores
from .golden import build_golden, parity_cases
from .publish import build_manifest, clean_stale_temps, publish, route_published
from .report import write_report, summarize
from .students import StudentConfig, StudentNet, count_params
from . import teacher_meta
from .teacher import TeacherConfig, TeacherNet, teacher_batch, to_torch

SERVABLE = ["none", "kd", "kd_aux_adapter"]  # variants that need nothing beyond the request
SELECTION = (f"best mean AUC over seeds among {' / '.join(SERVABLE)} on the selection half of eval users, "
             "rows of evalPopulation only; metrics on the report half (evalSplit)")


@dataclass
class EvalRows:
    """A task's eval rows, in predict() order, with what the published metrics need."""
    y: np.ndarray
    oracle: np.ndarray
    teacher: np.ndarray
    report: np.ndarray  # True: report half (evaluate.report_half), False: selection half
    served: np.ndarray  # True: a row the server would score with this model (evaluate.served_rows): graded
    bid_type: np.ndarray  # bid type index of each row's candidate


@dataclass
class Scale:
    teacher: TeacherConfig
    student: StudentConfig
    spec: dict
    teacher_epochs: int
    student_epochs: int
    batch: int
    teacher_batch: int
    teacher_max_batches: int | None = None
    teacher_lr: float = 1e-3
    student_lr: float = 3e-3


SCALES = {
    "tiny": Scale(
        teacher=TeacherConfig(d=8, n_user_summ=2, n_cand_query=1, n_blocks=1, hidden=16, user_buckets=1009,
                              emb_dim=4, max_length=64, buckets=(16, 64)),
        student=StudentConfig(d_ad=4, d_cat=4, d_adv=4, d_hist=8, n_query=1, n_interest=1, d_user=8, d_udense=4,
                              hidden1=16, hidden2=8),
        spec=dict(ad_buckets=1009, adv_buckets=211, cat_buckets=101),
        teacher_epochs=1, student_epochs=1, batch=256, teacher_batch=256),
    # Clicks are ~2% of impressions: with the small world's ~1k clicks a day every model overfits
    # after about one pass, so students are small and see the data once (see docs/PIPELINE.md).
    "small": Scale(
        teacher=TeacherConfig(max_length=1024, buckets=(64, 256, 1024)),
        student=StudentConfig(d_ad=4, d_cat=8, hidden1=32, hidden2=16, hist_relu=False),
        spec=dict(ad_buckets=20011, adv_buckets=4093, cat_buckets=509),
        teacher_epochs=1, student_epochs=1, batch=512, teacher_batch=512),
    "full": Scale(
        teacher=TeacherConfig(max_length=2048, buckets=(64, 256, 1024, 2048)),
        student=StudentConfig(d_ad=4, d_cat=8, hidden1=32, hidden2=16, hist_relu=False),
        spec=dict(ad_buckets=20011, adv_buckets=4093, cat_buckets=509),
        teacher_epochs=1, student_epochs=1, batch=512, teacher_batch=512),
}

TASKS = {
    # name: (surface, objective, training task, evaluation task)
    "feed-ctr": ("feed", "ctr", Task("feed-ctr", [0], "ctr"), Task("feed-ctr", [0], "ctr")),
    "stories-ctr": ("stories", "ctr", Task("stories-ctr", [1], "ctr"), Task("stories-ctr", [1], "ctr")),
    "reels-ctr": ("reels", "ctr", Task("reels-ctr", [2], "ctr"), Task("reels-ctr", [2], "ctr")),
    "marketplace-ctr": ("marketplace", "ctr", Task("marketplace-ctr", [3], "ctr"), Task("marketplace-ctr", [3], "ctr")),
    # conversions are rare (a few % of clicks): feed-cvr learns from the clicks of every surface (it is
    # the cvr route of all of them) and is graded where it is served: on every surface, on clicks on cpa
    # candidates only (evaluate.served_rows; the server asks for pCVR on cpa candidates alone).
    "feed-cvr": ("feed", "cvr", Task("feed-cvr", None, "cvr", clicked_only=True),
                 Task("feed-cvr", None, "cvr", clicked_only=True)),
}


class Progress:
    def __init__(self, quiet: bool = False):
        self.t0 = time.time()
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.time() - self.t0:7.1f}s] {msg}", flush=True)

    def warn(self, msg: str) -> None:
        """Always shown (stderr), --quiet or not."""
        print(f"[{time.time() - self.t0:7.1f}s] warning: {msg}", file=sys.stderr, flush=True)


def _surfaces_text(world: World, task: Task) -> str:
    if task.surfaces is None:
        return "every surface"
    return ", ".join(world.surfaces[i] for i in task.surfaces)


def _rates(y: np.ndarray, p: np.ndarray, served: np.ndarray, oracle: np.ndarray) -> dict:
    return {"rows": int(y.size), "positives": int(y.sum()), "observedRate": float(y.mean()) if y.size else None,
            "predictedRate": float(p.mean()) if y.size else None,
            "servedRate": float(served.mean()) if y.size else None,
            "oracleRate": float(oracle.mean()) if y.size else None}


def split_days(world: World) -> dict[str, list[int]]:
    days = sorted(d.day for d in world.days)
    n_eval = 2 if len(days) >= 6 else 1
    eval_days = days[-n_eval:]
    adapter_days = days[-n_eval - 1:-n_eval]
    student_days = days[:-n_eval]
    teacher_days = days[:-n_eval - 1]
    return {"teacher": teacher_days, "student": student_days, "adapter": adapter_days, "eval": eval_days}


@torch.no_grad()
def teacher_latency(world: World, spec: FeatureSpec, cfg: TeacherConfig, net: TeacherNet, day: int,
                    n: int = 500, runs: int = 3) -> dict:
    """ms for one user (longest history, capped at max_length) with n candidates, torch, 1 thread."""
    d = world.day(day)
    hl = d.hist_len()
    row = int(np.argmax(np.minimum(hl, cfg.max_length) + 0))
    imps = np.nonzero(np.asarray(d.imp_user_row) == row)[0]
    if imps.size == 0:
        imps = np.array([0])
        row = int(d.imp_user_row[0])
    imps = np.resize(imps, n)
    L = int(min(hl[row], cfg.max_length))
    width = next((b for b in cfg.buckets if b >= L), cfg.max_length)
    from .data import BatchPlan
    b = to_torch(teacher_batch(world, spec, cfg, BatchPlan(day, np.array([row]), imps, width)))
    net.eval()
    net(b)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        net(b)
        ts.append((time.perf_counter() - t0) * 1000)
    return {"model": "teacher", "runtime": "pytorch", "L": width, "ms": float(np.median(ts))}


@torch.no_grad()
def student_torch_latency(net: StudentNet, spec: FeatureSpec, n: int = 500, L: int = 256, runs: int = 20) -> float:
    t = dummy_inputs(spec.du, spec.da, R=1, L=L, N=n, vocab=min(spec.cat_buckets, spec.adv_buckets, spec.ad_buckets))
    t["req_idx"] = np.zeros(n, np.int64)
    torch_scores(net, t)
    t0 = time.perf_counter()
    for _ in range(runs):
        torch_scores(net, t)
    return (time.perf_counter() - t0) * 1000 / runs


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    log = Progress(args.quiet)
    scale = SCALES[args.scale]
    world = World(args.world)
    split = split_days(world)
    seeds = [int(s) for s in str(args.seeds).split(",") if s]
    task_names = [t for t in (args.tasks.split(",") if args.tasks else list(TASKS))]
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{args.scale}"
    out_dir = Path(args.out) if args.out else Path("pipeline/runs") / run_id
    log(f"run {run_id}: world {args.world} (seed {world.seed}, {len(world.days)} days), scale {args.scale}, "
        f"seeds {seeds}, tasks {task_names}, out {out_dir}")
    tcfg = scale.teacher
    # A reused teacher is described by the metadata written when it was trained (teacher_meta.py),
    # never as this run's: its days are its own, not this run's split. One refused leaves no run behind.
    if args.teacher:
        tmeta = teacher_meta.load_for_reuse(Path(args.teacher), world, args.scale, tcfg, log.warn,
                                            held_out={"eval": split["eval"], "adapter": split["adapter"]})
    else:
        tmeta = teacher_meta.new_meta(run_id, world, args.world, split["teacher"], args.scale, tcfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher_version = tmeta["teacherVersion"]
    teacher_days = tmeta["trainingDays"]
    days_text = teacher_days if teacher_days is not None else "unknown"
    reused = f" (reused {teacher_version})" if args.teacher else ""
    log(f"days: teacher {days_text}{reused} students {split['student']} adapter {split['adapter']} eval {split['eval']}")

    spec = fit_feature_spec(world, split["student"], **scale.spec)
    (out_dir / "feature_spec.json").write_text(json.dumps(spec.to_json(), indent=1))

    # ---- teacher
    if args.teacher:
        log(f"teacher: loading {args.teacher} ({teacher_version}, trained on days {days_text})")
        teacher = TeacherNet(spec, tcfg)
        teacher.load_state_dict(torch.load(args.teacher))
        teacher.eval()
    else:
        log(f"teacher: training on days {split['teacher']} (all surfaces, ctr+cvr), history up to {tcfg.max_length}")
        teacher = train_teacher(world, spec, tcfg, split["teacher"], scale.teacher_epochs, scale.teacher_batch,
                                seed=seeds[0], log=log, lr=scale.teacher_lr, max_batches=scale.teacher_max_batches)
    torch.save(teacher.state_dict(), out_dir / "teacher.pt")
    teacher_meta.write(out_dir / "teacher.pt", tmeta)  # a reused teacher's copy keeps its provenance
    all_days = sorted(d.day for d in world.days)
    tout = teacher_outputs(world, spec, tcfg, teacher, all_days, scale.teacher_batch, log)
    latency = [teacher_latency(world, spec, tcfg, teacher, split["eval"][-1])]
    log(f"teacher latency: {latency[0]['ms']:.1f} ms / 500 candidates (L={latency[0]['L']})")

    # ---- students
    results: dict = {}
    extra: dict = {"tasks": {}, "latency": latency, "published": []}
    keep: dict = {}
    held_out: dict[str, EvalRows] = {}
    servable_preds: dict[str, dict[str, list[np.ndarray]]] = {}  # task -> variant -> scores per seed
    for name in task_names:
        surface, objective, train_task, eval_task = TASKS[name]
        log(f"{name}: building batches")
        tr = build_cache(world, spec, train_task, split["student"], scale.batch, 0, tout)
        ad = build_cache(world, spec, train_task, split["adapter"], scale.batch, 0, tout)
        evc = build_cache(world, spec, eval_task, split["eval"], scale.batch, 0, tout)
        if not tr or not evc:
            log(f"{name}: no data, skipped")
            continue
        adapter = fit_adapter(ad, spec.du, spec.da, seed=seeds[0])
        for c in (tr, evc):
            attach_soft_labels(c, adapter)
        y = np.concatenate([c.y.numpy() for c in evc])
        o = np.concatenate([c.oracle.numpy() for c in evc])
        users = user_ids(evc)
        bt = bid_types(evc)
        # graded: the rows the server scores with this model (a cvr model: clicks on cpa candidates)
        g = ev.served_rows(objective, bt, world.bid_types)
        held_out[name] = EvalRows(y, o, teacher_preds(evc), ev.report_half(users), g, bt)
        in_report = held_out[name].report[g]
        gu = users[g]
        info = {"population": ev.served_population(objective, _surfaces_text(world, eval_task)),
                "evalRows": int(g.sum()), "evalPositives": int(y[g].sum()),
                "selectionRows": int((~in_report).sum()), "selectionUsers": int(np.unique(gu[~in_report]).size),
                "reportRows": int(in_report.sum()), "reportUsers": int(np.unique(gu[in_report]).size),
                "trainRows": int(sum(c.y.numel() for c in tr)),
                "oracle": ev.metrics(y[g], o[g]),
                "teacher": ev.metrics(y[g], held_out[name].teacher[g], o[g]),
                "adapted": ev.metrics(y[g], adapted_preds(evc)[g], o[g])}
        if not g.all():
            info["allRows"] = {"rows": int(y.size), "positives": int(y.sum()), "oracle": ev.metrics(y, o)}
        extra["tasks"][name] = info
        log(f"{name}: train {info['trainRows']} rows, graded on {info['population']}: eval {info['evalRows']} rows "
            f"({info['evalPositives']} positives{f' of {y.size} rows' if not g.all() else ''}); "
            f"oracle AUC {info['oracle']['auc']:.4f}, teacher AUC {info['teacher']['auc'] or float('nan'):.4f}, "
            f"adapted teacher AUC {info['adapted']['auc'] or float('nan'):.4f}; eval users split into selection "
            f"{info['selectionRows']} rows ({info['selectionUsers']} users) / report {info['reportRows']} rows "
            f"({info['reportUsers']} users)")
        results[name] = {v: [] for v in VARIANTS}
        servable_preds[name] = {v: [] for v in SERVABLE}
        for seed in seeds:
            for v in VARIANTS:
                t0 = time.time()
                net = train_student(spec, scale.student, v, tr, seed, scale.student_epochs, tcfg.emb_dim,
                                    lr=scale.student_lr)
                p, yy, oo = predict(net, evc, v)
                m = ev.metrics(yy[g], p[g], oo[g])
                if not g.all():  # every eval row, served or not: for comparison only
                    full = ev.metrics(yy, p, oo)
                    m["allRows"] = {k: full[k] for k in ("n", "auc", "ne", "calibration")}
                m["seed"] = seed
                results[name][v].append(m)
                if v in SERVABLE:
                    servable_preds[name][v].append(p)
                if seed == seeds[0]:
                    keep[(name, v)] = (net, p, m)
                log(f"{name} seed {seed} {v:<19} AUC {m['auc'] or float('nan'):.4f} NE {m['ne']:.4f} "
                    f"calib {m['calibration'] or float('nan'):.3f} ({time.time() - t0:.0f}s)")
        del tr, ad

    summary = summarize(results)
    meta = {"runId": run_id, "world": str(args.world), "worldSeed": world.seed, "scale": args.scale, "seeds": seeds,
            "teacherDays": teacher_days, "teacherReused": bool(args.teacher),
            "studentDays": split["student"], "adapterDays": split["adapter"],
            "evalDays": split["eval"], "teacherConfig": tcfg.to_json(), "studentConfig": scale.student.to_json(),
            "teacherVersion": teacher_version}

    # ---- export + publish the best servable variant of each student
    published = {}
    repo = Path(args.repo) if args.repo else None
    if repo is not None and not args.no_publish:
        clean_stale_temps(repo)
    for name in results:
        surface, objective, _, _ = TASKS[name]
        rows = held_out[name]
        g = rows.served
        y, oracle, in_report = rows.y[g], rows.oracle[g], rows.report[g]
        choice = ev.select_variant(y, oracle, {v: [p[g] for p in ps] for v, ps in servable_preds[name].items()},
                                   in_report, SERVABLE)
        best, raw = choice.variant, choice.report
        # p_eval: every eval row; the score quantiles describe the raw score distribution, not a grade
        net, p_eval, _ = keep[(name, best)]
        p_graded = p_eval[g]
        # A cvr student cannot see bid type, so it under-predicts the cpa clicks it is served on: its
        # calibration is fit on the selection half's graded rows and measured on the report half's.
        if objective in ev.SERVED_BID_TYPE:
            calibration, fit = ev.platt_calibration(y[~in_report], p_graded[~in_report])
            fit = f"{fit}; selection half, {extra['tasks'][name]['population']}"
            if calibration["method"] == "identity":
                log.warn(f"{name}: calibration kept identity ({fit}): its served pCVR is as biased as the "
                         f"uncalibrated metrics below say")
            else:
                log(f"{name}: calibration {fit}: slope {calibration['slope']:.4f}, intercept {calibration['intercept']:.4f}")
        else:
            calibration, fit = {"method": "identity"}, "identity: only cvr students are calibrated"
        p_served = ev.calibrated(p_graded, calibration)
        m = ev.metrics(y[in_report], p_served[in_report], oracle[in_report])
        tmp = Path(tempfile.mkdtemp(prefix="gemlite-export-"))
        try:
            model_path = export_student(net, spec.du, spec.da, tmp / "model.onnx")
            golden = build_golden(world, spec, net, split["eval"][-1], surface, seed=seeds[0])
            parity = check_parity(model_path, net, parity_cases(spec, golden))
            ms = bench_student(model_path, spec.du, spec.da, n=500, L=spec.max_length,
                               vocab=min(spec.cat_buckets, spec.adv_buckets, spec.ad_buckets))
            latency.append({"model": name, "runtime": "onnxruntime-node", "L": spec.max_length, "ms": ms})
            latency.append({"model": name, "runtime": "pytorch", "L": spec.max_length, "ms": student_torch_latency(net, spec)})
            # observed/predicted (served, calibrated) rates grade the model against labels: report half,
            # graded rows, like lineage.metrics
            calibration = dict(calibration, observedRate=m["observedRate"], predictedRate=m["predictedRate"])
            lineage = {
                "teacherVersion": teacher_version if best != "none" else None,
                "distillation": best,
                "trainingWindow": {"fromDay": split["student"][0], "toDay": split["student"][-1]},
                "worldSeed": world.seed,
                "metrics": {"auc": m["auc"], "logloss": m["logloss"], "ne": m["ne"], "oracleAuc": m.get("oracleAuc"),
                            "oracleNe": m.get("oracleNe"), "calibration": m["calibration"],
                            "evalDays": f"{split['eval'][0]}-{split['eval'][-1]}", "evalRows": m["n"],
                            "selectionRows": int((~in_report).sum()), "evalSplit": ev.EVAL_SPLIT,
                            "evalSplitSalt": ev.EVAL_SPLIT_SALT,
                            "evalPopulation": extra["tasks"][name]["population"], "calibrationFit": fit,
                            "seed": seeds[0], "runId": run_id,
                            "teacherAuc": ev.auc(y[in_report], rows.teacher[g][in_report]),
                            "selection": SELECTION},
            }
            if objective in ev.SERVED_BID_TYPE:
                # before calibration (the model's own output) on the same rows; AUC does not change
                lineage["metrics"].update({"uncalibratedLogloss": raw["logloss"], "uncalibratedNe": raw["ne"],
                                           "uncalibratedCalibration": raw["calibration"]})
            if not g.all():
                # every report-half row, served or not (for a cvr model: clicks of every bid type), raw output
                full = ev.metrics(rows.y[rows.report], p_eval[rows.report])
                lineage["metrics"].update({"allRowsNote": "report half, every bid type, uncalibrated: not served",
                                           "allRowsRows": full["n"], "allRowsAuc": full["auc"],
                                           "allRowsNe": full["ne"], "allRowsCalibration": full["calibration"]})
            info = {"name": name, "variant": best, "bytes": model_path.stat().st_size,
                    "selectionAuc": choice.selection_auc[best], "auc": m["auc"] or float("nan"),
                    "ne": m["ne"], "reportRows": m["n"], "parity": parity["maxAbsDiff"],
                    "parityShapes": parity["shapes"], "version": None, "calibration": calibration,
                    "calibrationFit": fit, "uncalibratedCalibration": raw["calibration"],
                    "calibrated": m["calibration"]}
            if objective in ev.SERVED_BID_TYPE:  # report half, every bid type: where the bias is
                r = rows.report
                info["byBidType"] = {
                    bt_name: _rates(rows.y[r & k], p_eval[r & k], ev.calibrated(p_eval[r & k], calibration),
                                    rows.oracle[r & k])
                    for i, bt_name in enumerate(world.bid_types) for k in [rows.bid_type == i]}
            log(f"{name}: exported {best} (selection-half mean AUC {info['selectionAuc']:.4f}, report-half AUC "
                f"{info['auc']:.4f} on {m['n']} rows; {info['bytes']} bytes, {count_params(net)} params), parity max "
                f"|diff| {parity['maxAbsDiff']:.2e} over {parity['shapes']}, ORT {ms:.3f} ms / 500 candidates")
            if repo is not None and not args.no_publish:
                manifest = build_manifest(name, 1, surface, objective, model_path, spec, calibration, lineage,
                                          ev.quantiles(p_eval))
                version, final = publish(repo, name, model_path, manifest, golden)
                published[name] = version
                info["version"] = version
                log(f"{name}: published version {version} -> {final}")
            extra["published"].append(info)
        finally:
            # publish() copied the model into the repository; the export is not needed past here.
            shutil.rmtree(tmp, ignore_errors=True)
    if repo is not None and published:
        rollout = route_published(repo, published, args.rollout)
        if rollout is None:
            log(f"rollout.json kept as it was (--rollout keep): {published} published unrouted; promote through a canary")
        else:
            log(f"rollout.json updated: {published} stable")
            routed = {m for r in rollout["routes"].values() for m in r.values()}
            if unrouted := sorted(set(published) - routed):
                log.warn(f"{unrouted} stable but on no surface's route: existing routes are kept, and a new one "
                         "needs flags for both its ctr and cvr model (set routes through the admin API)")

    report = write_report(out_dir, meta, results, extra)
    log(f"report: {report}")
    print_summary(summary, log)
    return {"runId": run_id, "out": str(out_dir), "summary": summary, "published": published, "extra": extra}


def print_summary(summary: dict, log) -> None:
    for name, s in summary.items():
        cells = " | ".join(f"{v}: {s[v]['auc'][0]:.4f}±{s[v]['auc'][1]:.4f}" for v in VARIANTS if v in s)
        log(f"{name} AUC {cells} | ratio {', '.join(f'{k}={x:.2f}' for k, x in s['_ratio'].items())}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gemlite")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train teacher + students, evaluate, report, export, publish")
    r.add_argument("--world", required=True)
    r.add_argument("--repo", default="models")
    r.add_argument("--scale", choices=list(SCALES), default="small")
    r.add_argument("--seeds", default="1")
    r.add_argument("--tasks", default="")
    r.add_argument("--out", default="")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--no-publish", action="store_true")
    r.add_argument("--rollout", choices=["stable", "keep"], default="stable",
                   help="stable: published versions become stable; keep: leave an existing rollout.json untouched")
    r.add_argument("--teacher", default="",
                   help="reuse a teacher.pt of an earlier run (same scale); its version and days come from its teacher.json")
    r.add_argument("--quiet", action="store_true")
    s = sub.add_parser("synth", help="write a tiny synthetic world in the shard layout")
    s.add_argument("--out", required=True)
    s.add_argument("--days", type=int, default=4)
    s.add_argument("--users", type=int, default=120)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args)
    elif args.cmd == "synth":
        from .synthworld import generate
        print(generate(args.out, days=args.days, users=args.users))
    return 0


if __name__ == "__main__":
    sys.exit(main())
