"""Shared fixtures: a tiny synthetic world in the CONTRACTS.md shard layout, one tiny CLI run, and the
check that a published version reproduces its golden cases."""
import json
import tempfile
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    from pipeline.gemlite.synthworld import generate

    # prior histories up to 320 events, so some exceed the students' maxLength (256)
    return generate(tmp_path_factory.mktemp("world") / "w", days=4, users=90, ads=200, prior_events=320, seed=3)


@pytest.fixture(scope="session")
def tiny_run(tiny_world, tmp_path_factory):
    from pipeline.gemlite.cli import run

    repo = tmp_path_factory.mktemp("repo")
    out = tmp_path_factory.mktemp("run")
    # The run's own temp files go to a directory of the test's, so a test can see what it leaves behind.
    scratch = tmp_path_factory.mktemp("scratch")
    args = Namespace(world=str(tiny_world), repo=str(repo), scale="tiny", seeds="1,2", tasks="", out=str(out),
                     threads=1, no_publish=False, quiet=True, teacher="", rollout="stable")
    previous, tempfile.tempdir = tempfile.tempdir, str(scratch)
    try:
        result = run(args)
    finally:
        tempfile.tempdir = previous
    return {"repo": repo, "out": out, "result": result, "world": tiny_world, "scratch": scratch}


@pytest.fixture(scope="session")
def golden_holds():
    """A check: the version directory's model.onnx scores its golden.json cases within their
    tolerance through onnxruntime-node. It returns the golden file."""
    from pipeline.gemlite.export import ort_run  # after ROOT is on sys.path

    def check(vdir: Path) -> dict:
        golden = json.loads((vdir / "golden.json").read_text())
        tol = golden["tolerance"]
        for case, out in zip(golden["cases"], ort_run(vdir / "model.onnx", golden["cases"])):
            assert np.allclose(out["p"], case["outputs"]["p"]["data"], atol=tol["atol"], rtol=tol["rtol"])
        return golden

    return check
