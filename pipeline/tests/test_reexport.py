"""The serving graph computes what training computes; re-export republishes a student with the same
weights as a new version, from graphs of both export formats, and refuses what it cannot rebuild."""
import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest
import torch

from pipeline.gemlite.data import World, fit_feature_spec
from pipeline.gemlite.export import INPUT_NAMES, dummy_inputs
from pipeline.gemlite.publish import sha256_file, versions
from pipeline.gemlite.reexport import ReexportError, main, reexport, spec_from_manifest, student_from_onnx
from pipeline.gemlite.students import StudentConfig, StudentNet

ROOT = Path(__file__).resolve().parents[2]
# Exported with constant folding, before reexport existed: the legacy weight layout.
LEGACY = ROOT / "models" / "feed-ctr" / "1"


def _training_form(net, t, teacher=None):
    """p as forward_train computes it (user rows gathered per candidate first)."""
    b = {k: torch.from_numpy(v) for k, v in t.items()}
    b["user_dense_n"] = b["user_dense"][b["req_idx"]]
    with torch.no_grad():
        return torch.sigmoid(net.forward_train(b, teacher)[0])


@pytest.mark.parametrize("hist_relu,wide,teacher_dim", [(True, False, 0), (False, False, 0), (True, True, 0), (False, True, 3)])
def test_serving_forward_equals_training_forward(tiny_world, hist_relu, wide, teacher_dim):
    spec = fit_feature_spec(World(tiny_world), [0, 1], ad_buckets=1009, adv_buckets=211, cat_buckets=101)
    cfg = StudentConfig(d_ad=4, d_cat=6, d_adv=3, d_hist=8, n_query=2, n_interest=2, d_user=8, d_udense=4,
                        hidden1=16, hidden2=8, hist_relu=hist_relu, wide=wide, teacher_emb_dim=teacher_dim)
    torch.manual_seed(1)
    net = StudentNet(spec, cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    t = dummy_inputs(spec.du, spec.da, R=3, L=64, N=50, vocab=100, seed=4)
    t["hist_len"][1] = 0
    teacher = torch.randn(3, teacher_dim) if teacher_dim else None
    args = [torch.from_numpy(t[k]) for k in INPUT_NAMES]
    with torch.no_grad():
        serving = net(*args, user_teacher_emb=teacher)
    reference = _training_form(net, t, teacher)
    assert serving.shape == (50,)
    assert float((serving - reference).abs().max()) < 1e-6
    assert float(reference.std()) > 1e-3  # the weights make the scores differ between candidates


def _copy_repo(tmp_path, name="feed-ctr", version_dir=LEGACY):
    repo = tmp_path / "repo"
    shutil.copytree(version_dir, repo / name / "1")
    # the bundled flags, saying what this repository holds: version 1 (a flagged number is never reused)
    flags = json.loads((ROOT / "models" / "rollout.json").read_text())
    flags["models"][name] = {"stable": 1}
    (repo / "rollout.json").write_text(json.dumps(flags))
    return repo


def test_reexport_legacy_then_current_format(tmp_path, golden_holds):
    repo = _copy_repo(tmp_path)
    first = reexport(repo, "feed-ctr", log=lambda _: None)
    assert (first["from"], first["version"]) == (1, 2)
    assert first["maxAbsDiffVsOld"] < 1e-6
    v2 = repo / "feed-ctr" / "2"
    manifest = json.loads((v2 / "manifest.json").read_text())
    jsonschema.validate(manifest, json.loads((ROOT / "schemas" / "manifest.schema.json").read_text()))
    old = json.loads((LEGACY / "manifest.json").read_text())
    assert manifest["version"] == 2 and manifest["model"]["sha256"] == sha256_file(v2 / "model.onnx")
    assert manifest["lineage"]["reexportedFrom"] == {"version": 1, "sha256": old["model"]["sha256"]}
    assert {k: v for k, v in manifest["lineage"].items() if k != "reexportedFrom"} == old["lineage"]
    assert manifest["inputs"] == old["inputs"] and manifest["serving"] == old["serving"]
    # every parameter is stored under its state-dict name now
    names = {i.name for i in onnx.load(str(v2 / "model.onnx")).graph.initializer}
    assert {"net.hist_proj.weight", "net.cand_cat_q.weight", "net.mlp.0.weight"} <= names
    golden = golden_holds(v2)
    old_golden = json.loads((LEGACY / "golden.json").read_text())
    assert [r["body"] for r in golden["requests"]] == [r["body"] for r in old_golden["requests"]]
    for new, before in zip(golden["requests"], old_golden["requests"]):
        assert np.allclose(new["p"], before["p"], atol=1e-6)
    # and the current format re-exports to the same function again
    second = reexport(repo, "feed-ctr", 2, log=lambda _: None)  # 1 is still the stable, the default source
    assert (second["from"], second["version"]) == (2, 3) and second["maxAbsDiffVsOld"] < 1e-7
    assert versions(repo, "feed-ctr") == [1, 2, 3]


def test_reexport_cli_rollout_modes(tmp_path, capsys):
    repo = _copy_repo(tmp_path)
    before = (repo / "rollout.json").read_text()
    assert main(["--repo", str(repo), "feed-ctr"]) == 0
    assert (repo / "rollout.json").read_text() == before  # keep (default): published, not routed
    assert main(["--repo", str(repo), "--rollout", "stable", "feed-ctr"]) == 0
    rollout = json.loads((repo / "rollout.json").read_text())
    assert rollout["models"]["feed-ctr"]["stable"] == 3
    assert rollout["routes"] == json.loads(before)["routes"]
    out = capsys.readouterr().out
    assert '"version": 2' in out and '"version": 3' in out


def test_reexport_refuses_bad_inputs_and_publishes_nothing(tmp_path):
    repo = _copy_repo(tmp_path)
    vdir = repo / "feed-ctr" / "1"
    with pytest.raises(ReexportError, match="no published versions"):
        reexport(repo, "feed-cvr")
    # model bytes that do not match the manifest
    data = bytearray((vdir / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (vdir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ReexportError, match="sha256"):
        reexport(repo, "feed-ctr")
    shutil.copy(LEGACY / "model.onnx", vdir / "model.onnx")
    # a manifest whose inputs the pipeline would not write
    manifest = json.loads((vdir / "manifest.json").read_text())
    manifest["inputs"][0]["source"]["buckets"] = 20023
    with pytest.raises(ReexportError, match="inputs"):
        spec_from_manifest(manifest)
    # a weight of the wrong shape
    spec = spec_from_manifest(json.loads((vdir / "manifest.json").read_text()))
    spec.ad_buckets = 10007
    with pytest.raises(ReexportError, match="emb_ad.weight"):
        student_from_onnx(vdir / "model.onnx", spec)
    assert versions(repo, "feed-ctr") == [1]
    assert sorted(p.name for p in (repo / "feed-ctr").iterdir()) == ["1"]  # no temp dir left


def test_reexport_refuses_a_net_that_does_not_reproduce_the_file(tmp_path, monkeypatch):
    repo = _copy_repo(tmp_path)
    import pipeline.gemlite.reexport as rx

    real = rx.student_from_onnx

    def off_by_a_bit(path, spec):
        net = real(path, spec)
        with torch.no_grad():
            net.head.bias.add_(0.05)
        return net

    monkeypatch.setattr(rx, "student_from_onnx", off_by_a_bit)
    with pytest.raises(ReexportError, match="rebuilt net differs"):
        reexport(repo, "feed-ctr")
    assert versions(repo, "feed-ctr") == [1]


def test_reexport_of_a_pipeline_run(tiny_run, tmp_path, golden_holds):
    """A model the pipeline just published (current format, tiny config) re-exports unchanged."""
    src = Path(tiny_run["repo"])
    name = sorted(p.name for p in src.iterdir() if p.is_dir())[0]
    repo = _copy_repo(tmp_path, name, src / name / str(versions(src, name)[-1]))
    report = reexport(repo, name, log=lambda _: None)
    assert report["maxAbsDiffVsOld"] < 1e-7
    golden_holds(repo / name / str(report["version"]))


def test_reexport_takes_the_stable_version_and_promotes_another_only_when_asked(tmp_path):
    """The newest folder may be a canary that was rolled back: re-exporting it by default, and with
    --rollout stable, made its weights stable. The default source is what rollout.json serves."""
    repo = tmp_path / "repo"
    for v in ("1", "2"):
        shutil.copytree(ROOT / "models" / "feed-ctr" / v, repo / "feed-ctr" / v)
    flags = json.loads((ROOT / "models" / "rollout.json").read_text())
    flags["models"]["feed-ctr"] = {"stable": 1}  # 2 was a canary, rolled back
    (repo / "rollout.json").write_text(json.dumps(flags))

    def source(version):
        return json.loads((repo / "feed-ctr" / str(version) / "manifest.json").read_text())["lineage"]["reexportedFrom"]["version"]

    assert main(["--repo", str(repo), "--rollout", "stable", "feed-ctr"]) == 0
    stable = json.loads((repo / "rollout.json").read_text())["models"]["feed-ctr"]["stable"]
    assert stable == 3 and source(3) == 1
    with pytest.raises(ReexportError, match=r"feed-ctr@2 is not the current stable \(3\).*--promote-non-stable"):
        main(["--repo", str(repo), "--rollout", "stable", "feed-ctr@2"])
    assert versions(repo, "feed-ctr") == [1, 2, 3]
    assert main(["--repo", str(repo), "feed-ctr@2"]) == 0  # keep: published unrouted, nothing promoted
    assert source(4) == 2 and json.loads((repo / "rollout.json").read_text())["models"]["feed-ctr"] == {"stable": 3}
    # a model with no flags: its newest version
    del flags["models"]["feed-ctr"]
    for surface in [s for s, r in flags["routes"].items() if r["ctr"] == "feed-ctr"]:
        del flags["routes"][surface]
    (repo / "rollout.json").write_text(json.dumps(flags))
    assert reexport(repo, "feed-ctr", log=lambda _: None)["from"] == 4
