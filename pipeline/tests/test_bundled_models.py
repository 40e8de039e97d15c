"""The committed model repository (models/) is valid: schemas, sha256, golden cases through onnxruntime-node."""
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from pipeline.gemlite.export import ort_run
from pipeline.gemlite.publish import sha256_file

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "models"
VERSIONS = sorted(p for p in REPO.glob("*/*") if p.is_dir() and p.name.isdigit())


@pytest.mark.skipif(not (REPO / "rollout.json").exists(), reason="no bundled models")
def test_rollout_routes_to_published_versions():
    rollout = json.loads((REPO / "rollout.json").read_text())
    jsonschema.validate(rollout, json.loads((ROOT / "schemas" / "rollout.schema.json").read_text()))
    for route in rollout["routes"].values():
        for name in route.values():
            assert (REPO / name / str(rollout["models"][name]["stable"]) / "manifest.json").exists()
    assert sum(f.stat().st_size for f in REPO.rglob("*") if f.is_file()) < 8 * 2**20


@pytest.mark.parametrize("vdir", VERSIONS, ids=[f"{p.parent.name}@{p.name}" for p in VERSIONS])
def test_bundled_version(vdir, golden_holds):
    m = json.loads((vdir / "manifest.json").read_text())
    jsonschema.validate(m, json.loads((ROOT / "schemas" / "manifest.schema.json").read_text()))
    assert m["name"] == vdir.parent.name and m["version"] == int(vdir.name)
    assert sha256_file(vdir / "model.onnx") == m["model"]["sha256"]
    assert m["lineage"]["distillation"] != "kd_aux_adapter_emb"  # served models need only the request
    golden_holds(vdir)


REEXPORTED = [v for v in VERSIONS if "reexportedFrom" in json.loads((v / "manifest.json").read_text())["lineage"]]


@pytest.mark.parametrize("vdir", REEXPORTED, ids=[f"{p.parent.name}@{p.name}" for p in REEXPORTED])
def test_reexported_version_scores_what_its_source_scores(vdir):
    """A re-exported version (new graph, same weights) and the version it came from agree on every
    golden case through onnxruntime-node, to float32 rounding."""
    source = json.loads((vdir / "manifest.json").read_text())["lineage"]["reexportedFrom"]
    src = vdir.parent / str(source["version"])
    if not src.exists():
        pytest.skip(f"{src.name} is no longer bundled")
    assert sha256_file(src / "model.onnx") == source["sha256"]
    cases = json.loads((vdir / "golden.json").read_text())["cases"]
    new, old = ort_run(vdir / "model.onnx", cases), ort_run(src / "model.onnx", cases)
    for a, b in zip(new, old):
        assert a["p"].shape == b["p"].shape and np.abs(a["p"] - b["p"]).max() < 1e-6
