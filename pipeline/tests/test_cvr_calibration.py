"""A cvr student is graded and calibrated on the rows the server asks it for: clicks on cpa candidates.

The server scores pCVR only for cpa candidates (src/ranking/rank-service.ts cpaSubset) and the world's truth
converts cpa clicks more often (world/truth.ts kBidTypeConv), which the student, blind to bid type, cannot
see: graded on every click, feed-cvr looked calibrated while its served cpa pCVR was ~21% low. Now its
metrics are on cpa clicks and a Platt calibration, fit on the selection half's cpa clicks, is published.
"""
import json
import math
import tempfile
from argparse import Namespace

import numpy as np
import pytest
import torch

from pipeline.gemlite import evaluate as ev
from pipeline.gemlite.data import Task, World, fit_feature_spec, plan_batches, student_batch
from pipeline.gemlite.distill import bid_types, build_cache
from pipeline.gemlite.publish import validate_manifest


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------------------------- the Platt fit
def test_platt_fit_recovers_a_known_slope_and_intercept():
    rng = np.random.default_rng(5)
    z = rng.normal(-2.0, 1.2, 200_000)  # the model's logit
    p = _sigmoid(z)
    for slope, intercept in [(0.7, 0.4), (1.3, -0.5), (1.0, 0.0)]:
        y = (rng.random(z.size) < _sigmoid(slope * z + intercept)).astype(np.float64)
        a, b = ev.fit_platt(p, y)
        assert abs(a - slope) < 0.03 and abs(b - intercept) < 0.06, (slope, intercept, a, b)
        # the fit is the maximum likelihood: no nearby (slope, intercept) does better
        def nll(a_, b_):
            q = np.clip(ev.apply_platt(p, a_, b_), 1e-12, 1 - 1e-12)
            return -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
        best = nll(a, b)
        assert all(nll(a + da, b + db) >= best for da in (-0.02, 0.02) for db in (-0.02, 0.02))


def test_platt_is_the_servers_formula_and_needs_enough_positives():
    # src/models/probabilities.ts: p clamped to [1e-7, 1 - 1e-7], then sigmoid(slope * logit(p) + intercept)
    p = np.array([0.0, 1e-9, 0.03, 0.5, 0.97, 1.0])
    c = np.clip(p, 1e-7, 1 - 1e-7)
    want = 1 / (1 + np.exp(-(0.8 * np.log(c / (1 - c)) + 0.3)))
    assert np.allclose(ev.apply_platt(p, 0.8, 0.3), want, rtol=1e-12, atol=0)
    assert np.array_equal(ev.calibrated(p, {"method": "identity"}), p)
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.01, 0.2, 400)
    y = np.zeros(400)
    y[:ev.PLATT_MIN_POSITIVES - 1] = 1
    cal, why = ev.platt_calibration(y, scores)
    assert cal == {"method": "identity"} and "fewer than" in why
    y[ev.PLATT_MIN_POSITIVES - 1] = 1
    cal, why = ev.platt_calibration(y, scores)
    # 20 positives: enough to shift the rate (the observed 5% against a mean score of ~10.5%), too few
    # for a slope
    assert cal["method"] == "platt" and cal["slope"] == 1.0 and "intercept only" in why, (cal, why)
    assert abs(ev.apply_platt(scores, cal["slope"], cal["intercept"]).mean() - y.mean()) < 1e-3
    # with enough positives to fit a slope, scores that rank the positives last would be served in
    # reverse: no fit
    y = np.zeros(4 * ev.PLATT_SLOPE_MIN_POSITIVES)
    y[:ev.PLATT_SLOPE_MIN_POSITIVES] = 1
    cal, why = ev.platt_calibration(y, np.where(y > 0, 0.01, 0.2))
    assert cal == {"method": "identity"} and "not positive" in why


