"""Shard reader and feature builder.

Reads the world's training shards (docs/CONTRACTS.md: `index.json` + `day-NNN/*.npy`), turns jagged
histories into length-bucketed padded batches, and builds student input tensors *exactly* as the
server builds them from a /v1/rank request (src/features/encode.ts): ids hashed with (salt, buckets),
enums as index+1 with 0 = pad, the newest L history events left-aligned, dense transforms
standardize / log1p_standardize / onehot computed in float64 and stored as float32.

`request_tensors()` is the reference of the request path; `shard_batch()` builds the same tensors from
shard rows; tests check they agree.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .hashing import hash_ids

SURFACES = ["feed", "stories", "reels", "marketplace"]
EVENTS = ["impression", "click", "conversion"]
BID_TYPES = ["cpc", "cpa", "cpm"]
DAY_MS = 86_400_000


# ----------------------------------------------------------------------------------------- shards
class Day:
    """One simulated day, arrays memory-mapped."""

    _FILES = [
        "user_id", "user_dense", "hist_offsets", "hist_ad_id", "hist_category", "hist_surface",
        "hist_event", "hist_ts", "imp_user_row", "imp_surface", "imp_hour", "imp_ts", "imp_ad_id",
        "imp_advertiser_id", "imp_category", "imp_ad_dense", "imp_bid", "imp_bid_type", "imp_click",
        "imp_conv", "imp_p_click", "imp_p_conv",
    ]

    def __init__(self, path: Path, day: int):
        self.path = path
        self.day = day
        self._cache: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_") or name not in self._FILES:
            raise AttributeError(name)
        if name not in self._cache:
            self._cache[name] = np.load(self.path / f"{name}.npy", mmap_mode="r")
        return self._cache[name]

    @property
    def n_imp(self) -> int:
        return int(self.imp_user_row.shape[0])

    def hist_len(self) -> np.ndarray:
        off = np.asarray(self.hist_offsets)
        return (off[1:] - off[:-1]).astype(np.int64)


class World:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.index = json.loads((self.root / "index.json").read_text())
        self.days: list[Day] = []
        for shard in self.index["shards"]:
            self.days.append(Day(self.root / shard["dir"], int(shard["day"])))
        self.surfaces = list(self.index.get("surfaces", SURFACES))
        self.events = list(self.index.get("events", EVENTS))
        self.bid_types = list(self.index.get("bidTypes", BID_TYPES))
        self.user_dense_meta = self.index["userDense"]
        self.ad_dense_meta = self.index["adDense"]

    @property
    def seed(self) -> int:
        return int(self.index.get("seed", 0))

    def values_of(self, meta: list[dict], name: str) -> list | None:
        for m in meta:
            if m["name"] == name:
                return m.get("values")
        return None

    def day(self, d: int) -> Day:
        for x in self.days:
            if x.day == d:
                return x
        raise KeyError(d)


# ------------------------------------------------------------------------------------ feature spec
@dataclass
class DenseFeature:
    field: str  # request path, e.g. user.features.activity, context.hour, candidate.bid
    transform: str  # standardize | log1p_standardize | onehot
    mean: float = 0.0
    std: float = 1.0
    default: float | str | None = None
    values: list | None = None

    @property
    def width(self) -> int:
        return len(self.values) if self.transform == "onehot" else 1

    def to_json(self) -> dict:
        out: dict[str, Any] = {"field": self.field, "transform": self.transform}
        if self.transform == "onehot":
            out["values"] = list(self.values or [])
        else:
            out["mean"] = float(self.mean)
            out["std"] = float(self.std)
            out["default"] = float(self.default if self.default is not None else self.mean)
        return out


@dataclass
class FeatureSpec:
    """Everything the manifest says about inputs; shared by training, export and golden."""

    ad_buckets: int = 20011
    adv_buckets: int = 2039
    cat_buckets: int = 509
    ad_salt: int = 0x0AD51D01
    adv_salt: int = 0x0ADE0002
    cat_salt: int = 0x0CA7E003
    max_length: int = 256
    buckets: list[int] = field(default_factory=lambda: [16, 64, 256])
    user_dense: list[DenseFeature] = field(default_factory=list)
    ad_dense: list[DenseFeature] = field(default_factory=list)
    surfaces: list[str] = field(default_factory=lambda: list(SURFACES))
    events: list[str] = field(default_factory=lambda: list(EVENTS))

    @property
    def du(self) -> int:
        return sum(f.width for f in self.user_dense)

    @property
    def da(self) -> int:
        return sum(f.width for f in self.ad_dense)

    def bucket_for(self, length: int) -> int:
        for b in self.buckets:
            if b >= length:
                return b
        return self.max_length

    def manifest_inputs(self, teacher_emb_dim: int = 0) -> list[dict]:
        hs = lambda salt, b: {"salt": salt, "buckets": b}  # noqa: E731
        inputs = [
            {"name": "hist_ids", "dtype": "int64", "shape": ["R", "L"],
             "source": {"kind": "history_id", "field": "adId", **hs(self.ad_salt, self.ad_buckets)}},
            {"name": "hist_category", "dtype": "int64", "shape": ["R", "L"],
             "source": {"kind": "history_id", "field": "category", **hs(self.cat_salt, self.cat_buckets)}},
            {"name": "hist_surface", "dtype": "int64", "shape": ["R", "L"],
             "source": {"kind": "history_enum", "field": "surface", "values": list(self.surfaces)}},
            {"name": "hist_event", "dtype": "int64", "shape": ["R", "L"],
             "source": {"kind": "history_enum", "field": "event", "values": list(self.events)}},
            {"name": "hist_len", "dtype": "int64", "shape": ["R"], "source": {"kind": "history_length"}},
            {"name": "user_dense", "dtype": "float32", "shape": ["R", self.du],
             "source": {"kind": "dense", "features": [f.to_json() for f in self.user_dense]}},
        ]
        if teacher_emb_dim:
            # Not part of the manifest schema's source kinds: only used offline (variant 4).
            inputs.append({"name": "user_teacher_emb", "dtype": "float32", "shape": ["R", teacher_emb_dim],
                           "source": {"kind": "teacher_embedding"}})
        inputs += [
            {"name": "ad_id", "dtype": "int64", "shape": ["N"],
             "source": {"kind": "candidate_id", "field": "adId", **hs(self.ad_salt, self.ad_buckets)}},
            {"name": "advertiser_id", "dtype": "int64", "shape": ["N"],
             "source": {"kind": "candidate_id", "field": "advertiserId", **hs(self.adv_salt, self.adv_buckets)}},
            {"name": "category", "dtype": "int64", "shape": ["N"],
             "source": {"kind": "candidate_id", "field": "category", **hs(self.cat_salt, self.cat_buckets)}},
            {"name": "ad_dense", "dtype": "float32", "shape": ["N", self.da],
             "source": {"kind": "dense", "features": [f.to_json() for f in self.ad_dense]}},
            {"name": "req_idx", "dtype": "int64", "shape": ["N"], "source": {"kind": "request_index"}},
        ]
        return inputs

    def to_json(self) -> dict:
        return {
            "ad_buckets": self.ad_buckets, "adv_buckets": self.adv_buckets, "cat_buckets": self.cat_buckets,
            "ad_salt": self.ad_salt, "adv_salt": self.adv_salt, "cat_salt": self.cat_salt,
            "max_length": self.max_length, "buckets": self.buckets,
            "user_dense": [f.__dict__ for f in self.user_dense], "ad_dense": [f.__dict__ for f in self.ad_dense],
            "surfaces": self.surfaces, "events": self.events,
        }

    @classmethod
    def from_json(cls, d: dict) -> "FeatureSpec":
        d = dict(d)
        d["user_dense"] = [DenseFeature(**f) for f in d["user_dense"]]
        d["ad_dense"] = [DenseFeature(**f) for f in d["ad_dense"]]
        return cls(**d)


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean()) if x.size else 0.0
    s = float(x.std()) if x.size else 1.0
    return round(m, 6), round(max(s, 1e-3), 6)


def fit_feature_spec(world: World, days: Sequence[int], **overrides: Any) -> FeatureSpec:
    """Choose transforms from index.json and fit normalisation statistics on the training days."""
    spec = FeatureSpec(surfaces=list(world.surfaces), events=list(world.events), **overrides)
    ud = np.concatenate([np.asarray(world.day(d).user_dense, dtype=np.float64) for d in days])
    ad = np.concatenate([np.asarray(world.day(d).imp_ad_dense, dtype=np.float64) for d in days])
    bid = np.concatenate([np.asarray(world.day(d).imp_bid, dtype=np.float64) for d in days])
    um = [m["name"] for m in world.user_dense_meta]
    am = [m["name"] for m in world.ad_dense_meta]
    col = lambda arr, names, n: arr[:, names.index(n)]  # noqa: E731

    age_vals = sorted({int(v) for v in np.unique(col(ud, um, "age_bucket"))} | set(range(7)))
    spec.user_dense = [
        DenseFeature("user.features.age_bucket", "onehot", values=age_vals),
        DenseFeature("user.features.activity", "standardize", *_mean_std(col(ud, um, "activity"))),
        DenseFeature("user.features.tenure_days", "log1p_standardize",
                     *_mean_std(np.log1p(np.maximum(col(ud, um, "tenure_days"), 0)))),
        DenseFeature("user.features.device", "onehot", values=list(world.values_of(world.user_dense_meta, "device"))),
        DenseFeature("context.hour", "onehot", values=list(range(24))),
    ]
    for f in spec.user_dense:
        if f.transform != "onehot":
            f.default = f.mean if f.transform == "standardize" else None
    tiers = sorted({int(v) for v in np.unique(col(ad, am, "price_tier"))} | set(range(5)))
    spec.ad_dense = [
        DenseFeature("candidate.features.quality", "standardize", *_mean_std(col(ad, am, "quality"))),
        DenseFeature("candidate.features.creative", "onehot", values=list(world.values_of(world.ad_dense_meta, "creative"))),
        DenseFeature("candidate.features.price_tier", "onehot", values=tiers),
        DenseFeature("candidate.bid", "log1p_standardize", *_mean_std(np.log1p(np.maximum(bid, 0)))),
    ]
    spec.ad_dense[0].default = spec.ad_dense[0].mean
    # log1p features: missing -> the raw value whose transform is the mean
    for f in spec.user_dense + spec.ad_dense:
        if f.transform == "log1p_standardize":
            f.default = round(float(math.expm1(f.mean)), 6)
    return spec


def apply_dense(features: list[DenseFeature], raw: dict[str, list]) -> np.ndarray:
    """raw: request path -> list of raw values (None = missing). Returns float32 [n, width].

    Same arithmetic as src/features/encode.ts fillDense: float64 then one cast to float32.
    """
    n = len(next(iter(raw.values()))) if raw else 0
    cols: list[np.ndarray] = []
    for f in features:
        vals = raw.get(f.field, [None] * n)
        if f.transform == "onehot":
            block = np.zeros((n, len(f.values or [])), dtype=np.float64)
            lookup = {_key(v): i for i, v in enumerate(f.values or [])}
            for r, v in enumerate(vals):
                if v is None:
                    continue
                hit = lookup.get(_key(v))
                if hit is not None:
                    block[r, hit] = 1.0
            cols.append(block)
            continue
        fallback = f.default if isinstance(f.default, (int, float)) else f.mean
        x = np.array([fallback if v is None else float(v) for v in vals], dtype=np.float64)
        if f.transform == "log1p_standardize":
            x = np.log1p(np.maximum(x, 0.0))
        cols.append(((x - f.mean) / f.std)[:, None])
    if not cols:
        return np.zeros((n, 0), dtype=np.float32)
    return np.concatenate(cols, axis=1).astype(np.float32)


def _key(v: Any) -> Any:
    # JS Map keys: numbers compare by value (1 === 1.0), strings stay strings.
    if isinstance(v, (bool, np.bool_)):
        return ("b", bool(v))
    if isinstance(v, (int, float, np.integer, np.floating)):
        return ("n", float(v))
    return ("s", str(v))


# -------------------------------------------------------------------------- shard rows -> raw values
def _dense_raw(meta: list[dict], dense: np.ndarray, prefix: str, integers: tuple[str, ...]) -> dict[str, list]:
    """Raw request values of dense feature columns: category labels, integers, or floats."""
    out: dict[str, list] = {}
    for j, m in enumerate(meta):
        vals = dense[:, j]
        if m.get("values"):
            out[prefix + m["name"]] = [m["values"][int(v)] for v in vals]
        elif m["name"] in integers:
            out[prefix + m["name"]] = [int(v) for v in vals]
        else:
            out[prefix + m["name"]] = [float(v) for v in vals]
    return out


def user_raw(world: World, day: Day, rows: np.ndarray, hours: np.ndarray) -> dict[str, list]:
    """Raw request values of user.features.* and context.* for user rows (one per request)."""
    out = _dense_raw(world.user_dense_meta, np.asarray(day.user_dense)[rows], "user.features.", ("age_bucket",))
    out["context.hour"] = [int(h) for h in hours]
    return out


def ad_raw(world: World, day: Day, imps: np.ndarray) -> dict[str, list]:
    out = _dense_raw(world.ad_dense_meta, np.asarray(day.imp_ad_dense)[imps], "candidate.features.", ("price_tier",))
    out["candidate.bid"] = [float(b) for b in np.asarray(day.imp_bid)[imps]]
    return out


def dense_fast(features: list[DenseFeature], cols: dict[str, np.ndarray]) -> np.ndarray:
    """Vectorised apply_dense for numeric shard columns (string onehots given as value indices)."""
    out = []
    for f in features:
        x = cols[f.field]
        if f.transform == "onehot":
            vals = f.values or []
            if vals and isinstance(vals[0], str):
                idx = x.astype(np.int64)  # already an index into `values`
            else:
                lookup = {float(v): i for i, v in enumerate(vals)}
                idx = np.array([lookup.get(float(v), -1) for v in np.unique(x)])
                uniq = np.unique(x)
                idx = idx[np.searchsorted(uniq, x)]
            block = np.zeros((x.shape[0], len(vals)), dtype=np.float64)
            ok = (idx >= 0) & (idx < len(vals))
            block[np.nonzero(ok)[0], idx[ok]] = 1.0
            out.append(block)
            continue
        v = x.astype(np.float64)
        if f.transform == "log1p_standardize":
            v = np.log1p(np.maximum(v, 0.0))
        out.append(((v - f.mean) / f.std)[:, None])
    return np.concatenate(out, axis=1).astype(np.float32)


def shard_user_cols(world: World, day: Day, rows: np.ndarray, hours: np.ndarray) -> dict[str, np.ndarray]:
    ud = np.asarray(day.user_dense)[rows]
    cols = {f"user.features.{m['name']}": ud[:, j] for j, m in enumerate(world.user_dense_meta)}
    cols["context.hour"] = np.asarray(hours)
    return cols


def shard_ad_cols(world: World, day: Day, imps: np.ndarray) -> dict[str, np.ndarray]:
    ad = np.asarray(day.imp_ad_dense)[imps]
    cols = {f"candidate.features.{m['name']}": ad[:, j] for j, m in enumerate(world.ad_dense_meta)}
    cols["candidate.bid"] = np.asarray(day.imp_bid)[imps]
    return cols


# ------------------------------------------------------------------------------- history padding
def pad_history(day: Day, rows: np.ndarray, max_len: int, width: int | None = None,
                fields: Sequence[str] = ("hist_ad_id", "hist_category", "hist_surface", "hist_event")
                ) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Newest `max_len` events of each user row, chronological, left-aligned, padded to a bucket.

    Returns raw (unhashed) padded arrays, -1 where padding, the kept lengths, and the width used.
    """
    off = np.asarray(day.hist_offsets)
    ends = off[rows + 1].astype(np.int64)
    starts = np.maximum(off[rows].astype(np.int64), ends - max_len)
    lens = ends - starts
    if width is None:
        width = int(lens.max()) if lens.size else 0
    pos = starts[:, None] + np.arange(width, dtype=np.int64)[None, :]
    valid = pos < ends[:, None]
    pos = np.where(valid, pos, 0)
    out = {}
    for name in fields:
        arr = getattr(day, name)
        if arr.shape[0] == 0:
            out[name] = np.full(pos.shape, -1, dtype=np.float64 if name == "hist_ts" else np.int64)
            continue
        g = np.asarray(arr[pos.ravel()]).reshape(pos.shape)
        g = g.astype(np.float64 if name == "hist_ts" else np.int64)
        out[name] = np.where(valid, g, -1)
    return out, lens, width


