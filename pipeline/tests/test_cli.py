"""The one command at tiny scale: trains, evaluates, reports, exports with parity, publishes."""
import json
from argparse import Namespace
from pathlib import Path

import jsonschema
import numpy as np

from pipeline.gemlite.data import FeatureSpec, request_tensors
from pipeline.gemlite.distill import VARIANTS
from pipeline.gemlite.export import ort_run

ROOT = Path(__file__).resolve().parents[2]
STUDENTS = ["feed-ctr", "stories-ctr", "reels-ctr", "marketplace-ctr", "feed-cvr"]


def test_run_publishes_every_student(tiny_run):
    repo = tiny_run["repo"]
    schema = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
    for name in STUDENTS:
        d = repo / name / "1"
        m = json.loads((d / "manifest.json").read_text())
        jsonschema.validate(m, schema)
        assert m["name"] == name and m["version"] == 1 and m["model"]["opset"] == 17
        assert m["lineage"]["distillation"] in ("none", "kd", "kd_aux_adapter")
        for k in ("auc", "logloss", "ne", "oracleAuc"):
            assert k in m["lineage"]["metrics"]
        assert set(m["serving"]["scoreQuantiles"]) == {"p01", "p10", "p50", "p90", "p99"}
        assert m["outputs"] == [{"name": "p", "dtype": "float32", "shape": ["N"], "semantics": "probability"}]
    rollout = json.loads((repo / "rollout.json").read_text())
    jsonschema.validate(rollout, json.loads((ROOT / "schemas" / "rollout.schema.json").read_text()))
    assert set(rollout["routes"]) == {"feed", "stories", "reels", "marketplace"}
    assert not list(repo.glob("*/.tmp-*"))


def test_published_metrics_are_measured_on_the_report_half(tiny_run):
    # The variant is chosen on the selection half of the eval users; what the manifest says about it
    # comes from the other half (winner's curse otherwise).
    from pipeline.gemlite.evaluate import EVAL_SPLIT

    res = json.loads((tiny_run["out"] / "results.json").read_text())
    published = {p["name"]: p for p in res["extra"]["published"]}
    for name in STUDENTS:
        m = json.loads((tiny_run["repo"] / name / "1" / "manifest.json").read_text())
        metrics, task = m["lineage"]["metrics"], res["extra"]["tasks"][name]
        assert metrics["evalSplit"] == EVAL_SPLIT and "selection half" in metrics["selection"]
        assert metrics["evalRows"] == task["reportRows"] == published[name]["reportRows"]
        assert metrics["selectionRows"] == task["selectionRows"] > 0
        assert metrics["evalRows"] + metrics["selectionRows"] == task["evalRows"]
        assert metrics["ne"] == published[name]["ne"]
        cal = m["calibration"]  # same rows as lineage.metrics: calibration = predicted / observed rate
        if metrics["calibration"] is not None:
            assert np.isclose(metrics["calibration"], cal["predictedRate"] / cal["observedRate"])
    text = (tiny_run["out"] / "report.md").read_text()
    assert "selection AUC (chosen on)" in text and "report AUC" in text


def test_golden_matches_onnx_and_request_path(tiny_run):
    repo = tiny_run["repo"]
    spec = FeatureSpec.from_json(json.loads((tiny_run["out"] / "feature_spec.json").read_text()))
    d = repo / "feed-ctr" / "1"
    golden = json.loads((d / "golden.json").read_text())
    assert (d / "golden.json").stat().st_size < 200_000
    tol = golden["tolerance"]
    outs = ort_run(d / "model.onnx", golden["cases"])
    shapes = []
    for case, out in zip(golden["cases"], outs):
        exp = np.array(case["outputs"]["p"]["data"], np.float32)
        assert np.allclose(out["p"], exp, atol=tol["atol"], rtol=tol["rtol"])
        shapes.append(tuple(case["inputs"]["hist_ids"]["shape"]))
    assert shapes[0][0] == 1 and shapes[-1][0] == 3
    # requests: body -> tensors (server's path) -> ONNX reproduces the recorded scores
    assert 2 <= len(golden["requests"]) <= 3
    assert any(len(r["body"]["user"]["history"]) > 256 for r in golden["requests"])
    for r in golden["requests"]:
        b = r["body"]
        assert b["surface"] == "feed" and 5 <= len(b["candidates"]) <= 20 or len(b["candidates"]) >= 1
        assert set(b["user"]["features"]) == {"age_bucket", "activity", "tenure_days", "device"}
        assert set(b["candidates"][0]) == {"adId", "advertiserId", "category", "bid", "bidType", "features"}
        t = request_tensors(spec, [b])
        from pipeline.gemlite.export import to_case
        p = ort_run(d / "model.onnx", [to_case(t)])[0]["p"]
        assert np.allclose(p, np.array(r["p"], np.float32), atol=tol["atol"], rtol=tol["rtol"])
        m = json.loads((d / "manifest.json").read_text())
        assert len(r["p"]) == len(b["candidates"])
        assert t["hist_ids"].shape[1] in m["history"]["buckets"]


def test_report_has_every_variant(tiny_run):
    out = tiny_run["out"]
    text = (out / "report.md").read_text()
    assert (out / "variants.png").stat().st_size > 1000
    for v in VARIANTS:
        assert f"| {v} |" in text
    res = json.loads((out / "results.json").read_text())
    assert set(res["results"]) == set(STUDENTS)
    for name in STUDENTS:
        assert all(len(res["results"][name][v]) == 2 for v in VARIANTS)  # two seeds
    assert any(r["model"] == "teacher" for r in res["extra"]["latency"])


def test_run_leaves_no_export_temps(tiny_run):
    # Each task's ONNX export went to a gemlite-export-* temp directory that was never removed:
    # 34 of them had piled up in /tmp on the development machine.
    assert sorted(p.name for p in tiny_run["scratch"].glob("gemlite-export-*")) == []


def test_no_publish_leaves_the_repo_alone(tiny_world, tmp_path):
    # --no-publish still swept the repository's stale publish temps: a run that publishes nothing
    # must not change the repository.
    import os
    import time
    from pipeline.gemlite.cli import run

    stale = tmp_path / "repo" / "feed-ctr" / ".tmp-7-deadbeef"
    stale.mkdir(parents=True)
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    args = Namespace(world=str(tiny_world), repo=str(tmp_path / "repo"), scale="tiny", seeds="1", tasks="feed-ctr",
                     out=str(tmp_path / "run"), threads=1, no_publish=True, quiet=True, teacher="", rollout="stable")
    run(args)
    assert stale.is_dir()
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["feed-ctr"]
