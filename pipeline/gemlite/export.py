"""ONNX export (opset 17, dynamic R / N / L) and ONNX-vs-PyTorch parity through onnxruntime-node."""
from __future__ import annotations

import io
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from .students import ServingStudent, StudentNet

REPO_ROOT = Path(__file__).resolve().parents[2]
ORT_RUN = REPO_ROOT / "pipeline" / "tools" / "ort_run.mjs"
INPUT_NAMES = ["hist_ids", "hist_category", "hist_surface", "hist_event", "hist_len", "user_dense",
               "ad_id", "advertiser_id", "category", "ad_dense", "req_idx"]
DYNAMIC_AXES = {
    "hist_ids": {0: "R", 1: "L"}, "hist_category": {0: "R", 1: "L"}, "hist_surface": {0: "R", 1: "L"},
    "hist_event": {0: "R", 1: "L"}, "hist_len": {0: "R"}, "user_dense": {0: "R"},
    "ad_id": {0: "N"}, "advertiser_id": {0: "N"}, "category": {0: "N"}, "ad_dense": {0: "N"},
    "req_idx": {0: "N"}, "p": {0: "N"},
}
OPSET = 17


def dummy_inputs(du: int, da: int, R: int = 2, L: int = 16, N: int = 5, vocab: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, L + 1, R).astype(np.int64)
    lens[0] = L
    mask = np.arange(L)[None, :] < lens[:, None]
    ids = lambda hi: np.where(mask, rng.integers(1, hi, (R, L)), 0).astype(np.int64)  # noqa: E731
    return {
        "hist_ids": ids(vocab), "hist_category": ids(vocab), "hist_surface": ids(5), "hist_event": ids(4),
        "hist_len": lens, "user_dense": rng.normal(size=(R, du)).astype(np.float32),
        "ad_id": rng.integers(1, vocab, N).astype(np.int64), "advertiser_id": rng.integers(1, vocab, N).astype(np.int64),
        "category": rng.integers(1, vocab, N).astype(np.int64), "ad_dense": rng.normal(size=(N, da)).astype(np.float32),
        "req_idx": np.sort(rng.integers(0, R, N)).astype(np.int64),
    }


def export_student(net: StudentNet, du: int, da: int, path: Path) -> Path:
    """Export the serving graph; returns the path. Checks the ONNX model and its opset."""
    net.eval()
    wrapper = ServingStudent(net).eval()
    ex = dummy_inputs(du, da)
    args = tuple(torch.from_numpy(ex[n]) for n in INPUT_NAMES)
    buf = io.BytesIO()
    # No constant folding: every parameter stays an initializer under its state-dict name (folding
    # would store transposes and slices of them under generated names), so a published model can be
    # loaded back into a StudentNet and exported again (reexport.py). onnxruntime folds the same
    # constants when it creates the session: the two graphs run equally fast.
    torch.onnx.export(wrapper, args, buf, input_names=INPUT_NAMES, output_names=["p"],
                      dynamic_axes=DYNAMIC_AXES, opset_version=OPSET, do_constant_folding=False)
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    got = [i.name for i in model.graph.input]
    if got != INPUT_NAMES:
        raise RuntimeError(f"exported inputs {got} != contract {INPUT_NAMES}")
    model.producer_name = "gemlite-pipeline"
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path


@torch.no_grad()
def torch_scores(net: StudentNet, tensors: dict[str, np.ndarray]) -> np.ndarray:
    net.eval()
    args = [torch.from_numpy(np.ascontiguousarray(tensors[n])) for n in INPUT_NAMES]
    return net(*args).numpy().astype(np.float32)


def to_case(tensors: dict[str, np.ndarray], p: np.ndarray | None = None) -> dict:
    case: dict = {"inputs": {}}
    for n in INPUT_NAMES:
        a = np.asarray(tensors[n])
        dtype = "int64" if a.dtype.kind in "iu" else "float32"
        data = a.ravel().tolist() if dtype == "int64" else [float(np.float32(x)) for x in a.ravel()]
        case["inputs"][n] = {"dtype": dtype, "shape": list(a.shape), "data": data}
    if p is not None:
        case["outputs"] = {"p": {"dtype": "float32", "shape": [int(p.shape[0])], "data": [float(x) for x in p]}}
    return case


def ort_run(model_path: Path, cases: list[dict], bench: int = 0) -> list[dict]:
    """Run cases through onnxruntime-node; returns [{'p': np.ndarray, 'ms': float|None}]."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"cases": [{"inputs": c["inputs"]} for c in cases]}, f)
        tmp = f.name
    try:
        cmd = ["node", str(ORT_RUN), str(model_path), tmp] + (["--bench", str(bench)] if bench else [])
        res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"ort_run failed: {res.stderr[-2000:]}")
        doc = json.loads(res.stdout)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return [{"p": np.array(c["outputs"]["p"]["data"], np.float32), "shape": c["outputs"]["p"]["shape"], "ms": c["ms"]}
            for c in doc["cases"]]


def check_parity(model_path: Path, net: StudentNet, cases_tensors: list[dict[str, np.ndarray]],
                 atol: float = 1e-5, rtol: float = 1e-4) -> dict:
    """Compare ONNX Runtime (Node) with PyTorch on several cases (different R, L, N). Raises on mismatch."""
    return parity_of(ort_run(model_path, [to_case(t) for t in cases_tensors]), net, cases_tensors, atol, rtol)


def parity_of(ort_out: list[dict], net: StudentNet, cases_tensors: list[dict[str, np.ndarray]],
              atol: float = 1e-5, rtol: float = 1e-4) -> dict:
    """check_parity on outputs that ort_run already gave for `cases_tensors`."""
    worst = 0.0
    for t, o in zip(cases_tensors, ort_out):
        ref = torch_scores(net, t)
        if list(o["shape"]) != [ref.shape[0]]:
            raise RuntimeError(f"shape mismatch {o['shape']} vs {ref.shape}")
        diff = np.abs(o["p"] - ref)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        if not np.allclose(o["p"], ref, atol=atol, rtol=rtol):
            raise RuntimeError(f"ONNX/PyTorch parity failed: max abs diff {diff.max():.3g}")
    return {"cases": len(cases_tensors), "maxAbsDiff": worst,
            "shapes": [{"R": int(t["hist_ids"].shape[0]), "L": int(t["hist_ids"].shape[1]), "N": int(t["ad_id"].shape[0])}
                       for t in cases_tensors]}


def bench_student(model_path: Path, du: int, da: int, n: int = 500, L: int = 256, runs: int = 50,
                  vocab: int = 100) -> float:
    """ms per forward for one request (R=1) of n candidates, onnxruntime-node, one thread."""
    t = dummy_inputs(du, da, R=1, L=L, N=n, vocab=vocab)
    t["req_idx"] = np.zeros(n, np.int64)
    return float(ort_run(model_path, [to_case(t)], bench=runs)[0]["ms"])
