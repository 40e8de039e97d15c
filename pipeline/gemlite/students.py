"""Vertical student models (one per surface and objective), small enough for ~1 ms / 500 candidates.

Layout (DESIGN.md): the user tower runs once per user row (R), candidates (N) gather their user row
through `req_idx`. The history tower embeds each event (hashed ad id + hashed category + surface +
event type), pools it with a masked mean, a few learned attention summaries and event-type weighted
category interests, all plain arithmetic (MatMul, Gather, Softmax, CumSum) that onnxruntime's CPU
provider runs without int64 quirks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .data import FeatureSpec


@dataclass
class StudentConfig:
    d_ad: int = 12
    d_cat: int = 12
    d_adv: int = 6
    d_hist: int = 24
    n_query: int = 2
    n_interest: int = 2
    d_user: int = 32
    d_udense: int = 16
    hidden1: int = 64
    hidden2: int = 32
    teacher_emb_dim: int = 0  # > 0: variant 4 (teacher user embedding as input)
    aux_head: bool = False  # auxiliary distillation head (variants 3, 4)
    wide: bool = False  # linear (wide) term next to the MLP
    cat_init: float = 0.05  # init std of the category embeddings
    hist_relu: bool = True  # ReLU after the event projection

    def to_json(self) -> dict:
        return asdict(self)


def history_mask(hist_len: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[R, L] float mask, 1 for the first hist_len positions (CumSum instead of Range)."""
    pos = torch.cumsum(torch.ones_like(like, dtype=torch.float32), dim=1) - 1.0
    return (pos < hist_len.to(torch.float32).unsqueeze(1)).to(torch.float32)


