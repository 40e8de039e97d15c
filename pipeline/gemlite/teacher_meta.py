"""Provenance of a trained teacher: `teacher.json` beside `teacher.pt`.

A teacher is reused across runs (`run --teacher X`, the closed loop). The run that reuses it must
not describe it as its own: the manifest's `lineage.teacherVersion` and the report's teacher days
come from the metadata written when the teacher was trained. A teacher.pt without that file gets
the version `unknown-provenance-<sha256 prefix of the file>` and unknown days (a warning says so):
its weights are still usable, but nothing about where they came from is claimed.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .data import World
from .teacher import TeacherConfig

FORMAT = "gemlite-teacher-meta-v1"
UNKNOWN = "unknown-provenance"
# What fixes a world's entities and truth; not `days` or `ads`, which grow as the world is extended
# (a base world and the closed loop's combined world built on it are the same world).
_HEADER_KEYS = ("seed", "users", "advertisers", "categories", "surfaces", "events", "bidTypes", "userDense", "adDense")


def meta_path(teacher_pt: Path) -> Path:
    return Path(teacher_pt).with_suffix(".json")


def world_digest(world: World) -> str:
    """sha256 (16 hex) of the world's config (index.json `config` without `days`), else of its header."""
    config = world.index.get("config")
    if isinstance(config, dict):
        ident = {k: v for k, v in config.items() if k != "days"}
    else:
        ident = {k: world.index.get(k) for k in _HEADER_KEYS}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def new_meta(run_id: str, world: World, world_path: str, days: list[int], scale: str, cfg: TeacherConfig) -> dict:
    return {"format": FORMAT, "teacherVersion": f"teacher-{run_id}", "runId": run_id, "world": str(world_path),
            "worldSeed": world.seed, "worldDigest": world_digest(world), "trainingDays": [int(d) for d in days],
            "scale": scale, "teacherConfig": cfg.to_json(),
            "trainedAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def write(teacher_pt: Path, meta: dict) -> Path:
    path = meta_path(teacher_pt)
    path.write_text(json.dumps(meta, indent=1) + "\n")
    return path


def _unknown(teacher_pt: Path) -> dict:
    sha = hashlib.sha256(Path(teacher_pt).read_bytes()).hexdigest()
    return {"format": FORMAT, "teacherVersion": f"{UNKNOWN}-{sha[:12]}", "provenance": "unknown",
            "file": str(teacher_pt), "sha256": sha, "trainingDays": None, "worldDigest": None, "scale": None}


def load_for_reuse(teacher_pt: Path, world: World, scale: str, cfg: TeacherConfig,
                   warn: Callable[[str], None], held_out: dict[str, list[int]] | None = None) -> dict:
    """The metadata of a teacher about to be reused by a run of `scale` on `world`.

    Missing metadata: warn, provenance unknown. Another scale or teacher config: ValueError (its
    weights would not fit this run's teacher). Another world: warn (reusing a teacher across worlds is
    allowed, but its soft labels then come from another truth). Trained on any of this world's
    `held_out` days (role -> days, e.g. the run's eval and adapter days): ValueError, since its soft
    labels, the adapter fitted on its outputs and the teacher AUC would then carry those days' labels.
    """
    path = meta_path(teacher_pt)
    if not path.exists():
        meta = _unknown(teacher_pt)
        warn(f"teacher: {path} not found, provenance unknown: recorded as {meta['teacherVersion']}, "
             "training days unknown (a teacher trained by this pipeline writes it beside teacher.pt)")
        return meta
    meta = json.loads(path.read_text())
    if meta.get("provenance") == "unknown":
        warn(f"teacher: {path} says its provenance is unknown ({meta.get('teacherVersion')})")
        return meta
    if meta.get("scale") != scale or meta.get("teacherConfig") != cfg.to_json():
        raise ValueError(f"teacher {teacher_pt} was trained at scale {meta.get('scale')} (teacher config "
                         f"{meta.get('teacherConfig')}); this run is scale {scale} ({cfg.to_json()})")
    if meta.get("worldDigest") != world_digest(world):
        warn(f"teacher: {teacher_pt} was trained on another world ({meta.get('world')}, seed {meta.get('worldSeed')}, "
             f"digest {meta.get('worldDigest')}; this world's is {world_digest(world)})")
        return meta
    # Same digest, same days: a longer or extended run of this world has the very labels held out here.
    seen = set(meta.get("trainingDays") or [])
    overlap = {role: sorted(seen & set(days)) for role, days in (held_out or {}).items()}
    if any(overlap.values()):
        days = " and ".join(f"{role} days {d}" for role, d in overlap.items() if d)
        raise ValueError(f"teacher {teacher_pt} ({meta.get('teacherVersion')}) was trained on days {meta['trainingDays']} "
                         f"of this world, which include this run's {days}: its soft labels, the adapter and the "
                         "teacher AUC would carry their labels; reuse a teacher trained on earlier days only, or train one")
    return meta
