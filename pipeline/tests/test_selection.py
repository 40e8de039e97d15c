"""The published variant is chosen on one half of the eval users and measured on the other.

Choosing the best of three variants on the eval rows and publishing the winner's AUC on those same rows
reported the maximum of noisy estimates (winner's curse); the closed loop's offline delta inherited it.
"""
import numpy as np

from pipeline.gemlite import evaluate as ev
from pipeline.gemlite.data import Task, fit_feature_spec, World
from pipeline.gemlite.distill import build_cache, user_ids
from pipeline.gemlite.hashing import hash_id


# ------------------------------------------------------------------------------------ the user split
def test_user_split_is_deterministic_balanced_and_keeps_users_whole():
    rng = np.random.default_rng(0)
    users = rng.choice(2**40, size=20_000, replace=False).astype(np.int64) + 1000
    rows = rng.permutation(np.repeat(users, 3))  # three impressions per user, shuffled
    half = ev.report_half(rows)
    assert np.array_equal(half, ev.report_half(rows.copy()))  # same ids, same halves
    assert set(rows[half]).isdisjoint(rows[~half])  # no user on both sides
    assert 0.48 < half.mean() < 0.52
    sequential = np.arange(1, 10_001, dtype=np.int64)  # small consecutive ids mix as well
    assert 0.47 < ev.report_half(sequential).mean() < 0.53


def test_user_split_is_the_id_hash_so_the_server_can_reproduce_it():
    # hash_id is the scalar twin of src/features/id-hash.ts hashId (both pinned by schemas/hash-vectors.json)
    ids = [0, 1, 1000, 123_456_789, 2**40 + 17, 2**53 - 1]
    assert ev.report_half(np.array(ids)).tolist() == [hash_id(i, ev.EVAL_SPLIT_SALT, 3) == 2 for i in ids]
    assert f"{ev.EVAL_SPLIT_SALT:#x}" in ev.EVAL_SPLIT


def test_eval_cache_carries_each_rows_user(tiny_world):
    world = World(tiny_world)
    days = [d.day for d in world.days]
    spec = fit_feature_spec(world, days[:-1], ad_buckets=1009, adv_buckets=211, cat_buckets=101)
    cache = build_cache(world, spec, Task("feed-ctr", [0], "ctr"), days[-1:], 64, 0, None)
    day = world.day(days[-1])
    assert set(user_ids(cache)) <= set(np.asarray(day.user_id).tolist())
    for c in cache:  # one request (req_idx) per user row: its impressions share one user, users differ
        per_request = {int(r): set(c.user_id[c.x["req_idx"].numpy() == r].tolist()) for r in np.unique(c.x["req_idx"])}
        assert all(len(u) == 1 for u in per_request.values())
        assert len({next(iter(u)) for u in per_request.values()}) == len(per_request)


# ------------------------------------------------------------------------------------- the selection
def _halves(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float32)
    report = np.arange(n) % 2 == 1
    return rng, y, report


def _scores(y, rng, quality):
    """Scores with AUC roughly `quality` (1 perfect, 0.5 noise, 0 inverted)."""
    noise = rng.random(y.size)
    if quality >= 0.5:
        return (2 * (quality - 0.5) * y + (1 - 2 * (quality - 0.5)) * noise) * 0.9 + 0.05
    return 1 - _scores(y, rng, 1 - quality)


def _mix(report, on_selection, on_report):
    return np.where(report, on_report, on_selection).astype(np.float32)


def test_variant_is_chosen_on_the_selection_half_and_measured_on_the_report_half():
    rng, y, report = _halves()
    oracle = np.full(y.size, 0.3, np.float32)
    # "kd" wins the selection half but is inverted on the report half; "none" is the other way round,
    # so it has the best AUC over all rows: choosing on every row would publish "none".
    kd = _mix(report, _scores(y, rng, 1.0), _scores(y, rng, 0.0))
    none = _mix(report, _scores(y, rng, 0.7), _scores(y, rng, 1.0))
    preds = {"none": [none], "kd": [kd]}
    assert ev.auc(y, none) > ev.auc(y, kd)

    choice = ev.select_variant(y, oracle, preds, report, ["none", "kd"])

    assert choice.variant == "kd"
    assert choice.selection_auc["kd"] == 1.0
    assert choice.report == ev.metrics(y[report], kd[report], oracle[report])
    assert choice.report["auc"] == 0.0 and choice.report["n"] == int(report.sum())


def test_selection_averages_seeds_and_reports_the_first_seed():
    rng, y, report = _halves(seed=1)
    oracle = np.full(y.size, 0.3, np.float32)
    # kd's first seed is the better one on the selection half, but its mean over seeds loses to none's
    kd = [_scores(y, rng, 0.95), _scores(y, rng, 0.55)]
    none = [_scores(y, rng, 0.85), _scores(y, rng, 0.85)]
    choice = ev.select_variant(y, oracle, {"none": none, "kd": kd}, report, ["none", "kd"])
    assert choice.variant == "none"
    assert choice.report == ev.metrics(y[report], none[0][report], oracle[report])  # seed 0 is the one exported


def test_selection_ties_and_missing_auc_go_to_the_earlier_candidate():
    rng, y, report = _halves(seed=2)
    oracle = np.full(y.size, 0.3, np.float32)
    p = _scores(y, rng, 0.8)
    assert ev.select_variant(y, oracle, {"none": [p], "kd": [p.copy()]}, report, ["none", "kd"]).variant == "none"
    y_no_selection_positive = np.where(report, y, 0).astype(np.float32)  # no AUC on the selection half
    choice = ev.select_variant(y_no_selection_positive, oracle, {"none": [p], "kd": [1 - p]}, report, ["kd", "none"])
    assert choice.variant == "kd" and np.isnan(choice.selection_auc["kd"])
    assert choice.report["auc"] is not None
