"""Re-export published students with the current serving graph: same weights, new version.

A change to the serving graph (StudentNet.forward) reaches models already published only through a
new version: a version's files never change once it is published, and the loader, the gate and the
canary treat the re-exported graph like any other new version. The weights are read back from the
published ONNX file, so no training checkpoint is needed:

    /usr/bin/python3 -m pipeline.gemlite.reexport --repo models --rollout stable feed-ctr feed-cvr

The source is the version rollout.json serves as stable (the newest folder may be a canary that was
rolled back), or NAME@VERSION; with --rollout stable, a source other than the current stable needs
--promote-non-stable, since its weights then become what every user is served.

Before anything is published, three checks must pass: the StudentNet rebuilt from the old file
reproduces the old file's scores through onnxruntime (so the weights were read back correctly), the
new file matches PyTorch (the usual export parity), and the new golden scores agree with the old
ones within the golden tolerance.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .data import DenseFeature, FeatureSpec, request_tensors
from .export import INPUT_NAMES, bench_student, export_student, ort_run, parity_of, to_case, torch_scores
from .golden import golden_tensors, parity_cases
from .publish import model_flags, publish, route_published, sha256_file, validate_manifest, versions
from .students import StudentConfig, StudentNet

# The rebuilt net must reproduce the old file to within float32 rounding of a reordered sum.
RECONSTRUCTION_ATOL = 1e-5
_LEGACY_MATMUL = re.compile(r"^/net/(.+)/MatMul$")


class ReexportError(RuntimeError):
    pass


def spec_from_manifest(manifest: dict) -> FeatureSpec:
    """The FeatureSpec whose `manifest_inputs()` is exactly the manifest's inputs (checked)."""
    inputs = {i["name"]: i for i in manifest["inputs"]}
    src = lambda name: inputs[name]["source"]  # noqa: E731
    dense = lambda name: [DenseFeature(**f) for f in src(name)["features"]]  # noqa: E731
    spec = FeatureSpec(
        ad_buckets=src("hist_ids")["buckets"], ad_salt=src("hist_ids")["salt"],
        cat_buckets=src("hist_category")["buckets"], cat_salt=src("hist_category")["salt"],
        adv_buckets=src("advertiser_id")["buckets"], adv_salt=src("advertiser_id")["salt"],
        max_length=manifest["history"]["maxLength"], buckets=list(manifest["history"]["buckets"]),
        user_dense=dense("user_dense"), ad_dense=dense("ad_dense"),
        surfaces=list(src("hist_surface")["values"]), events=list(src("hist_event")["values"]),
    )
    if spec.manifest_inputs() != manifest["inputs"]:
        raise ReexportError(f"{manifest['name']}@{manifest['version']}: its inputs are not ones this pipeline writes")
    return spec


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers by state-dict name. Graphs exported with constant folding (before reexport
    existed) store a bias-free Linear's weight transposed under a generated name; it is found
    through the MatMul that consumes it, whose node name carries the module path."""
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        match = _LEGACY_MATMUL.match(node.name)
        if node.op_type == "MatMul" and match and node.input[1] in weights and not node.input[1].startswith("net."):
            weights[f"net.{match.group(1).replace('/', '.')}.weight"] = weights.pop(node.input[1]).T
    return {k[len("net."):]: v for k, v in weights.items() if k.startswith("net.")}


def _has_hist_relu(model: onnx.ModelProto) -> bool:
    """Whether the event projection is followed by a ReLU (StudentConfig.hist_relu)."""
    bias_add = [n for n in model.graph.node if n.op_type == "Add" and "net.hist_proj.bias" in n.input]
    if len(bias_add) != 1:
        raise ReexportError("cannot find the history projection (an Add of net.hist_proj.bias) in the graph")
    out = bias_add[0].output[0]
    return any(n.op_type == "Relu" and out in n.input for n in model.graph.node)


def student_from_onnx(model_path: Path, spec: FeatureSpec) -> StudentNet:
    """A StudentNet holding the weights of an exported serving graph."""
    model = onnx.load(str(model_path))
    if [i.name for i in model.graph.input] != INPUT_NAMES:
        raise ReexportError(f"{model_path}: inputs {[i.name for i in model.graph.input]} are not the serving contract's")
    w = _weights(model)
    try:
        shape = lambda name: w[name].shape  # noqa: E731
        cfg = StudentConfig(
            d_ad=shape("emb_ad.weight")[1], d_cat=shape("emb_cat.weight")[1], d_adv=shape("emb_adv.weight")[1],
            d_hist=shape("hist_proj.bias")[0], n_query=shape("queries")[1], n_interest=shape("ev_weight.weight")[1],
            d_user=shape("user_proj.0.bias")[0], d_udense=shape("udense_proj.bias")[0],
            hidden1=shape("mlp.0.bias")[0], hidden2=shape("mlp.2.bias")[0], wide="wide.weight" in w,
            hist_relu=_has_hist_relu(model),
        )
        cfg.teacher_emb_dim = shape("user_proj.0.weight")[1] - cfg.d_hist * (1 + cfg.n_query) - 1
    except KeyError as missing:
        raise ReexportError(f"{model_path}: no weight {missing} in the graph") from None
    if cfg.teacher_emb_dim != 0:
        raise ReexportError(f"{model_path}: takes a teacher embedding (offline-only variant), not a served graph")
    net = StudentNet(spec, cfg)
    expected = net.state_dict()
    if set(w) != set(expected):
        raise ReexportError(f"{model_path}: weights {sorted(set(w) ^ set(expected))} do not fit a StudentNet of this shape")
    for name, value in w.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ReexportError(f"{model_path}: weight {name} has shape {value.shape}, expected {tuple(expected[name].shape)}")
    net.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in w.items()})
    return net.eval()


def stable_version(repo: Path, name: str) -> int | None:
    """The version rollout.json serves as `name`'s stable, or None when it has no flags for it."""
    stable = model_flags(repo, name).get("stable")
    return stable if isinstance(stable, int) else None


