"""A tiny synthetic world in the docs/CONTRACTS.md shard layout, for tests and offline development.

It is *not* the world simulator (world/, TypeScript); it only mimics its output format, with a simple
known click / conversion model (user category interests that drift day to day, ad quality, surface
effects) so that the pipeline can be exercised end to end without it. `bid_type_conv` adds a logit per
bid type (cpc, cpa, cpm) to P(conversion), like the world's kBidTypeConv (world/truth.ts); none by default.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import BID_TYPES, DAY_MS, EVENTS, SURFACES

EPOCH_MS = 1_767_225_600_000  # 2026-01-01


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _auc(y, p):
    from .evaluate import auc
    return auc(y, p)


def generate(out: str | Path, days: int = 4, users: int = 120, ads: int = 300, categories: int = 12,
             advertisers: int = 40, imps_per_user: float = 6.0, prior_events: int = 40, seed: int = 7,
             bid_type_conv: tuple[float, float, float] | None = None) -> Path:
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    user_ids = rng.choice(2**40, size=users, replace=False).astype(np.int64) + 1000
    age = rng.integers(0, 7, users)
    activity = rng.random(users)
    tenure = rng.exponential(300, users)
    device = rng.integers(0, 3, users)
    pref = rng.normal(0, 1.0, (users, categories))
    drift = rng.normal(0, 1.0, (users, categories))
    ad_ids = rng.choice(2**33, size=ads, replace=False).astype(np.int64) + 7
    ad_cat = rng.integers(0, categories, ads)
    ad_adv = rng.integers(0, advertisers, ads) * 101 + 5
    quality = rng.random(ads)
    creative = rng.integers(0, 3, ads)
    tier = rng.integers(0, 5, ads)
    bid = rng.gamma(2.0, 0.5, ads).astype(np.float32)
    bid_type = rng.integers(0, 3, ads)
    surf_bias = np.array([0.0, -0.3, 0.2, -0.6])
    # per-user history (lists of tuples)
    hist: list[list[tuple]] = [[] for _ in range(users)]
    for u in range(users):
        for k in range(int(rng.integers(0, prior_events + 1))):
            a = int(rng.integers(0, ads))
            ev = 1 if rng.random() < _sigmoid(pref[u, ad_cat[a]] - 1.0) else 0
            hist[u].append((ad_ids[a], ad_cat[a], int(rng.integers(0, 4)), ev, EPOCH_MS - (prior_events - k) * 3_600_000))
    shards = []
    for d in range(days):
        dpref = pref + 0.15 * d * drift
        active = np.nonzero(rng.random(users) < 0.5 + 0.5 * activity)[0]
        n_imp = rng.poisson(imps_per_user, active.size) + 1
        rows = np.repeat(np.arange(active.size), n_imp)
        m = rows.size
        uidx = active[rows]
        a = rng.integers(0, ads, m)
        s = rng.choice(4, size=m, p=[0.45, 0.25, 0.2, 0.1])
        hour = rng.integers(0, 24, m)
        ts = EPOCH_MS + d * DAY_MS + hour * 3_600_000 + rng.integers(0, 3_600_000, m)
        logit = (-2.2 + surf_bias[s] + 1.1 * dpref[uidx, ad_cat[a]] + 1.2 * (quality[a] - 0.5)
                 + 0.4 * ((creative[a] == 1) & (s == 2)) + 0.2 * np.sin(hour / 24 * 6.28))
        p_click = _sigmoid(logit).astype(np.float32)
        conv_logit = -1.5 + 0.6 * dpref[uidx, ad_cat[a]] - 0.3 * tier[a]
        if bid_type_conv is not None:
            conv_logit = conv_logit + np.asarray(bid_type_conv, np.float64)[bid_type[a]]
        p_conv = _sigmoid(conv_logit).astype(np.float32)
        click = (rng.random(m) < p_click).astype(np.uint8)
        conv = ((rng.random(m) < p_conv) & (click > 0)).astype(np.uint8)
        ddir = out / f"day-{d:03d}"
        ddir.mkdir(exist_ok=True)
        offs = [0]
        h_ad, h_cat, h_s, h_e, h_ts = [], [], [], [], []
        for u in active:
            for (x_ad, x_cat, x_s, x_e, x_ts) in hist[u]:
                h_ad.append(x_ad); h_cat.append(x_cat); h_s.append(x_s); h_e.append(x_e); h_ts.append(x_ts)
            offs.append(len(h_ad))
        arrays = {
            "user_id": user_ids[active],
            "user_dense": np.stack([age[active], activity[active], tenure[active] + d, device[active]], 1).astype(np.float32),
            "hist_offsets": np.array(offs, np.int64),
            "hist_ad_id": np.array(h_ad, np.int64), "hist_category": np.array(h_cat, np.int64),
            "hist_surface": np.array(h_s, np.int8), "hist_event": np.array(h_e, np.int8),
            "hist_ts": np.array(h_ts, np.float64),
            "imp_user_row": rows.astype(np.int32), "imp_surface": s.astype(np.int8),
            "imp_hour": hour.astype(np.int8), "imp_ts": ts.astype(np.float64),
            "imp_ad_id": ad_ids[a], "imp_advertiser_id": ad_adv[a].astype(np.int64),
            "imp_category": ad_cat[a].astype(np.int64),
            "imp_ad_dense": np.stack([quality[a], creative[a], tier[a]], 1).astype(np.float32),
            "imp_bid": bid[a], "imp_bid_type": bid_type[a].astype(np.int8),
            "imp_click": click, "imp_conv": conv, "imp_p_click": p_click, "imp_p_conv": p_conv,
        }
        for k, v in arrays.items():
            np.save(ddir / f"{k}.npy", v)
        order = np.argsort(ts)
        for i in order:
            u = uidx[i]
            hist[u].append((ad_ids[a[i]], ad_cat[a[i]], int(s[i]), 0, float(ts[i])))
            if click[i]:
                hist[u].append((ad_ids[a[i]], ad_cat[a[i]], int(s[i]), 1, float(ts[i]) + 1000))
            if conv[i]:
                hist[u].append((ad_ids[a[i]], ad_cat[a[i]], int(s[i]), 2, float(ts[i]) + 60000))
        per = {}
        for si, name in enumerate(SURFACES):
            mm = s == si
            per[name] = {"impressions": int(mm.sum()), "clickRate": float(click[mm].mean()) if mm.any() else 0.0,
                         "convRate": float(conv[mm].mean()) if mm.any() else 0.0}
        cm = click > 0
        shards.append({
            "day": d, "dir": f"day-{d:03d}", "impressions": int(m), "users": int(active.size),
            "historyEvents": len(h_ad), "clickRate": float(click.mean()), "convRate": float(conv.mean()),
            "perSurface": per,
            "oracle": {"clickAuc": _auc(click, p_click), "clickLogLoss": None,
                       "convAuc": _auc(conv[cm], p_conv[cm]) if cm.any() else None, "convLogLoss": None},
        })
    index = {
        "seed": seed, "days": days, "users": users, "ads": ads, "advertisers": advertisers,
        "categories": categories, "epochMs": EPOCH_MS, "surfaces": SURFACES, "events": EVENTS,
        "bidTypes": BID_TYPES,
        "userDense": [{"name": "age_bucket"}, {"name": "activity"}, {"name": "tenure_days"},
                      {"name": "device", "values": ["ios", "android", "web"]}],
        "adDense": [{"name": "quality"}, {"name": "creative", "values": ["image", "video", "carousel"]},
                    {"name": "price_tier"}],
        "shards": shards, "drift": {"kind": "synthetic", "perDay": 0.15},
    }
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return out