def test_cvr_rows_are_the_clicks_on_cpa_candidates(tiny_world):
    world = World(tiny_world)
    days = [d.day for d in world.days]
    spec = fit_feature_spec(world, days[:-1], ad_buckets=1009, adv_buckets=211, cat_buckets=101)
    cache = build_cache(world, spec, Task("feed-cvr", None, "cvr", clicked_only=True), days[-1:], 64, 0, None)
    day = world.day(days[-1])
    clicked = np.nonzero(np.asarray(day.imp_click) > 0)[0]
    bt = bid_types(cache)
    # every click once, each with its candidate's bid type from the shard (imp_bid_type)
    assert sorted(bt.tolist()) == sorted(np.asarray(day.imp_bid_type)[clicked].tolist())
    cpa = world.bid_types.index("cpa")
    assert np.array_equal(ev.served_rows("cvr", bt, world.bid_types), bt == cpa)
    assert ev.served_rows("ctr", bt, world.bid_types).all()


# ---------------------------------------------------------------------------- a cvr publish, end to end
@pytest.fixture(scope="module")
def cvr_run(tmp_path_factory):
    """feed-cvr alone on a small synthetic world where cpa clicks convert more (+1 logit, like kBidTypeConv)."""
    from pipeline.gemlite.cli import run
    from pipeline.gemlite.synthworld import generate

    base = tmp_path_factory.mktemp("cvr")
    world = generate(base / "w", days=3, users=400, ads=300, imps_per_user=25, prior_events=40, seed=11,
                     bid_type_conv=(0.0, 1.0, 0.0))
    args = Namespace(world=str(world), repo=str(base / "repo"), scale="tiny", seeds="1", tasks="feed-cvr",
                     out=str(base / "run"), threads=1, no_publish=False, quiet=True, teacher="", rollout="stable")
    previous, tempfile.tempdir = tempfile.tempdir, str(base)
    try:
        result = run(args)
    finally:
        tempfile.tempdir = previous
    manifest = json.loads((base / "repo" / "feed-cvr" / "1" / "manifest.json").read_text())
    return {"world": World(world), "manifest": manifest, "result": result, "vdir": base / "repo" / "feed-cvr" / "1"}


def _eval_clicks(world):
    """The eval day's clicks (every surface): labels, cpa mask and report-half mask, from the shards."""
    day = world.days[-1]  # 3 days: one eval day, the last
    clicked = np.asarray(day.imp_click) > 0
    users = np.asarray(day.user_id)[np.asarray(day.imp_user_row)]
    cpa = np.asarray(day.imp_bid_type) == world.bid_types.index("cpa")
    return np.asarray(day.imp_conv), clicked, cpa, ev.report_half(users)


def test_cvr_publish_grades_on_cpa_clicks_and_writes_a_platt_calibration(cvr_run):
    world, manifest = cvr_run["world"], cvr_run["manifest"]
    validate_manifest(manifest)  # the server's schema accepts it, and it holds no NaN
    cal, metrics = manifest["calibration"], manifest["lineage"]["metrics"]
    conv, clicked, cpa, report = _eval_clicks(world)
    # graded on the cpa clicks of the report half (and chosen / calibrated on those of the selection half)
    assert metrics["evalRows"] == int((clicked & cpa & report).sum())
    assert metrics["selectionRows"] == int((clicked & cpa & ~report).sum())
    assert np.isclose(cal["observedRate"], conv[clicked & cpa & report].mean())
    assert "cpa" in metrics["evalPopulation"]
    # every click of the report half only as a labelled comparison
    assert metrics["allRowsRows"] == int((clicked & report).sum()) and "every bid type" in metrics["allRowsNote"]
    assert cal["method"] == "platt" and metrics["calibrationFit"].startswith("platt")
    assert math.isfinite(cal["slope"]) and math.isfinite(cal["intercept"])
    assert np.isclose(metrics["calibration"], cal["predictedRate"] / cal["observedRate"])
    # the student under-predicts cpa clicks; calibrated, the served rate is closer to the observed one
    assert metrics["uncalibratedCalibration"] < 0.85
    assert abs(math.log(metrics["calibration"])) < abs(math.log(metrics["uncalibratedCalibration"]))