class StudentNet(nn.Module):
    def __init__(self, spec: FeatureSpec, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        self.emb_ad = nn.Embedding(spec.ad_buckets, cfg.d_ad)
        self.emb_cat = nn.Embedding(spec.cat_buckets, cfg.d_cat)
        self.emb_adv = nn.Embedding(spec.adv_buckets, cfg.d_adv)
        self.emb_surf = nn.Embedding(len(spec.surfaces) + 1, 4)
        self.emb_ev = nn.Embedding(len(spec.events) + 1, 4)
        # category embeddings start large enough that the bilinear interest terms (history pool x
        # candidate) are not stuck near the zero saddle: with std 0.05 some seeds never left it
        nn.init.normal_(self.emb_cat.weight, std=cfg.cat_init)
        for e in (self.emb_ad, self.emb_adv):
            nn.init.normal_(e.weight, std=0.05)
        self.hist_proj = nn.Linear(cfg.d_ad + cfg.d_cat + 8, cfg.d_hist)
        self.queries = nn.Parameter(torch.randn(cfg.d_hist, cfg.n_query) * 0.1)
        # event-type weights for category / ad interest pools (softplus of a learned table)
        self.ev_weight = nn.Embedding(len(spec.events) + 1, cfg.n_interest)
        nn.init.zeros_(self.ev_weight.weight)
        d_pool = cfg.d_hist * (1 + cfg.n_query)
        self.user_proj = nn.Sequential(nn.Linear(d_pool + cfg.teacher_emb_dim + 1, cfg.d_user), nn.ReLU())
        self.udense_proj = nn.Linear(spec.du, cfg.d_udense)
        self.cand_cat_q = nn.Linear(cfg.d_cat, cfg.d_cat, bias=False)
        self.cand_ad_q = nn.Linear(cfg.d_ad, cfg.d_ad, bias=False)
        n_dots = 2 * cfg.n_interest
        d_in = cfg.d_user + cfg.d_udense + cfg.d_ad + cfg.d_cat + cfg.d_adv + spec.da + n_dots
        self.mlp = nn.Sequential(nn.Linear(d_in, cfg.hidden1), nn.ReLU(), nn.Linear(cfg.hidden1, cfg.hidden2), nn.ReLU())
        # wide part: a linear term of every candidate-level input straight into the logit (wide & deep),
        # so the basic effects are learned even when the deep part starts badly
        self.wide = nn.Linear(d_in, 1, bias=False) if cfg.wide else None
        self.head = nn.Linear(cfg.hidden2, 1)
        self.aux = nn.Linear(cfg.hidden2, 1) if cfg.aux_head else None

    # ---------------------------------------------------------------- user tower (R rows)
    def user_tower(self, hist_ids, hist_category, hist_surface, hist_event, hist_len, user_teacher_emb=None):
        mask = history_mask(hist_len, hist_ids)  # [R, L]
        ad_e = self.emb_ad(hist_ids)
        cat_e = self.emb_cat(hist_category)
        x = torch.cat([ad_e, cat_e, self.emb_surf(hist_surface), self.emb_ev(hist_event)], dim=-1)
        h = self.hist_proj(x)  # [R, L, dh]
        if self.cfg.hist_relu:
            h = torch.relu(h)
        m = mask.unsqueeze(-1)
        denom = mask.sum(dim=1, keepdim=True).clamp(min=1.0)  # [R, 1]
        mean = (h * m).sum(dim=1) / denom
        scores = torch.matmul(h, self.queries) + (m - 1.0) * 1e4  # [R, L, K]
        att = torch.softmax(scores, dim=1) * m
        summ = torch.matmul(att.transpose(1, 2), h).flatten(1)  # [R, K*dh]
        w = nn.functional.softplus(self.ev_weight(hist_event)) * m  # [R, L, I]
        wsum = w.sum(dim=1).clamp(min=1e-6).unsqueeze(-1)  # [R, I, 1]
        cat_int = torch.matmul(w.transpose(1, 2), cat_e) / wsum  # [R, I, dcat]
        ad_int = torch.matmul(w.transpose(1, 2), ad_e) / wsum  # [R, I, dad]
        has = torch.log1p(mask.sum(dim=1, keepdim=True)) / 5.0  # history length signal
        parts = [mean, summ, has]
        if self.cfg.teacher_emb_dim:
            parts.append(user_teacher_emb)
        u = self.user_proj(torch.cat(parts, dim=-1))
        return u, cat_int, ad_int

    # ----------------------------------------------------------- candidate side (N rows)
    def cand_forward(self, u, cat_int, ad_int, ud, ad_id, advertiser_id, category, ad_dense, req_idx):
        """`ud` = udense_proj(user_dense) already at candidate level."""
        uc = u[req_idx]
        ad_e = self.emb_ad(ad_id)
        cat_e = self.emb_cat(category)
        ci = cat_int[req_idx]  # [N, I, dcat]
        ai = ad_int[req_idx]
        dots_c = torch.matmul(ci, self.cand_cat_q(cat_e).unsqueeze(-1)).squeeze(-1)  # [N, I]
        dots_a = torch.matmul(ai, self.cand_ad_q(ad_e).unsqueeze(-1)).squeeze(-1)
        z = torch.cat([uc, ud, ad_e, cat_e, self.emb_adv(advertiser_id), ad_dense, dots_c, dots_a], dim=-1)
        return self.mlp(z), (self.wide(z).squeeze(-1) if self.wide is not None else None)

    def forward_train(self, b: dict, teacher_emb: torch.Tensor | None = None):
        """Training layout: b['user_dense_n'] is [N, Du]. Returns (main logit, aux logit or None)."""
        u, ci, ai = self.user_tower(b["hist_ids"], b["hist_category"], b["hist_surface"], b["hist_event"],
                                    b["hist_len"], teacher_emb)
        ud = self.udense_proj(b["user_dense_n"])
        z, wide = self.cand_forward(u, ci, ai, ud, b["ad_id"], b["advertiser_id"], b["category"], b["ad_dense"], b["req_idx"])
        main = self.head(z).squeeze(-1)
        if wide is not None:
            main = main + wide
        aux = self.aux(z).squeeze(-1) if self.aux is not None else None
        return main, aux

    def forward(self, hist_ids, hist_category, hist_surface, hist_event, hist_len, user_dense,
                ad_id, advertiser_id, category, ad_dense, req_idx, user_teacher_emb=None):
        """Serving layout (CONTRACTS.md) -> p [N]: the same function as `forward_train`, rearranged
        so that everything linear in the user side runs once per user row (R) instead of once per
        candidate (N). The first MLP layer and the wide term split into a user part (computed on R
        rows, then gathered) and a candidate part; the interest dots `ci . (Wc x)` become
        `(ci @ Wc) . x`, a per-row product followed by an element-wise multiply and sum, instead of
        N tiny batched MatMuls. 500 candidates: ~25% less onnxruntime time (docs/DESIGN-NOTES.md 21).
        """
        cfg = self.cfg
        u, cat_int, ad_int = self.user_tower(hist_ids, hist_category, hist_surface, hist_event, hist_len, user_teacher_emb)
        user_side = torch.cat([u, self.udense_proj(user_dense)], dim=-1)  # [R, d_user + d_udense]
        k = cfg.d_user + cfg.d_udense  # z = [user_side | candidate side] in cand_forward's order
        w1 = self.mlp[0].weight
        user_h1 = torch.matmul(user_side, w1[:, :k].t()) + self.mlp[0].bias  # [R, H1]
        cat_q = torch.matmul(cat_int, self.cand_cat_q.weight)  # [R, I, dcat]
        ad_q = torch.matmul(ad_int, self.cand_ad_q.weight)  # [R, I, dad]
        ad_e = self.emb_ad(ad_id)
        cat_e = self.emb_cat(category)
        dots_c = (cat_q[req_idx] * cat_e.unsqueeze(1)).sum(-1)  # [N, I]
        dots_a = (ad_q[req_idx] * ad_e.unsqueeze(1)).sum(-1)
        zc = torch.cat([ad_e, cat_e, self.emb_adv(advertiser_id), ad_dense, dots_c, dots_a], dim=-1)
        h1 = torch.relu(user_h1[req_idx] + torch.matmul(zc, w1[:, k:].t()))
        logit = self.head(self.mlp[3](self.mlp[2](h1))).squeeze(-1)
        if self.wide is not None:
            ww = self.wide.weight  # [1, d_in]
            user_wide = torch.matmul(user_side, ww[:, :k].t()).squeeze(-1)  # [R]
            logit = logit + user_wide[req_idx] + torch.matmul(zc, ww[:, k:].t()).squeeze(-1)
        return torch.sigmoid(logit)


class ServingStudent(nn.Module):
    """The exported graph: exact CONTRACTS.md input order and names, output `p`."""

    def __init__(self, net: StudentNet):
        super().__init__()
        self.net = net

    def forward(self, hist_ids, hist_category, hist_surface, hist_event, hist_len, user_dense,
                ad_id, advertiser_id, category, ad_dense, req_idx):
        return self.net(hist_ids, hist_category, hist_surface, hist_event, hist_len, user_dense,
                        ad_id, advertiser_id, category, ad_dense, req_idx)


class ServingStudentEmb(nn.Module):
    """Variant 4's graph (offline only): adds user_teacher_emb [R, E] after user_dense."""

    def __init__(self, net: StudentNet):
        super().__init__()
        self.net = net

    def forward(self, hist_ids, hist_category, hist_surface, hist_event, hist_len, user_dense, user_teacher_emb,
                ad_id, advertiser_id, category, ad_dense, req_idx):
        return self.net(hist_ids, hist_category, hist_surface, hist_event, hist_len, user_dense,
                        ad_id, advertiser_id, category, ad_dense, req_idx, user_teacher_emb)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
