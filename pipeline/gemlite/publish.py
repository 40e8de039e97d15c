"""Model packages: manifest + golden, schema validation, and atomic publishing into the repository.

Publishing claims the next version number (an exclusively created hidden file `<repo>/<name>/.claimed-<v>`,
so two publishers of one model never take the same number, and a number is never handed out again),
writes `model.onnx`, `manifest.json`, `golden.json` into a hidden sibling directory
`<repo>/<name>/.tmp-<v>-<random>`, fsyncs every file and the directory, renames it to the version
number and fsyncs the parent. The server ignores hidden entries, so an interrupted publish
never leaves a visible (half-written) version. rollout.json is replaced the same way (temp + rename),
under the rollout lock it shares with the server (rollout_lock.py).
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import jsonschema

from .data import FeatureSpec
from .hashing import HASH_FUNCTION
from .rollout_lock import rollout_lock

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = REPO_ROOT / "schemas"
_VERSION = re.compile(r"^[1-9][0-9]*$")
_CLAIM = re.compile(r"^\.claimed-([1-9][0-9]*)$")
# The newest claim is the high-water mark and stays. One below it goes once its version folder exists
# (which then holds the number), else once this old: a publisher that listed the model before it was
# claimed could meanwhile find the number free again and take it while its first owner is still writing.
CLAIM_KEEP_S = 3600.0


def load_schema(name: str) -> dict:
    """A shared schema, as Python must check it: a pattern's final `$` also matches before a trailing
    newline in Python's `re` (not in the server's Ajv), so "feed-ctr\\n" passed here and the server then
    refused the whole file; it is `\\Z` (the very end) here."""
    def python_patterns(node):
        if isinstance(node, dict):
            return {k: (v[:-1] + r"\Z" if k == "pattern" and isinstance(v, str) and v.endswith("$") and not v.endswith(r"\$")
                        else python_patterns(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [python_patterns(v) for v in node]
        return node
    return python_patterns(json.loads((SCHEMAS / name).read_text()))


def non_finite_path(value, path: str = "") -> str | None:
    """Where (a JSON pointer) `value` holds a NaN or an infinity, or None. JSON has neither: Python writes
    them as bare NaN / Infinity tokens, which the server's JSON.parse rejects, and jsonschema's "number"
    accepts them, so the schema alone does not catch them."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path or "/"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = non_finite_path(item, f"{path}/{key}")
        if found is not None:
            return found
    return None


def require_finite(value, what: str) -> None:
    found = non_finite_path(value)
    if found is not None:
        raise ValueError(f"{what}: {found} is not a finite number, which JSON cannot hold")


def _json(value, **kw) -> str:
    return json.dumps(value, allow_nan=False, **kw)


def validate_manifest(manifest: dict) -> None:
    jsonschema.Draft7Validator(load_schema("manifest.schema.json")).validate(manifest)
    require_finite(manifest, "manifest")


class RolloutInvalid(ValueError):
    """Flags that match the schema but that the server would still reject (ROLLOUT_INVALID)."""


