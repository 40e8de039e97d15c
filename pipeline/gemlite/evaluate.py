"""Offline metrics: AUC, log-loss, normalized entropy, calibration; and the oracle's numbers."""
from __future__ import annotations

import math

import numpy as np

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
