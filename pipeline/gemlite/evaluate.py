"""Offline metrics: AUC, log-loss, normalized entropy, calibration; and the oracle's numbers.
Also the held-out choice of the published variant (`report_half`, `select_variant`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .hashing import HASH_FUNCTION, hash_ids

EPS = 1e-7


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC by ranks (ties get their average rank)."""
    y = np.asarray(y).astype(np.float64).ravel()
    p = np.asarray(p).astype(np.float64).ravel()
    pos = y.sum()
    neg = y.size - pos
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    ranks = np.empty(p.size, dtype=np.float64)
    n = p.size
    # average ranks over ties
    boundaries = np.nonzero(np.diff(ps))[0] + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [n]])
    avg = (starts + ends + 1) / 2.0  # 1-based average rank
    ranks_sorted = np.repeat(avg, ends - starts)
    ranks[order] = ranks_sorted
    return float((ranks[y > 0].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y, np.float64)
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()) if y.size else float("nan")


def normalized_entropy(y: np.ndarray, p: np.ndarray) -> float:
    """Log-loss divided by the entropy of the base rate (lower is better, 1 = predicting the mean)."""
    y = np.asarray(y, np.float64)
    r = float(np.clip(y.mean(), EPS, 1 - EPS)) if y.size else 0.5
    h = -(r * math.log(r) + (1 - r) * math.log(1 - r))
    return logloss(y, p) / h


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict:
    """Predicted vs observed rate overall, their ratio, and expected calibration error over quantile bins."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    pred, obs = float(p.mean()), float(y.mean())
    ece = 0.0
    table = []
    if p.size:
        edges = np.quantile(p, np.linspace(0, 1, bins + 1))
        idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
        for b in range(bins):
            m = idx == b
            if m.any():
                pb, ob = float(p[m].mean()), float(y[m].mean())
                ece += m.mean() * abs(pb - ob)
                table.append((pb, ob, int(m.sum())))
    return {"predictedRate": pred, "observedRate": obs, "ratio": pred / obs if obs > 0 else None,
            "ece": float(ece), "bins": table}


def metrics(y: np.ndarray, p: np.ndarray, oracle: np.ndarray | None = None) -> dict:
    out = {
        "n": int(np.asarray(y).size),
        "auc": auc(y, p),
        "logloss": logloss(y, p),
        "ne": normalized_entropy(y, p),
    }
    cal = calibration(y, p)
    out.update({"predictedRate": cal["predictedRate"], "observedRate": cal["observedRate"],
                "calibration": cal["ratio"], "ece": cal["ece"]})
    if oracle is not None:
        out["oracleAuc"] = auc(y, oracle)
        out["oracleLogloss"] = logloss(y, oracle)
        out["oracleNe"] = normalized_entropy(y, oracle)
        # how close the model's probabilities are to the truth (not observable in production)
        out["oracleMse"] = float(np.mean((np.asarray(p, np.float64) - np.asarray(oracle, np.float64)) ** 2))
    return out


def quantiles(p: np.ndarray) -> dict:
    q = np.quantile(np.asarray(p, np.float64), [0.01, 0.10, 0.50, 0.90, 0.99])
    return {k: float(v) for k, v in zip(["p01", "p10", "p50", "p90", "p99"], q)}


# ------------------------------------------------------------------------------ held-out selection
# Choosing the best of several variants on a set and reporting the winner's score on that same set
# reports the maximum of noisy estimates, biased upward (winner's curse). So the eval users are split
# in two: the variant is chosen on the selection half, and what is published about it is measured on
# the report half. Whole users, so one user's impressions (correlated through the user's features and
# history) never straddle the halves; a hash of the id, not a random draw, so the halves are the same
# across runs, variants and versions, and the server's twin of the hash (src/features/id-hash.ts
# hashId) can reproduce them.
EVAL_SPLIT_SALT = 0x5E1EC701
EVAL_SPLIT = (f"report half = eval users with hashId(userId, salt {EVAL_SPLIT_SALT:#x}, buckets 3) == 2 "
              f"({HASH_FUNCTION}); selection half = the others (== 1)")


def report_half(user_ids: np.ndarray) -> np.ndarray:
    """True for the rows of users in the report half, False for those in the selection half."""
    # hash_ids maps into 1..buckets-1, so 3 buckets give 1 or 2: one bit of the user's hash.
    return hash_ids(np.asarray(user_ids, np.int64), EVAL_SPLIT_SALT, 3) == 2


@dataclass
class Selection:
    variant: str
    selection_auc: dict[str, float]  # per candidate: mean AUC over seeds on the selection half (nan: none)
    report: dict  # metrics() of the chosen variant's first seed on the report half


def _mean_auc(aucs: list[float | None]) -> float:
    vals = [a for a in aucs if a is not None and not math.isnan(a)]
    return float(np.mean(vals)) if vals else float("nan")


def select_variant(y: np.ndarray, oracle: np.ndarray, preds: dict[str, list[np.ndarray]], report: np.ndarray,
                   candidates: Sequence[str]) -> Selection:
    """Choose among `candidates` on the selection half (~report), measure the choice on the report half.

    preds[v][i] = scores of seed i of variant v on every eval row, in the row order of y, oracle, report.
    The best mean AUC over seeds wins; a seed without an AUC is left out of the mean, a variant with no
    AUC at all ranks last, ties go to the earlier candidate. The first seed's weights are the ones
    exported, so the first seed is the one measured.
    """
    y, oracle, report = np.asarray(y), np.asarray(oracle), np.asarray(report, bool)
    select = ~report
    sel_auc = {v: _mean_auc([auc(y[select], p[select]) for p in preds[v]]) for v in candidates}
    best = max(candidates, key=lambda v: -1.0 if math.isnan(sel_auc[v]) else sel_auc[v])
    return Selection(best, sel_auc, metrics(y[report], preds[best][0][report], oracle[report]))


# ------------------------------------------------------------------------------ served population
# The server asks a cvr model for pCVR only on the candidates whose bidType is cpa (src/ranking/
# rank-service.ts cpaSubset), and the world's truth converts cpa clicks at a higher rate than the others
# (world/truth.ts kBidTypeConv) that the student, which does not see bid type, cannot tell apart. A cvr
# student is therefore graded (and calibrated) on clicks on cpa candidates; a ctr model scores every
# candidate, so all of its task's impressions are served.
SERVED_BID_TYPE = {"cvr": "cpa"}


def served_population(objective: str, surfaces: str) -> str:
    """Words for the rows a model of `objective` is graded on (lineage.metrics.evalPopulation)."""
    if objective in SERVED_BID_TYPE:
        return f"clicks on {SERVED_BID_TYPE[objective]} candidates ({surfaces}): the rows the server asks pCVR for"
    return f"impressions ({surfaces})"


def served_rows(objective: str, bid_type: np.ndarray, bid_types: Sequence[str]) -> np.ndarray:
    """True for the rows the server would score with a model of `objective` (bid_type: index per row)."""
    bid_type = np.asarray(bid_type)
    want = SERVED_BID_TYPE.get(objective)
    if want is None:
        return np.ones(bid_type.shape, bool)
    if want not in bid_types:
        return np.zeros(bid_type.shape, bool)
    return bid_type == list(bid_types).index(want)


# ------------------------------------------------------------------------------ Platt calibration
# The server serves sigmoid(slope * logit(p) + intercept) for a manifest calibration {"method": "platt"},
# p clamped to [1e-7, 1 - 1e-7] first (docs/CONTRACTS.md "Calibration"); the same clamp here.
PLATT_EPS = 1e-7
PLATT_MIN_POSITIVES = 20  # and as many negatives: fewer, and the fit is mostly noise
PLATT_MIN_NEGATIVES = 20
# Below this many positives only the intercept is fit (slope 1): the shift of the rate that the served
# population needs. A weak student's logits have a narrow spread, and on a few dozen conversions the
# maximum-likelihood slope stretched them 3-7x (3.2 on a 16k-user world with 53 conversions).
PLATT_SLOPE_MIN_POSITIVES = 200


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), PLATT_EPS, 1 - PLATT_EPS)
    return np.log(p) - np.log1p(-p)


def apply_platt(p: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """What the server serves for raw scores p under a platt calibration."""
    return 1.0 / (1.0 + np.exp(-(slope * logit(p) + intercept)))


def fit_platt(p: np.ndarray, y: np.ndarray, steps: int = 100, l2: float = 1e-6, tol: float = 1e-10,
              fit_slope: bool = True) -> tuple[float, float]:
    """(slope, intercept) of the logistic regression of y on logit(p), by Newton's method from the
    identity (1, 0), each step halved until the loss does not grow. A tiny ridge towards the identity
    (l2 * n) keeps the Hessian invertible and the answer finite on separable data. With fit_slope
    False the slope stays 1 and only the intercept is fit."""
    x = logit(p)
    y = np.asarray(y, np.float64).ravel()
    if x.size != y.size or x.size == 0:
        raise ValueError(f"fit_platt: {x.size} scores and {y.size} labels")
    offset = np.zeros_like(x) if fit_slope else x
    X = np.stack([x, np.ones_like(x)], 1) if fit_slope else np.ones_like(x)[:, None]
    w0 = np.array([1.0, 0.0]) if fit_slope else np.array([0.0])
    reg = l2 * x.size

    def loss(w):
        z = offset + X @ w  # -log sigmoid(z) for positives, -log(1 - sigmoid(z)) for negatives
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * reg * np.sum((w - w0) ** 2))

    w = w0.copy()
    cur = loss(w)
    for _ in range(steps):
        q = 1.0 / (1.0 + np.exp(-np.clip(offset + X @ w, -500, 500)))
        grad = X.T @ (q - y) + reg * (w - w0)
        hess = (X * (q * (1 - q))[:, None]).T @ X + reg * np.eye(w.size)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-10 and not loss(w - t * step) <= cur:
            t *= 0.5
        if t <= 1e-10:
            break
        w = w - t * step
        new = loss(w)
        done = float(np.abs(t * step).max()) < tol or cur - new < tol * max(1.0, abs(cur))
        cur = new
        if done:
            break
    if not np.all(np.isfinite(w)):
        raise ValueError("fit_platt: the fit did not converge")
    return (float(w[0]), float(w[1])) if fit_slope else (1.0, float(w[0]))


def platt_calibration(y: np.ndarray, p: np.ndarray, min_positives: int = PLATT_MIN_POSITIVES,
                      min_negatives: int = PLATT_MIN_NEGATIVES) -> tuple[dict, str]:
    """A manifest calibration fit on (y, p): platt when there are enough positives and negatives and the
    fitted slope is positive (the served order of candidates stays the model's), else identity. Also says, in words, what was done (for the log and lineage.metrics.calibrationFit)."""
    y = np.asarray(y, np.float64).ravel()
    pos, neg = int(y.sum()), int(y.size - y.sum())
    if pos < min_positives or neg < min_negatives:
        return ({"method": "identity"},
                f"identity: {pos} positives / {neg} negatives to fit on, fewer than {min_positives} / {min_negatives}")
    fit_slope = pos >= PLATT_SLOPE_MIN_POSITIVES
    slope, intercept = fit_platt(p, y, fit_slope=fit_slope)
    what = "platt" if fit_slope else f"platt, intercept only (fewer than {PLATT_SLOPE_MIN_POSITIVES} positives to fit a slope)"
    if not slope > 0:  # served, it would reverse the model's ranking of the candidates
        return ({"method": "identity"},
                f"identity: the fit on {y.size} rows ({pos} positives) has slope {slope:.3g}, not positive")
    return ({"method": "platt", "slope": slope, "intercept": intercept},
            f"{what} fit on {y.size} rows ({pos} positives)")


def calibrated(p: np.ndarray, calibration: dict) -> np.ndarray:
    """The scores the server serves for raw scores p under a manifest calibration."""
    if calibration.get("method") == "platt":
        return apply_platt(p, calibration["slope"], calibration["intercept"])
    return np.asarray(p, np.float64)