def encode_history_ids(spec: FeatureSpec, padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw padded history -> the four student history tensors (int64, 0 = pad)."""
    ad = padded["hist_ad_id"]
    cat = padded["hist_category"]
    valid = ad >= 0
    out = {
        "hist_ids": np.where(valid, hash_ids(np.maximum(ad, 0).ravel(), spec.ad_salt, spec.ad_buckets).reshape(ad.shape), 0),
        "hist_category": np.where(cat >= 0, hash_ids(np.maximum(cat, 0).ravel(), spec.cat_salt, spec.cat_buckets).reshape(cat.shape), 0),
        "hist_surface": np.where(valid, padded["hist_surface"] + 1, 0),
        "hist_event": np.where(valid, padded["hist_event"] + 1, 0),
    }
    return {k: v.astype(np.int64) for k, v in out.items()}


# ---------------------------------------------------------------------------------------- batches
@dataclass
class Task:
    """Which impressions a model learns from."""

    name: str  # e.g. feed-ctr, teacher
    surfaces: list[int] | None  # surface indices (None = all)
    objective: str  # ctr | cvr | multi
    clicked_only: bool = False

    def select(self, day: Day) -> np.ndarray:
        m = np.ones(day.n_imp, dtype=bool)
        if self.surfaces is not None:
            m &= np.isin(np.asarray(day.imp_surface), self.surfaces)
        if self.clicked_only:
            m &= np.asarray(day.imp_click) > 0
        return np.nonzero(m)[0]


@dataclass
class BatchPlan:
    day: int
    rows: np.ndarray  # unique user rows (R)
    imps: np.ndarray  # impression indices (N), grouped by row
    width: int  # padded history length (bucket)


def plan_batches(world: World, task: Task, days: Sequence[int], max_len: int, buckets: Sequence[int],
                 batch_size: int, rng: np.random.Generator | None) -> list[BatchPlan]:
    """Length-bucketed batches of whole users: every impression of a user-day is in one batch."""
    plans: list[BatchPlan] = []
    for d in days:
        day = world.day(d)
        imps = task.select(day)
        if imps.size == 0:
            continue
        urow = np.asarray(day.imp_user_row)[imps].astype(np.int64)
        order = np.argsort(urow, kind="stable")
        imps, urow = imps[order], urow[order]
        rows, first, counts = np.unique(urow, return_index=True, return_counts=True)
        lens = np.minimum(day.hist_len()[rows], max_len)
        bidx = np.searchsorted(np.asarray(buckets), lens)  # bucket index per row
        bidx = np.minimum(bidx, len(buckets) - 1)
        for b in np.unique(bidx):
            sel = np.nonzero(bidx == b)[0]
            if rng is not None:
                sel = rng.permutation(sel)
            width = int(buckets[b])
            # cap users per batch by a token budget so long buckets use fewer users
            max_rows = max(1, int(batch_size * 64 // width))
            cur: list[int] = []
            n_cur = 0
            for s in sel:
                cur.append(s)
                n_cur += counts[s]
                if n_cur >= batch_size or len(cur) >= max_rows:
                    plans.append(_mk(d, rows, first, counts, imps, cur, width))
                    cur, n_cur = [], 0
            if cur:
                plans.append(_mk(d, rows, first, counts, imps, cur, width))
    if rng is not None:
        plans = [plans[i] for i in rng.permutation(len(plans))]
    return plans


def _mk(d, rows, first, counts, imps, cur, width) -> BatchPlan:
    cur = np.asarray(cur, dtype=np.int64)
    parts = [imps[first[s]:first[s] + counts[s]] for s in cur]
    return BatchPlan(day=d, rows=rows[cur], imps=np.concatenate(parts), width=width)


def row_index(rows: np.ndarray, urow: np.ndarray) -> np.ndarray:
    """Position of each impression's user row inside `rows` (rows need not be sorted)."""
    order = np.argsort(rows, kind="stable")
    return order[np.searchsorted(rows[order], urow)].astype(np.int64)


def student_batch(world: World, spec: FeatureSpec, plan: BatchPlan) -> dict[str, np.ndarray]:
    """Student tensors for one batch in training layout.

    Differs from the serving layout in one way only: `user_dense` has one row per impression
    (`user_dense_n`, [N, Du]) because training rows are user-days whose impressions have different
    hours; the model consumes user_dense only after gathering by req_idx, so both are identical.
    """
    day = world.day(plan.day)
    padded, lens, width = pad_history(day, plan.rows, spec.max_length, plan.width)
    t = encode_history_ids(spec, padded)
    t["hist_len"] = lens.astype(np.int64)
    urow = np.asarray(day.imp_user_row)[plan.imps].astype(np.int64)
    req_idx = row_index(plan.rows, urow)
    hours = np.asarray(day.imp_hour)[plan.imps].astype(np.int64)
    t["user_dense_n"] = dense_fast(spec.user_dense, shard_user_cols(world, day, urow, hours))
    t["ad_id"] = hash_ids(np.asarray(day.imp_ad_id)[plan.imps], spec.ad_salt, spec.ad_buckets)
    t["advertiser_id"] = hash_ids(np.asarray(day.imp_advertiser_id)[plan.imps], spec.adv_salt, spec.adv_buckets)
    t["category"] = hash_ids(np.asarray(day.imp_category)[plan.imps], spec.cat_salt, spec.cat_buckets)
    t["ad_dense"] = dense_fast(spec.ad_dense, shard_ad_cols(world, day, plan.imps))
    t["req_idx"] = req_idx.astype(np.int64)
    return t


def labels(world: World, plan: BatchPlan) -> dict[str, np.ndarray]:
    day = world.day(plan.day)
    return {
        "click": np.asarray(day.imp_click)[plan.imps].astype(np.float32),
        "conv": np.asarray(day.imp_conv)[plan.imps].astype(np.float32),
        "p_click": np.asarray(day.imp_p_click)[plan.imps].astype(np.float32),
        "p_conv": np.asarray(day.imp_p_conv)[plan.imps].astype(np.float32),
        "surface": np.asarray(day.imp_surface)[plan.imps].astype(np.int64),
    }


# ----------------------------------------------------------------------------- requests (golden)
def request_body(world: World, day: Day, row: int, imps: np.ndarray, surface: str, request_id: str) -> dict:
    """A full /v1/rank body for one user row and some of its impressions (one hour: the first's)."""
    off = np.asarray(day.hist_offsets)
    s, e = int(off[row]), int(off[row + 1])
    history = []
    for i in range(s, e):
        history.append({
            "adId": int(day.hist_ad_id[i]),
            "category": int(day.hist_category[i]),
            "surface": world.surfaces[int(day.hist_surface[i])],
            "event": world.events[int(day.hist_event[i])],
            "ts": int(round(float(day.hist_ts[i]))),
        })
    uraw = user_raw(world, day, np.array([row]), np.array([0]))
    features = {k.split(".")[-1]: v[0] for k, v in uraw.items() if k.startswith("user.features.")}
    araw = ad_raw(world, day, imps)
    candidates = []
    for j, i in enumerate(imps):
        cf = {k.split(".")[-1]: v[j] for k, v in araw.items() if k.startswith("candidate.features.")}
        candidates.append({
            "adId": int(day.imp_ad_id[i]),
            "advertiserId": int(day.imp_advertiser_id[i]),
            "category": int(day.imp_category[i]),
            "bid": float(np.float32(day.imp_bid[i])),
            "bidType": world.bid_types[int(day.imp_bid_type[i])],
            "features": cf,
        })
    return {
        "surface": surface,
        "requestId": request_id,
        "user": {"id": int(day.user_id[row]), "features": features, "history": history},
        "context": {"hour": int(day.imp_hour[imps[0]])},
        "candidates": candidates,
    }


def request_tensors(spec: FeatureSpec, bodies: list[dict]) -> dict[str, np.ndarray]:
    """Reference request -> tensors path (what the server does), for one or many requests."""
    R = len(bodies)
    hists = [b["user"].get("history") or [] for b in bodies]
    kept = [h[len(h) - min(len(h), spec.max_length):] for h in hists]
    longest = max((len(h) for h in kept), default=0)
    L = spec.bucket_for(longest)
    ids = np.zeros((R, L), np.int64)
    cats = np.zeros((R, L), np.int64)
    surf = np.zeros((R, L), np.int64)
    ev = np.zeros((R, L), np.int64)
    for r, h in enumerate(kept):
        if not h:
            continue
        ids[r, :len(h)] = hash_ids(np.array([e["adId"] for e in h], np.int64), spec.ad_salt, spec.ad_buckets)
        c = [e.get("category") for e in h]
        cats[r, :len(h)] = [0 if x is None else int(hash_ids(np.array([x], np.int64), spec.cat_salt, spec.cat_buckets)[0]) for x in c]
        surf[r, :len(h)] = [spec.surfaces.index(e["surface"]) + 1 if e["surface"] in spec.surfaces else 0 for e in h]
        ev[r, :len(h)] = [spec.events.index(e["event"]) + 1 if e["event"] in spec.events else 0 for e in h]
    uraw: dict[str, list] = {}
    for f in spec.user_dense:
        head, rest = f.field.split(".", 1)
        if head == "user":
            key = rest.split(".", 1)[1]
            uraw[f.field] = [b["user"].get("features", {}).get(key) for b in bodies]
        else:
            uraw[f.field] = [b.get("context", {}).get(rest) for b in bodies]
    cands = [(r, c) for r, b in enumerate(bodies) for c in b["candidates"]]
    araw: dict[str, list] = {}
    for f in spec.ad_dense:
        if f.field == "candidate.bid":
            araw[f.field] = [c["bid"] for _, c in cands]
        else:
            key = f.field.split(".")[-1]
            araw[f.field] = [c.get("features", {}).get(key) for _, c in cands]
    return {
        "hist_ids": ids, "hist_category": cats, "hist_surface": surf, "hist_event": ev,
        "hist_len": np.array([len(h) for h in kept], np.int64),
        "user_dense": apply_dense(spec.user_dense, uraw),
        "ad_id": hash_ids(np.array([c["adId"] for _, c in cands], np.int64), spec.ad_salt, spec.ad_buckets),
        "advertiser_id": hash_ids(np.array([c["advertiserId"] for _, c in cands], np.int64), spec.adv_salt, spec.adv_buckets),
        "category": hash_ids(np.array([c["category"] for _, c in cands], np.int64), spec.cat_salt, spec.cat_buckets),
        "ad_dense": apply_dense(spec.ad_dense, araw),
        "req_idx": np.array([r for r, _ in cands], np.int64),
    }


def iter_batches(world: World, spec: FeatureSpec, plans: list[BatchPlan]) -> Iterator[tuple[BatchPlan, dict, dict]]:
    for p in plans:
        yield p, student_batch(world, spec, p), labels(world, p)
