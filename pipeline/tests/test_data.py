"""Shard -> tensors must equal request -> tensors (the server's path), incl. truncation and buckets."""
import numpy as np

from pipeline.gemlite.data import (BatchPlan, Task, World, fit_feature_spec, plan_batches, request_body,
                                   request_tensors, student_batch)


def _spec(world):
    return fit_feature_spec(world, [0, 1], ad_buckets=1009, adv_buckets=211, cat_buckets=101)


def test_shard_and_request_paths_agree(tiny_world):
    world = World(tiny_world)
    spec = _spec(world)
    day = world.day(3)
    hl = day.hist_len()
    urow = np.asarray(day.imp_user_row)
    checked_long = False
    for row in [int(np.argmax(hl)), int(np.argmin(hl)), int(np.argsort(hl)[len(hl) // 2])]:
        imps = np.nonzero(urow == row)[0][:7]
        hour = int(day.imp_hour[imps[0]])
        imps = imps[np.asarray(day.imp_hour)[imps] == hour]  # one request = one hour
        body = request_body(world, day, row, imps, "feed", "t")
        rt = request_tensors(spec, [body])
        L = rt["hist_ids"].shape[1]
        st = student_batch(world, spec, BatchPlan(3, np.array([row]), imps, L))
        for k in ("hist_ids", "hist_category", "hist_surface", "hist_event", "hist_len", "ad_id",
                  "advertiser_id", "category", "ad_dense", "req_idx"):
            assert np.array_equal(rt[k], st[k]), k
        assert np.array_equal(np.repeat(rt["user_dense"], len(imps), 0), st["user_dense_n"])
        n = len(body["user"]["history"])
        if n > spec.max_length:
            checked_long = True
            assert rt["hist_len"][0] == spec.max_length and L == 256
            # newest events kept, chronological, left-aligned
            last = body["user"]["history"][-1]
            from pipeline.gemlite.hashing import hash_ids
            assert rt["hist_ids"][0, -1] == hash_ids(np.array([last["adId"]]), spec.ad_salt, spec.ad_buckets)[0]
        else:
            assert rt["hist_len"][0] == n
            assert L == spec.bucket_for(n)
            assert (rt["hist_ids"][0, n:] == 0).all() and (rt["hist_ids"][0, :n] > 0).all()
    assert checked_long


def test_missing_features_take_defaults(tiny_world):
    world = World(tiny_world)
    spec = _spec(world)
    day = world.day(3)
    body = request_body(world, day, 0, np.nonzero(np.asarray(day.imp_user_row) == 0)[0][:2], "feed", "t")
    body["user"]["features"] = {"device": "toaster"}
    for c in body["candidates"]:
        c["features"] = {}
    t = request_tensors(spec, [body])
    # standardized features at their default (= mean) are 0; unknown / missing onehots all zero
    widths = [f.width for f in spec.user_dense]
    assert np.allclose(t["user_dense"][0, :sum(widths) - 24], 0.0)
    assert t["user_dense"][0, -24:].sum() == 1.0  # context.hour still present
    assert np.allclose(t["ad_dense"][:, :-1], 0.0)


def test_length_bucketed_batches(tiny_world):
    world = World(tiny_world)
    spec = _spec(world)
    plans = plan_batches(world, Task("all", None, "ctr"), [2, 3], spec.max_length, spec.buckets, 64,
                         np.random.default_rng(0))
    seen = 0
    for p in plans:
        b = student_batch(world, spec, p)
        assert b["hist_ids"].shape[1] in spec.buckets
        assert b["hist_len"].max() <= b["hist_ids"].shape[1]
        # the smallest bucket that fits the longest history of the batch
        assert spec.bucket_for(int(b["hist_len"].max())) == b["hist_ids"].shape[1] or b["hist_len"].max() == 0
        assert b["req_idx"].max() < b["hist_ids"].shape[0]
        seen += len(p.imps)
    assert seen == sum(world.day(d).n_imp for d in (2, 3))
