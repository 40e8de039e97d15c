"""golden.json: fixed ONNX input cases (+ PyTorch outputs) and full /v1/rank requests (+ scores)."""
from __future__ import annotations

import numpy as np

from .data import SURFACES, FeatureSpec, World, request_body, request_tensors
from .export import dummy_inputs, to_case, torch_scores
from .students import StudentNet

TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}


def pick_requests(world: World, day_index: int, surface: str, max_len: int, seed: int = 0,
                  n_candidates: tuple[int, int] = (5, 20)) -> list[dict]:
    """Three held-out users of one day: a short history (< 16), a medium one, and one > max_len."""
    day = world.day(day_index)
    rng = np.random.default_rng(seed)
    hl = day.hist_len()
    urow = np.asarray(day.imp_user_row).astype(np.int64)
    n_imp = np.bincount(urow, minlength=hl.size)
    eligible = n_imp >= n_candidates[0]
    picks: list[int] = []
    for lo, hi in ((1, 16), (40, max_len), (max_len + 1, max_len + 400)):
        cand = np.nonzero(eligible & (hl >= lo) & (hl < hi))[0]
        if cand.size == 0:
            cand = np.nonzero(eligible & (hl >= lo))[0]
        if cand.size == 0:
            cand = np.nonzero(eligible)[0]
        cand = cand[~np.isin(cand, picks)]
        if cand.size:
            picks.append(int(rng.choice(cand)))
    sidx = world.surfaces.index(surface) if surface in world.surfaces else 0
    surf = np.asarray(day.imp_surface)
    bodies = []
    for k, row in enumerate(picks):
        imps = np.nonzero(urow == row)[0]
        # prefer impressions of the model's surface, then others (a candidate is just an ad)
        imps = np.concatenate([imps[surf[imps] == sidx], imps[surf[imps] != sidx]])[: n_candidates[1]]
        bodies.append(request_body(world, day, row, imps, surface, f"golden-{surface}-{k}"))
    return bodies


def build_golden(world: World, spec: FeatureSpec, net: StudentNet, day_index: int, surface: str, seed: int = 0) -> dict:
    bodies = pick_requests(world, day_index, surface, spec.max_length, seed)
    requests = []
    for b in bodies:
        p = torch_scores(net, request_tensors(spec, [b]))
        requests.append({"body": b, "p": [float(x) for x in p]})
    # cases: one request alone (R=1, small bucket), all requests batched (R=3, L = largest bucket)
    short = min(bodies, key=lambda b: len(b["user"]["history"]))
    cases = []
    for group in ([short], bodies):
        t = request_tensors(spec, group)
        cases.append(to_case(t, torch_scores(net, t)))
    return {"tolerance": dict(TOLERANCE), "cases": cases, "requests": requests}


def golden_tensors(golden: dict) -> list[dict[str, np.ndarray]]:
    """Back from golden cases to numpy tensors (for parity checks)."""
    out = []
    for c in golden["cases"]:
        t = {}
        for name, spec in c["inputs"].items():
            dt = np.int64 if spec["dtype"] == "int64" else np.float32
            t[name] = np.array(spec["data"], dt).reshape(spec["shape"])
        out.append(t)
    return out


def parity_cases(spec: FeatureSpec, golden: dict) -> list[dict[str, np.ndarray]]:
    """The golden cases plus two of other shapes, which prove the dynamic R / L / N: R=1 with a short
    history, and R=3 at the longest bucket with one empty history. Ids stay within every table."""
    vocab = min(spec.ad_buckets, spec.adv_buckets, spec.cat_buckets)
    extra = [dummy_inputs(spec.du, spec.da, R=1, L=16, N=9, vocab=vocab, seed=1),
             dummy_inputs(spec.du, spec.da, R=3, L=spec.max_length, N=40, vocab=vocab, seed=2)]
    extra[1]["hist_len"][2] = 0
    for name in ("hist_ids", "hist_category", "hist_surface", "hist_event"):
        extra[1][name][2] = 0
    return golden_tensors(golden) + extra

__all__ = ["build_golden", "golden_tensors", "parity_cases", "pick_requests", "SURFACES"]
