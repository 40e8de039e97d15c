"""The teacher: one model over all surfaces and both objectives (InterFormer-style, at our scale).

- Sequence side: every history event (hashed ad id, category, surface, event type, age bucket) is a
  token; histories of thousands of events are jagged and padded only to length buckets.
  Per user, K learned summary tokens attend over the whole sequence (cost O(K*L), not O(L^2)).
- Non-sequence side: user / ad / context / surface tokens, crossed by stacked factorization-machine
  blocks (Wukong-like: pairwise dot products of all tokens -> new tokens).
- Interleaving: each block (1) crosses the non-sequence tokens *together with* the current sequence
  summaries, then (2) turns the crossed tokens into candidate-aware queries that re-read the sequence,
  giving new summaries for the next block. Sequence informs crosses, crosses inform the sequence.
- Cross-surface: a surface embedding token plus per-surface output heads for ctr and cvr.
- `user_embedding()` is candidate independent (per user): it becomes a student input in variant 4.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .data import BatchPlan, FeatureSpec, World, dense_fast, encode_history_ids, pad_history, row_index, shard_ad_cols, shard_user_cols
from .hashing import hash_ids

USER_SALT = 0x05E20004
N_AGE = 16


@dataclass
class TeacherConfig:
    d: int = 32
    n_user_summ: int = 4
    n_cand_query: int = 2
    n_blocks: int = 2
    hidden: int = 128
    user_buckets: int = 50021
    emb_dim: int = 16  # user embedding exported to students
    max_length: int = 1024
    buckets: tuple = (64, 256, 1024)

    def to_json(self) -> dict:
        d = asdict(self)
        d["buckets"] = list(self.buckets)
        return d


def teacher_batch(world: World, spec: FeatureSpec, cfg: TeacherConfig, plan: BatchPlan) -> dict[str, np.ndarray]:
    day = world.day(plan.day)
    padded, lens, _ = pad_history(day, plan.rows, cfg.max_length, plan.width,
                                  fields=("hist_ad_id", "hist_category", "hist_surface", "hist_event", "hist_ts"))
    t = encode_history_ids(spec, padded)
    t["hist_len"] = lens.astype(np.int64)
    imp_ts = np.asarray(day.imp_ts)
    ref = float(imp_ts.min()) if imp_ts.size else 0.0  # ~ start of the day (history snapshot time)
    hours = np.maximum((ref - padded["hist_ts"]) / 3.6e6, 0.0)
    age = np.clip(np.floor(np.log2(1.0 + hours)), 0, N_AGE - 2).astype(np.int64) + 1
    t["hist_age"] = np.where(padded["hist_ad_id"] >= 0, age, 0)
    t["user_hash"] = hash_ids(np.asarray(day.user_id)[plan.rows], USER_SALT, cfg.user_buckets)
    urow = np.asarray(day.imp_user_row)[plan.imps].astype(np.int64)
    t["req_idx"] = row_index(plan.rows, urow)
    hours_ctx = np.asarray(day.imp_hour)[plan.imps].astype(np.int64)
    t["user_dense_n"] = dense_fast(spec.user_dense, shard_user_cols(world, day, urow, hours_ctx))
    t["surface"] = np.asarray(day.imp_surface)[plan.imps].astype(np.int64)
    t["ad_id"] = hash_ids(np.asarray(day.imp_ad_id)[plan.imps], spec.ad_salt, spec.ad_buckets)
    t["advertiser_id"] = hash_ids(np.asarray(day.imp_advertiser_id)[plan.imps], spec.adv_salt, spec.adv_buckets)
    t["category"] = hash_ids(np.asarray(day.imp_category)[plan.imps], spec.cat_salt, spec.cat_buckets)
    t["ad_dense"] = dense_fast(spec.ad_dense, shard_ad_cols(world, day, plan.imps))
    t["bid_type"] = np.asarray(day.imp_bid_type)[plan.imps].astype(np.int64)
    return t


def _masked_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q [B, Q, d], k/v [B, L, d], mask [B, L] -> [B, Q, d]."""
    s = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1])
    s = s + (mask.unsqueeze(1) - 1.0) * 1e4
    a = torch.softmax(s, dim=-1) * mask.unsqueeze(1)
    return torch.matmul(a, v)


class FMBlock(nn.Module):
    """Wukong-like block: pairwise interactions of all tokens, projected to new tokens, + residual MLP."""

    def __init__(self, n_in: int, n_out: int, d: int):
        super().__init__()
        self.n_out = n_out
        self.compress = nn.Linear(n_in, 8, bias=False)  # low-rank FM: X X^T Y instead of all pairs
        self.proj = nn.Linear(n_in * 8, n_out * d)
        self.lin = nn.Linear(n_in * d, n_out * d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, n_in, d]
        B, n, d = x.shape
        xt = self.compress(x.transpose(1, 2))  # [B, d, 8]
        fm = torch.matmul(x, xt).flatten(1)  # [B, n_in*8]
        y = self.proj(fm) + self.lin(x.flatten(1))
        return self.norm(torch.relu(y).view(B, self.n_out, d))