def reexport(repo: Path, name: str, version: int | None = None, log=print) -> dict:
    """Publish `name`@`version` again with the current serving graph; by default the version served as
    stable, or the newest on disk when rollout.json has no flags for `name`."""
    repo = Path(repo)
    published = versions(repo, name)
    if not published:
        raise ReexportError(f"no published versions of {name} in {repo}")
    if version is None:
        version = stable_version(repo, name) or published[-1]
    if version not in published:
        raise ReexportError(f"{name}@{version} is not in {repo} (versions there: {published})")
    src = repo / name / str(version)
    manifest = json.loads((src / "manifest.json").read_text())
    validate_manifest(manifest)
    if sha256_file(src / manifest["model"]["file"]) != manifest["model"]["sha256"]:
        raise ReexportError(f"{name}@{version}: model file does not match its manifest's sha256")
    golden = json.loads((src / "golden.json").read_text())
    spec = spec_from_manifest(manifest)
    net = student_from_onnx(src / manifest["model"]["file"], spec)

    cases = parity_cases(spec, golden)
    old_scores = [o["p"] for o in ort_run(src / manifest["model"]["file"], [to_case(t) for t in cases])]
    rebuilt = max(float(np.abs(torch_scores(net, t) - p).max()) for t, p in zip(cases, old_scores))
    if rebuilt > RECONSTRUCTION_ATOL:
        raise ReexportError(f"{name}@{version}: the rebuilt net differs from the published file by {rebuilt:.3g}")

    tol = golden["tolerance"]
    new_golden = {"tolerance": dict(tol), "cases": [], "requests": []}
    for t in golden_tensors(golden):
        new_golden["cases"].append(to_case(t, torch_scores(net, t)))
    for req in golden["requests"]:
        p = torch_scores(net, request_tensors(spec, [req["body"]]))
        if not np.allclose(p, req["p"], atol=tol["atol"], rtol=tol["rtol"]):
            raise ReexportError(f"{name}@{version}: golden request {req['body'].get('requestId')} moved beyond the tolerance")
        new_golden["requests"].append({"body": req["body"], "p": [float(x) for x in p]})

    with tempfile.TemporaryDirectory() as tmp:
        path = export_student(net, spec.du, spec.da, Path(tmp) / "model.onnx")
        new_out = ort_run(path, [to_case(t) for t in cases])
        parity = parity_of(new_out, net, cases)
        drift = max(float(np.abs(o["p"] - b).max()) for o, b in zip(new_out, old_scores))
        ms_old = bench_student(src / manifest["model"]["file"], spec.du, spec.da, n=500, L=spec.max_length)
        ms_new = bench_student(path, spec.du, spec.da, n=500, L=spec.max_length)
        new_manifest = json.loads(json.dumps(manifest))
        new_manifest["createdAt"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        new_manifest["model"].update(file="model.onnx", sha256=sha256_file(path), bytes=path.stat().st_size)  # what publish() writes
        new_manifest["lineage"]["reexportedFrom"] = {"version": version, "sha256": manifest["model"]["sha256"]}
        new_version, final = publish(repo, name, path, new_manifest, new_golden)
    report = {"name": name, "from": version, "version": new_version, "dir": str(final), "maxAbsDiffVsOld": drift,
              "parity": parity["maxAbsDiff"], "msPer500": {"old": ms_old, "new": ms_new}}
    log(f"{name}: {version} -> {new_version}, max |p_new - p_old| {drift:.2g}, "
        f"500 candidates {ms_old:.3f} -> {ms_new:.3f} ms")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gemlite-reexport", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="+", metavar="NAME[@VERSION]",
                    help="models to re-export: by default the version rollout.json serves as stable (the newest "
                         "on disk for a model it has no flags for); NAME@VERSION re-exports that version")
    ap.add_argument("--repo", default="models")
    ap.add_argument("--rollout", choices=["stable", "keep"], default="keep",
                    help="stable: the new versions become stable; keep: rollout.json is left untouched")
    ap.add_argument("--promote-non-stable", action="store_true",
                    help="with --rollout stable, accept a NAME@VERSION that is not the current stable, so that its "
                         "weights become stable (a rollback to an older version, or promoting a canary's); without "
                         "it such a request is refused before anything is published")
    args = ap.parse_args(argv)
    repo = Path(args.repo)
    targets = []
    for spec in args.names:
        name, _, version = spec.partition("@")
        if version and not re.fullmatch(r"[1-9][0-9]*", version):
            ap.error(f"{spec}: VERSION must be a version number")
        targets.append((name, int(version) if version else None))
    if args.rollout == "stable" and not args.promote_non_stable:
        for name, version in targets:
            stable = stable_version(repo, name)
            if version is not None and stable is not None and version != stable:
                raise ReexportError(f"{name}@{version} is not the current stable ({stable}): --rollout stable would make "
                                    "its weights stable; pass --promote-non-stable if that is meant, or use --rollout keep")
    reports = [reexport(repo, name, version) for name, version in targets]
    route_published(repo, {r["name"]: r["version"] for r in reports}, args.rollout)
    print(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