@torch.no_grad()
def test_cvr_platt_is_fit_on_the_selection_half_and_measured_on_the_report_half(cvr_run):
    # Recompute from the published ONNX: the Platt fit on the selection half's cpa clicks is the
    # manifest's, and the report half's calibrated mean is its predictedRate.
    from pipeline.gemlite.reexport import spec_from_manifest, student_from_onnx
    from pipeline.gemlite.teacher import to_torch

    world, manifest = cvr_run["world"], cvr_run["manifest"]
    spec = spec_from_manifest(manifest)
    net = student_from_onnx(cvr_run["vdir"] / "model.onnx", spec)
    day = world.days[-1]
    users = np.asarray(day.user_id)[np.asarray(day.imp_user_row)]
    P, Y, CPA, REP = [], [], [], []
    for plan in plan_batches(world, Task("cvr", None, "cvr", clicked_only=True), [day.day], spec.max_length,
                             spec.buckets, 512, None):
        main, _ = net.forward_train(to_torch(student_batch(world, spec, plan)))
        P.append(torch.sigmoid(main).numpy())
        Y.append(np.asarray(day.imp_conv)[plan.imps])
        CPA.append(np.asarray(day.imp_bid_type)[plan.imps] == world.bid_types.index("cpa"))
        REP.append(ev.report_half(users[plan.imps]))
    p, y, cpa, rep = map(np.concatenate, (P, Y, CPA, REP))
    fit = cpa & ~rep
    slope, intercept = ev.fit_platt(p[fit], y[fit], fit_slope=int(y[fit].sum()) >= ev.PLATT_SLOPE_MIN_POSITIVES)
    cal = manifest["calibration"]
    assert np.isclose(slope, cal["slope"], rtol=1e-3, atol=1e-3)
    assert np.isclose(intercept, cal["intercept"], rtol=1e-3, atol=1e-3)
    served = ev.apply_platt(p[cpa & rep], cal["slope"], cal["intercept"])
    assert np.isclose(served.mean(), cal["predictedRate"], rtol=1e-4)


def test_cvr_with_too_few_cpa_positives_keeps_identity_and_says_so(tiny_run):
    # The tiny world's eval day has a handful of cpa conversions: no fit, identity, and the lineage says why.
    m = json.loads((tiny_run["repo"] / "feed-cvr" / "1" / "manifest.json").read_text())
    validate_manifest(m)
    assert m["calibration"]["method"] == "identity"
    metrics = m["lineage"]["metrics"]
    assert metrics["calibrationFit"].startswith("identity") and "fewer than 20" in metrics["calibrationFit"]
    conv, clicked, cpa, report = _eval_clicks(World(tiny_run["world"]))
    assert metrics["evalRows"] == int((clicked & cpa & report).sum()) < int((clicked & report).sum())
    ctr = json.loads((tiny_run["repo"] / "feed-ctr" / "1" / "manifest.json").read_text())
    assert ctr["calibration"]["method"] == "identity" and ctr["lineage"]["metrics"]["evalPopulation"].startswith("impressions")


def test_platt_fits_only_the_intercept_on_few_positives():
    # A weak score (narrow logit spread) on a population whose rate is 3x its mean: on a few dozen
    # positives the full fit stretched the logits several-fold; only the rate shift is kept.
    rng = np.random.default_rng(5)
    z = rng.normal(-3.5, 0.25, 2000)
    y = (rng.random(z.size) < _sigmoid(2.5 * (z + 3.5) - 2.8)).astype(np.float64)
    assert 20 <= y.sum() < ev.PLATT_SLOPE_MIN_POSITIVES, y.sum()
    cal, why = ev.platt_calibration(y, _sigmoid(z))
    assert cal["method"] == "platt" and cal["slope"] == 1.0 and "intercept only" in why, (cal, why)
    served = ev.apply_platt(_sigmoid(z), cal["slope"], cal["intercept"])
    assert abs(served.mean() - y.mean()) < 1e-3 * max(1.0, y.mean() * 100), (served.mean(), y.mean())
