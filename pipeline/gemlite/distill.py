"""Training loops: teacher, teacher soft labels, Student Adapter, and the four student variants.

Variants (names are the manifest's `lineage.distillation` values):
  none                ground truth only
  kd                  ground truth + teacher soft labels in the same head
  kd_aux_adapter      ground truth in the serving head; adapter-corrected soft labels in an auxiliary head
  kd_aux_adapter_emb  kd_aux_adapter + the teacher's user embedding as a student input (offline only)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import FeatureSpec, Task, World, labels, plan_batches, student_batch
from .students import StudentConfig, StudentNet
from .teacher import TeacherConfig, TeacherNet, teacher_batch, to_torch

VARIANTS = ["none", "kd", "kd_aux_adapter", "kd_aux_adapter_emb"]
Log = Callable[[str], None]


def _logit(p: np.ndarray | torch.Tensor):
    if isinstance(p, torch.Tensor):
        p = p.clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


# -------------------------------------------------------------------------------------- teacher
def train_teacher(world: World, spec: FeatureSpec, cfg: TeacherConfig, days: Sequence[int], epochs: int,
                  batch_size: int, seed: int, log: Log, lr: float = 2e-3, max_batches: int | None = None) -> TeacherNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = TeacherNet(spec, cfg)
    clicks = np.concatenate([np.asarray(world.day(d).imp_click) for d in days]).astype(np.float64)
    convs = np.concatenate([np.asarray(world.day(d).imp_conv) for d in days]).astype(np.float64)
    ctr = float(np.clip(clicks.mean(), 1e-4, 0.5))
    cvr = float(np.clip(convs.sum() / max(clicks.sum(), 1.0), 1e-4, 0.5))
    with torch.no_grad():  # start every head at the base rates
        bias = net.heads.bias.view(-1, 2)
        bias[:, 0] = math.log(ctr / (1 - ctr))
        bias[:, 1] = math.log(cvr / (1 - cvr))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    task = Task("teacher", None, "multi")
    for ep in range(epochs):
        plans = plan_batches(world, task, days, cfg.max_length, list(cfg.buckets), batch_size, rng)
        if max_batches:
            plans = plans[:max_batches]
        t0, tot, n = time.time(), 0.0, 0
        net.train()
        for i, p in enumerate(plans):
            b = to_torch(teacher_batch(world, spec, cfg, p))
            y = to_torch(labels(world, p))
            lc, lv, _ = net(b)
            loss = F.binary_cross_entropy_with_logits(lc, y["click"])
            clicked = y["click"] > 0
            if clicked.any():
                loss = loss + F.binary_cross_entropy_with_logits(lv[clicked], y["conv"][clicked]) * clicked.float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss) * len(p.imps)
            n += len(p.imps)
            if (i + 1) % max(1, len(plans) // 5) == 0 or i + 1 == len(plans):
                log(f"  teacher epoch {ep + 1}/{epochs} batch {i + 1}/{len(plans)} loss {tot / max(n, 1):.4f} "
                    f"({time.time() - t0:.0f}s)")
    net.eval()
    return net


@torch.no_grad()
def teacher_outputs(world: World, spec: FeatureSpec, cfg: TeacherConfig, net: TeacherNet, days: Sequence[int],
                    batch_size: int, log: Log) -> dict[int, dict[str, np.ndarray]]:
    """Teacher p(click), p(conv | click) per impression and the user embedding per user row, per day."""
    out: dict[int, dict[str, np.ndarray]] = {}
    task = Task("teacher", None, "multi")
    net.eval()
    for d in days:
        day = world.day(d)
        pc = np.zeros(day.n_imp, np.float32)
        pv = np.zeros(day.n_imp, np.float32)
        ue = np.zeros((int(day.user_id.shape[0]), cfg.emb_dim), np.float32)
        for p in plan_batches(world, task, [d], cfg.max_length, list(cfg.buckets), batch_size, None):
            b = to_torch(teacher_batch(world, spec, cfg, p))
            lc, lv, u = net(b)
            pc[p.imps] = torch.sigmoid(lc).numpy()
            pv[p.imps] = torch.sigmoid(lv).numpy()
            ue[p.rows] = u.numpy()
        out[d] = {"p_click": pc, "p_conv": pv, "uemb": ue}
        log(f"  teacher scored day {d}: {day.n_imp} impressions")
    return out


# ------------------------------------------------------------------------------ cached batches
@dataclass
class Cached:
    day: int
    x: dict[str, torch.Tensor]
    y: torch.Tensor  # label of the task
    oracle: torch.Tensor
    user_id: np.ndarray  # user of each row: evaluation splits its rows by user (evaluate.report_half)
    bid_type: np.ndarray | None = None  # bid type index of each row's candidate (the shard's imp_bid_type)
    teacher_p: torch.Tensor | None = None
    teacher_emb: torch.Tensor | None = None
    soft: dict[str, torch.Tensor] = field(default_factory=dict)  # soft labels per variant


def build_cache(world: World, spec: FeatureSpec, task: Task, days: Sequence[int], batch_size: int, seed: int,
                teacher: dict[int, dict[str, np.ndarray]] | None) -> list[Cached]:
    rng = np.random.default_rng(seed)
    out = []
    for p in plan_batches(world, task, days, spec.max_length, spec.buckets, batch_size, rng):
        x = to_torch(student_batch(world, spec, p))
        lab = labels(world, p)
        y = lab["conv"] if task.objective == "cvr" else lab["click"]
        o = lab["p_conv"] if task.objective == "cvr" else lab["p_click"]
        day = world.day(p.day)
        uid = np.asarray(day.user_id)[np.asarray(day.imp_user_row)[p.imps]].astype(np.int64)
        bt = np.asarray(day.imp_bid_type)[p.imps].astype(np.int64)
        c = Cached(p.day, x, torch.from_numpy(y), torch.from_numpy(o), uid, bt)
        if teacher is not None and p.day in teacher:
            t = teacher[p.day]
            tp = t["p_conv"] if task.objective == "cvr" else t["p_click"]
            c.teacher_p = torch.from_numpy(tp[p.imps])
            c.teacher_emb = torch.from_numpy(t["uemb"][p.rows])
        out.append(c)
    return out


# ---------------------------------------------------------------------------------- the adapter
class StudentAdapter(nn.Module):
    """Light correction of the teacher's logit from cheap features, fit on the freshest ground truth.

    corrected = a * logit(t) + b + mlp([logit(t), user_dense, ad_dense]); initialised to identity.
    """

    def __init__(self, du: int, da: int, hidden: int = 16):
        super().__init__()
        self.a = nn.Parameter(torch.ones(1))
        self.b = nn.Parameter(torch.zeros(1))
        self.mlp = nn.Sequential(nn.Linear(1 + du + da, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, t: torch.Tensor, ud: torch.Tensor, ad: torch.Tensor) -> torch.Tensor:
        lt = _logit(t)
        return self.a * lt + self.b + self.mlp(torch.cat([lt.unsqueeze(-1) / 4.0, ud, ad], -1)).squeeze(-1)


def fit_adapter(cache: list[Cached], du: int, da: int, seed: int, steps: int = 300, lr: float = 1e-2,
                l2: float = 1e-3) -> StudentAdapter:
    torch.manual_seed(seed)
    ad = StudentAdapter(du, da)
    t = torch.cat([c.teacher_p for c in cache])
    ud = torch.cat([c.x["user_dense_n"] for c in cache])
    adn = torch.cat([c.x["ad_dense"] for c in cache])
    y = torch.cat([c.y for c in cache])
    opt = torch.optim.Adam(ad.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(ad(t, ud, adn), y)
        reg = sum((p ** 2).sum() for p in ad.mlp.parameters()) * l2
        opt.zero_grad()
        (loss + reg).backward()
        opt.step()
    ad.eval()
    return ad


@torch.no_grad()
def attach_soft_labels(cache: list[Cached], adapter: StudentAdapter | None) -> None:
    for c in cache:
        if c.teacher_p is None:
            continue
        c.soft["kd"] = c.teacher_p
        if adapter is not None:
            c.soft["adapted"] = torch.sigmoid(adapter(c.teacher_p, c.x["user_dense_n"], c.x["ad_dense"]))


# ------------------------------------------------------------------------------------- students
def student_config(base: StudentConfig, variant: str, teacher_emb_dim: int) -> StudentConfig:
    cfg = StudentConfig(**base.to_json())
    cfg.aux_head = variant in ("kd_aux_adapter", "kd_aux_adapter_emb")
    cfg.teacher_emb_dim = teacher_emb_dim if variant == "kd_aux_adapter_emb" else 0
    return cfg


def train_student(spec: FeatureSpec, base: StudentConfig, variant: str, cache: list[Cached], seed: int,
                  epochs: int, teacher_emb_dim: int = 0, lr: float = 3e-3, kd_weight: float = 1.0,
                  weight_decay: float = 0.0, log: Log | None = None) -> StudentNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = StudentNet(spec, student_config(base, variant, teacher_emb_dim))
    base = float(torch.cat([c.y for c in cache]).mean().clamp(1e-4, 1 - 1e-4))
    with torch.no_grad():  # start at the base rate: no epochs wasted on learning the bias
        net.head.bias.fill_(math.log(base / (1 - base)))
        if net.aux is not None:
            net.aux.bias.fill_(math.log(base / (1 - base)))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    total = epochs * len(cache)
    step = 0
    for ep in range(epochs):
        net.train()
        for i in rng.permutation(len(cache)):
            c = cache[i]
            for g in opt.param_groups:  # cosine decay
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))
            step += 1
            emb = c.teacher_emb if variant == "kd_aux_adapter_emb" else None
            main, aux = net.forward_train(c.x, emb)
            loss = F.binary_cross_entropy_with_logits(main, c.y)
            if variant == "kd":
                loss = loss + kd_weight * F.binary_cross_entropy_with_logits(main, c.soft["kd"])
            elif variant in ("kd_aux_adapter", "kd_aux_adapter_emb"):
                loss = loss + kd_weight * F.binary_cross_entropy_with_logits(aux, c.soft["adapted"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return net


@torch.no_grad()
def predict(net: StudentNet, cache: list[Cached], variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ps, ys, os_ = [], [], []
    for c in cache:
        emb = c.teacher_emb if variant == "kd_aux_adapter_emb" else None
        main, _ = net.forward_train(c.x, emb)
        ps.append(torch.sigmoid(main).numpy())
        ys.append(c.y.numpy())
        os_.append(c.oracle.numpy())
    return np.concatenate(ps), np.concatenate(ys), np.concatenate(os_)


def teacher_preds(cache: list[Cached]) -> np.ndarray:
    return np.concatenate([c.teacher_p.numpy() for c in cache])


def user_ids(cache: list[Cached]) -> np.ndarray:
    """User id of every row, in the row order of predict()."""
    return np.concatenate([c.user_id for c in cache])


def bid_types(cache: list[Cached]) -> np.ndarray:
    """Bid type index of every row's candidate, in the row order of predict()."""
    return np.concatenate([c.bid_type for c in cache])


def adapted_preds(cache: list[Cached]) -> np.ndarray:
    return np.concatenate([c.soft["adapted"].numpy() for c in cache])