def validate_rollout(rollout: dict) -> None:
    """The schema, then the server's cross-field rules (src/models/rollout.ts validateRollout), with its
    messages: the server rejects the whole file for any of them, so nothing written here goes live."""
    jsonschema.Draft7Validator(load_schema("rollout.schema.json")).validate(rollout)
    require_finite(rollout, "rollout")
    for surface, route in rollout["routes"].items():
        for objective in ("ctr", "cvr"):
            name = route[objective]
            if name not in rollout["models"]:
                raise RolloutInvalid(f'/routes/{surface}/{objective} names "{name}", which has no entry in /models')
    for name, flags in rollout["models"].items():
        if "canary" in flags and flags["canary"]["version"] == flags["stable"]:
            raise RolloutInvalid(f"/models/{name}/canary/version equals stable")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _graded(value):
    """A metric that could not be computed (NaN: an empty report half, one class only) is unknown."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def build_manifest(name: str, version: int, surface: str, objective: str, model_path: Path, spec: FeatureSpec,
                   calibration: dict, lineage: dict, score_quantiles: dict, max_candidates: int = 2000) -> dict:
    # lineage.metrics allows null for an unknown grade; the calibration rates do not, so they are left out.
    calibration = {k: v for k, v in calibration.items()
                   if k not in ("observedRate", "predictedRate") or _graded(v) is not None}
    if isinstance(lineage.get("metrics"), dict):
        lineage = dict(lineage, metrics={k: _graded(v) for k, v in lineage["metrics"].items()})
    manifest = {
        "schemaVersion": 1,
        "name": name,
        "version": version,
        "surface": surface,
        "objective": objective,
        "createdAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"file": "model.onnx", "sha256": sha256_file(model_path), "opset": 17,
                  "bytes": model_path.stat().st_size},
        "hashing": {"function": HASH_FUNCTION},
        "history": {"maxLength": spec.max_length, "buckets": list(spec.buckets)},
        "inputs": spec.manifest_inputs(),
        "outputs": [{"name": "p", "dtype": "float32", "shape": ["N"], "semantics": "probability"}],
        "calibration": calibration,
        "lineage": lineage,
        "serving": {"maxCandidatesPerBatch": max_candidates, "scoreQuantiles": score_quantiles},
    }
    validate_manifest(manifest)
    return manifest


def versions(repo: Path, name: str) -> list[int]:
    d = Path(repo) / name
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and _VERSION.match(p.name))


def _claims(parent: Path) -> list[int]:
    if not parent.is_dir():
        return []
    return sorted(int(m.group(1)) for p in parent.iterdir() if (m := _CLAIM.match(p.name)))


def model_flags(repo: Path, name: str) -> dict:
    """rollout.json's entry for `name` ({} without one, or without the file); read without the lock,
    like the server's rescans (the file is only ever replaced whole)."""
    path = Path(repo) / "rollout.json"
    try:
        flags = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise ValueError(f"{path} is not JSON ({e}): the versions it names are unknown") from None
    models = flags.get("models") if isinstance(flags, dict) else None
    entry = models.get(name) if isinstance(models, dict) else None
    return entry if isinstance(entry, dict) else {}


def _flagged_versions(repo: Path, name: str) -> list[int]:
    """Every version of `name` that rollout.json names (stable, canary, shadow), on disk or not."""
    entry = model_flags(repo, name)
    named = [entry.get("stable"), (entry.get("canary") or {}).get("version"), *(entry.get("shadow") or [])]
    return [v for v in named if isinstance(v, int)]


def highest_version(repo: Path, name: str) -> int:
    """The highest number `name` has used: version folders, versions rollout.json names, claims (0: none)."""
    parent = Path(repo) / name
    return max([0, *versions(repo, name), *_flagged_versions(repo, name), *_claims(parent)])


