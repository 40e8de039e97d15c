"""ONNX export: contract names / dtypes, dynamic R / L / N, parity with PyTorch via onnxruntime-node."""
import numpy as np
import onnx
import torch

from pipeline.gemlite.data import World, fit_feature_spec
from pipeline.gemlite.export import INPUT_NAMES, check_parity, dummy_inputs, export_student, ort_run, to_case
from pipeline.gemlite.students import StudentConfig, StudentNet

TINY = StudentConfig(d_ad=4, d_cat=4, d_adv=4, d_hist=8, n_query=1, n_interest=1, d_user=8, d_udense=4,
                     hidden1=16, hidden2=8)


def _net(tiny_world):
    world = World(tiny_world)
    spec = fit_feature_spec(world, [0, 1], ad_buckets=1009, adv_buckets=211, cat_buckets=101)
    torch.manual_seed(0)
    net = StudentNet(spec, TINY).eval()
    with torch.no_grad():  # non-trivial weights
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return spec, net


def test_export_contract_and_dynamic_axes(tiny_world, tmp_path):
    spec, net = _net(tiny_world)
    path = export_student(net, spec.du, spec.da, tmp_path / "model.onnx")
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 17
    manifest_inputs = {i["name"]: i for i in spec.manifest_inputs()}
    kinds = {1: "float32", 7: "int64"}
    for inp in model.graph.input:
        m = manifest_inputs[inp.name]
        assert kinds[inp.type.tensor_type.elem_type] == m["dtype"], inp.name
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        assert dims == m["shape"], (inp.name, dims, m["shape"])
    assert [i.name for i in model.graph.input] == INPUT_NAMES
    out = model.graph.output[0]
    assert out.name == "p" and out.type.tensor_type.elem_type == 1
    assert [d.dim_param for d in out.type.tensor_type.shape.dim] == ["N"]
    # R=1 L=16 and R=3 L=256 (and an empty-history row) through one exported graph
    cases = [dummy_inputs(spec.du, spec.da, R=1, L=16, N=9, vocab=100, seed=1),
             dummy_inputs(spec.du, spec.da, R=3, L=256, N=40, vocab=100, seed=2)]
    cases[1]["hist_len"][2] = 0
    cases[1]["hist_ids"][2] = 0
    res = check_parity(path, net, cases)
    assert res["maxAbsDiff"] < 1e-5
    assert [(s["R"], s["L"]) for s in res["shapes"]] == [(1, 16), (3, 256)]


def test_scores_are_probabilities_and_rows_independent(tiny_world, tmp_path):
    spec, net = _net(tiny_world)
    path = export_student(net, spec.du, spec.da, tmp_path / "model.onnx")
    t = dummy_inputs(spec.du, spec.da, R=3, L=64, N=12, vocab=100, seed=5)
    p_all = ort_run(path, [to_case(t)])[0]["p"]
    assert np.all((p_all > 0) & (p_all < 1))
    # the first request alone gives the same scores as inside the batch (req_idx layout)
    sel = t["req_idx"] == 0
    one = {k: v for k, v in t.items()}
    for k in ("hist_ids", "hist_category", "hist_surface", "hist_event"):
        one[k] = t[k][:1]
    one["hist_len"], one["user_dense"] = t["hist_len"][:1], t["user_dense"][:1]
    for k in ("ad_id", "advertiser_id", "category", "ad_dense", "req_idx"):
        one[k] = t[k][sel]
    p_one = ort_run(path, [to_case(one)])[0]["p"]
    assert np.allclose(p_one, p_all[sel], atol=1e-6)