class TeacherNet(nn.Module):
    def __init__(self, spec: FeatureSpec, cfg: TeacherConfig):
        super().__init__()
        d = cfg.d
        self.cfg = cfg
        self.n_surf = len(spec.surfaces)
        self.emb_ad = nn.Embedding(spec.ad_buckets, d)
        self.emb_cat = nn.Embedding(spec.cat_buckets, d)
        self.emb_adv = nn.Embedding(spec.adv_buckets, d)
        self.emb_user = nn.Embedding(cfg.user_buckets, d)
        self.emb_hsurf = nn.Embedding(self.n_surf + 1, d)
        self.emb_ev = nn.Embedding(len(spec.events) + 1, d)
        self.emb_age = nn.Embedding(N_AGE, d)
        self.emb_surface = nn.Embedding(self.n_surf, d)
        self.emb_bidtype = nn.Embedding(3, d)
        for e in (self.emb_ad, self.emb_cat, self.emb_adv, self.emb_user):
            nn.init.normal_(e.weight, std=0.03)
        self.seq_norm = nn.LayerNorm(d)
        self.seq_film = nn.Linear(d, 2 * d)  # user context modulates the sequence tokens
        self.user_queries = nn.Parameter(torch.randn(cfg.n_user_summ, d) * 0.1)
        self.udense = nn.Linear(spec.du, 2 * d)
        self.adense = nn.Linear(spec.da, d)
        self.n_ns = 10  # non-sequence tokens
        n_tok = self.n_ns + cfg.n_user_summ
        self.blocks = nn.ModuleList()
        self.query_proj = nn.ModuleList()
        for _ in range(cfg.n_blocks):
            self.blocks.append(FMBlock(n_tok, self.n_ns, d))
            self.query_proj.append(nn.Linear(self.n_ns * d, cfg.n_cand_query * d))
            n_tok = self.n_ns + cfg.n_cand_query
        self.tower = nn.Sequential(nn.Linear(n_tok * d, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden // 2), nn.ReLU())
        self.heads = nn.Linear(cfg.hidden // 2, self.n_surf * 2)  # per-surface ctr / cvr heads
        self.user_emb = nn.Linear(cfg.n_user_summ * d + d, cfg.emb_dim)

    def encode_user(self, b):
        mask = (torch.cumsum(torch.ones_like(b["hist_ids"], dtype=torch.float32), 1) - 1.0
                < b["hist_len"].float().unsqueeze(1)).float()
        e = (self.emb_ad(b["hist_ids"]) + self.emb_cat(b["hist_category"]) + self.emb_hsurf(b["hist_surface"])
             + self.emb_ev(b["hist_event"]) + self.emb_age(b["hist_age"]))
        ue = self.emb_user(b["user_hash"])  # [R, d]
        g, beta = self.seq_film(ue).chunk(2, dim=-1)
        e = self.seq_norm(e) * (1 + g.unsqueeze(1)) + beta.unsqueeze(1)
        q = self.user_queries.unsqueeze(0).expand(e.shape[0], -1, -1)
        summ = _masked_attend(q, e, e, mask)  # [R, K, d]
        return e, mask, summ, ue

    def user_embedding(self, b) -> torch.Tensor:
        _, _, summ, ue = self.encode_user(b)
        return torch.tanh(self.user_emb(torch.cat([summ.flatten(1), ue], dim=-1)))

    def forward(self, b):
        """Returns (ctr logit [N], cvr logit [N], user embedding [R, E])."""
        e, mask, summ, ue = self.encode_user(b)
        ri = b["req_idx"]
        uemb = torch.tanh(self.user_emb(torch.cat([summ.flatten(1), ue], dim=-1)))
        ud = self.udense(b["user_dense_n"]).view(-1, 2, self.cfg.d)
        ns = torch.cat([
            ud,
            ue[ri].unsqueeze(1),
            self.emb_ad(b["ad_id"]).unsqueeze(1),
            self.emb_cat(b["category"]).unsqueeze(1),
            self.emb_adv(b["advertiser_id"]).unsqueeze(1),
            self.adense(b["ad_dense"]).unsqueeze(1),
            self.emb_surface(b["surface"]).unsqueeze(1),
            self.emb_bidtype(b["bid_type"]).unsqueeze(1),
            summ.mean(1)[ri].unsqueeze(1),
        ], dim=1)  # [N, 10, d]
        seq_tokens = summ[ri]  # block 0 sees the per-user summaries
        e_n = None
        for blk, qp in zip(self.blocks, self.query_proj):
            ns = ns + blk(torch.cat([ns, seq_tokens], dim=1))  # crosses informed by the sequence
            q = qp(ns.flatten(1)).view(ns.shape[0], self.cfg.n_cand_query, self.cfg.d)
            if e_n is None:
                e_n, m_n = e[ri], mask[ri]
            seq_tokens = _masked_attend(q, e_n, e_n, m_n)  # sequence re-read by the crosses
        h = self.tower(torch.cat([ns, seq_tokens], dim=1).flatten(1))
        out = self.heads(h).view(-1, self.n_surf, 2)
        sel = out.gather(1, b["surface"].view(-1, 1, 1).expand(-1, 1, 2)).squeeze(1)
        return sel[:, 0], sel[:, 1], uemb


def to_torch(b: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}
