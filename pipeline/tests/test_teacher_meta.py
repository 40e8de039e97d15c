"""A reused teacher (`run --teacher X`) is recorded with its own version and training days (from the
teacher.json written beside teacher.pt when it was trained), not as this run's teacher; without that
file its provenance is recorded as unknown rather than invented."""
import json
import re
import shutil
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from pipeline.gemlite import teacher_meta
from pipeline.gemlite.cli import SCALES, run, split_days
from pipeline.gemlite.data import World, fit_feature_spec
from pipeline.gemlite.teacher import TeacherNet

OLD_RUN = "19990101T000000Z-tiny"


def _teacher_pt(world_path: Path, dest: Path) -> Path:
    """An (untrained) tiny teacher with the shapes `run` builds for this world."""
    world, scale = World(world_path), SCALES["tiny"]
    spec = fit_feature_spec(world, split_days(world)["student"], **scale.spec)
    torch.manual_seed(0)
    dest.mkdir(parents=True, exist_ok=True)
    torch.save(TeacherNet(spec, scale.teacher).state_dict(), dest / "teacher.pt")
    return dest / "teacher.pt"


def _run(world: Path, out: Path, teacher: Path) -> dict:
    args = Namespace(world=str(world), repo="", scale="tiny", seeds="1", tasks="feed-ctr", out=str(out),
                     threads=1, no_publish=True, quiet=True, teacher=str(teacher), rollout="stable")
    run(args)
    return json.loads((out / "results.json").read_text())["meta"]


def test_reused_teacher_keeps_its_version_and_days(tiny_world, tmp_path):
    pt = _teacher_pt(tiny_world, tmp_path / "old")
    world = World(tiny_world)
    meta = teacher_meta.new_meta(OLD_RUN, world, "somewhere/else", [0], "tiny", SCALES["tiny"].teacher)
    teacher_meta.write(pt, meta)
    assert split_days(world)["teacher"] != [0], "the run's own split must differ for the test to mean anything"

    got = _run(tiny_world, tmp_path / "run", pt)
    assert got["teacherVersion"] == f"teacher-{OLD_RUN}"
    assert got["teacherDays"] == [0]
    assert got["teacherReused"] is True
    # the copy this run keeps travels with its provenance, so reusing it again still tells the truth
    assert json.loads((tmp_path / "run" / "teacher.json").read_text())["teacherVersion"] == f"teacher-{OLD_RUN}"


def test_teacher_without_metadata_is_recorded_as_unknown(tiny_world, tmp_path, capsys):
    pt = _teacher_pt(tiny_world, tmp_path / "bare")
    got = _run(tiny_world, tmp_path / "run", pt)
    assert got["teacherVersion"].startswith(teacher_meta.UNKNOWN + "-")
    assert got["teacherVersion"] != "teacher-" + got["runId"]
    assert got["teacherDays"] is None
    assert "provenance unknown" in capsys.readouterr().err


def test_trained_teacher_writes_its_metadata(tiny_world, tmp_path):
    world = World(tiny_world)
    meta = teacher_meta.new_meta("20260101T000000Z-tiny", world, str(tiny_world), [0, 1], "tiny", SCALES["tiny"].teacher)
    pt = tmp_path / "teacher.pt"
    teacher_meta.write(pt, meta)
    back = teacher_meta.load_for_reuse(pt, world, "tiny", SCALES["tiny"].teacher, warn=pytest.fail)
    assert back["teacherVersion"] == "teacher-20260101T000000Z-tiny" and back["trainingDays"] == [0, 1]
    assert back["worldDigest"] == teacher_meta.world_digest(world)


def test_teacher_of_another_scale_is_refused(tiny_world, tmp_path):
    world = World(tiny_world)
    meta = teacher_meta.new_meta("20260101T000000Z-small", world, str(tiny_world), [0], "small", SCALES["small"].teacher)
    pt = tmp_path / "teacher.pt"
    teacher_meta.write(pt, meta)
    with pytest.raises(ValueError, match="trained at scale small"):
        teacher_meta.load_for_reuse(pt, world, "tiny", SCALES["tiny"].teacher, warn=lambda m: None)


def test_teacher_of_another_world_warns(tiny_world, tmp_path):
    world = World(tiny_world)
    meta = teacher_meta.new_meta("20260101T000000Z-tiny", world, str(tiny_world), [0], "tiny", SCALES["tiny"].teacher)
    meta["worldDigest"] = "0" * 16
    pt = tmp_path / "teacher.pt"
    teacher_meta.write(pt, meta)
    warnings = []
    teacher_meta.load_for_reuse(pt, world, "tiny", SCALES["tiny"].teacher, warn=warnings.append)
    assert any("another world" in w for w in warnings)


def test_teacher_trained_on_this_runs_eval_or_adapter_days_is_refused(tiny_world, tmp_path):
    """A teacher trained on a longer run of the same world has seen this run's held-out labels: its soft
    labels, the adapter and lineage.teacherAuc would leak them. The run refuses it before doing anything."""
    world = World(tiny_world)
    split = split_days(world)
    pt = _teacher_pt(tiny_world, tmp_path / "old")
    teacher_meta.write(pt, teacher_meta.new_meta(OLD_RUN, world, "a-longer-world", split["student"] + split["eval"],
                                                 "tiny", SCALES["tiny"].teacher))
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=re.escape(f"eval days {split['eval']} and adapter days {split['adapter']}")):
        _run(tiny_world, out, pt)
    assert not out.exists()
    # on another world the same day numbers are other days: warned about as another world, not refused
    meta = teacher_meta.new_meta(OLD_RUN, world, "elsewhere", split["eval"], "tiny", SCALES["tiny"].teacher)
    meta["worldDigest"] = "0" * 16
    teacher_meta.write(pt, meta)
    warnings = []
    teacher_meta.load_for_reuse(pt, world, "tiny", SCALES["tiny"].teacher, warnings.append,
                              held_out={"eval": split["eval"], "adapter": split["adapter"]})
    assert any("another world" in w for w in warnings)