def _claim(parent: Path, repo: Path, name: str, version: int | None) -> int:
    """Take a version number by creating its claim exclusively; the loser of a race takes the next one."""
    while True:
        high = highest_version(repo, name)
        v = high + 1 if version is None else version
        if v <= high:
            raise FileExistsError(f"{name} version {v} exists or was used before (highest {high}); numbers are never reused")
        try:
            os.close(os.open(parent / f".claimed-{v}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            if version is not None:
                raise FileExistsError(f"{name} version {v} is being published by another process") from None
            continue
        _fsync_dir(parent)
        return v


def _drop_older_claims(parent: Path, v: int) -> None:
    """Once version v is published, its claim is the high-water mark: older claims whose folder exists
    (or that were abandoned long ago) can go. Not before: a publish that fails unlinks its own claim,
    and had the older mark gone already, a removed folder's number could be handed out again."""
    for old in _claims(parent):
        claim = parent / f".claimed-{old}"
        try:
            if old < v and ((parent / str(old)).is_dir() or time.time() - claim.stat().st_mtime > CLAIM_KEEP_S):
                claim.unlink()
        except FileNotFoundError:
            pass


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(repo: Path, name: str, model_path: Path, manifest: dict, golden: dict,
            version: int | None = None, before_rename: Callable[[Path], None] | None = None) -> tuple[int, Path]:
    """Atomically publish one version; returns (version, final dir).

    The version (default: above every number `name` has used, see `highest_version`) is claimed
    first; `manifest["version"]` is set to it and re-validated, and `manifest.model.sha256` is checked
    against the file actually written. A folder of that number that appears before the rename (put
    there by something that takes no claim) sends the publish on to the next number, its manifest
    rewritten for it. `before_rename` is a test hook called with the temp dir just before the rename.
    """
    repo = Path(repo)
    parent = repo / name
    # Everything that can be refused is checked before a number is claimed or a file written.
    validate_manifest(dict(manifest, version=version or 1))
    require_finite(golden, "golden")
    golden_text = _json(golden, separators=(",", ":"))
    parent.mkdir(parents=True, exist_ok=True)
    claimed = [_claim(parent, repo, name, version)]
    tmp = parent / f".tmp-{claimed[0]}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        shutil.copyfile(model_path, tmp / "model.onnx")
        if sha256_file(tmp / "model.onnx") != manifest["model"]["sha256"]:
            raise RuntimeError("sha256 of the copied model differs from the manifest")
        (tmp / "golden.json").write_text(golden_text)
        for f in ("model.onnx", "golden.json"):
            _fsync_file(tmp / f)
        while True:
            final = parent / str(claimed[-1])
            published = dict(manifest, version=claimed[-1])
            validate_manifest(published)
            (tmp / "manifest.json").write_text(_json(published, indent=2) + "\n")
            _fsync_file(tmp / "manifest.json")
            _fsync_dir(tmp)
            if before_rename is not None:
                before_rename(tmp)
            try:
                if final.exists():  # rename() would replace an empty folder instead of failing
                    raise FileExistsError(errno.EEXIST, "a version folder of this number exists", str(final))
                os.rename(tmp, final)  # atomic on one filesystem; fails if a non-empty `final` appeared meanwhile
                break
            except OSError as e:
                if version is not None or e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            claimed.append(_claim(parent, repo, name, None))
        _fsync_dir(parent)
        _drop_older_claims(parent, claimed[-1])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        # A number nothing was published under may be taken again (a version folder of it would count anyway).
        for v in claimed:
            (parent / f".claimed-{v}").unlink(missing_ok=True)
        raise
    return claimed[-1], final


def clean_stale_temps(repo: Path, max_age_s: float = 3600.0) -> list[Path]:
    """Remove hidden `.tmp-*` leftovers of killed publishes (never visible to the server).

    Only temps older than `max_age_s`, so a publish running in another process is left alone.
    """
    import time

    gone = []
    for d in Path(repo).glob("*/.tmp-*"):
        if time.time() - d.stat().st_mtime < max_age_s:
            continue
        shutil.rmtree(d, ignore_errors=True)
        gone.append(d)
    return gone


def write_rollout(repo: Path, rollout: dict) -> Path:
    validate_rollout(rollout)
    text = _json(rollout, indent=2) + "\n"
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    tmp = repo / f".rollout.json.tmp-{secrets.token_hex(4)}"
    tmp.write_text(text)
    _fsync_file(tmp)
    os.replace(tmp, repo / "rollout.json")
    _fsync_dir(repo)
    return repo / "rollout.json"


def make_rollout(repo: Path, stable: dict[str, int], previous: dict | None = None) -> dict:
    """Routes per surface (own ctr student; cvr from the surface's own cvr student or feed-cvr).

    An existing route is kept: it may be an operator's (PUT /admin/rollout), and a publish of one model
    has no say over surfaces it did not touch. A surface without a route gets one only when both models
    of that route have flags: a partial publish (one task into a fresh repository) leaves the other
    surfaces unrouted rather than naming a model the server has no flags for, which would make it
    reject the whole file.
    """
    rollout = dict(previous or {"salt": "gemlite-v1", "routes": {}, "models": {}})
    rollout.setdefault("salt", "gemlite-v1")
    models = dict(rollout.get("models", {}))
    for name, v in stable.items():
        entry = dict(models.get(name, {}))
        entry["stable"] = v
        entry.pop("canary", None)
        models[name] = entry
    routes = dict(rollout.get("routes", {}))
    for surface in ("feed", "stories", "reels", "marketplace"):
        ctr = f"{surface}-ctr"
        if surface in routes or ctr not in models:
            continue
        cvr = f"{surface}-cvr" if f"{surface}-cvr" in models else "feed-cvr"
        if cvr not in models:
            continue
        routes[surface] = {"ctr": ctr, "cvr": cvr}
    rollout["models"] = models
    rollout["routes"] = routes
    validate_rollout(rollout)
    return rollout


def route_published(repo: Path, published: dict[str, int], mode: str) -> dict | None:
    """Update rollout.json for freshly published versions.

    mode "stable": the new versions become stable (what builds the bundled models/).
    mode "keep": an existing rollout.json is left untouched, so a new version arrives loaded but
    unrouted in a repository a server watches, and goes live only through a canary (admin API).
    Returns the rollout written, or None when nothing was written.
    """
    if mode not in ("stable", "keep"):
        raise ValueError(f"rollout mode must be stable or keep, got {mode!r}")
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    path = repo / "rollout.json"
    # Under the lock a server process's concurrent flag edit (admin API, canary rollback) is read and
    # kept here, rather than overwritten by flags read before it.
    with rollout_lock(repo):
        previous = json.loads(path.read_text()) if path.exists() else None
        if mode == "keep" and previous is not None:
            return None
        rollout = make_rollout(repo, published, previous)
        write_rollout(repo, rollout)
    return rollout
