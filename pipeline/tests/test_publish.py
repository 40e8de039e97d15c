"""Manifests validate; publishing is atomic (an interrupted publish leaves no visible version)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

from pipeline.gemlite.data import World, fit_feature_spec
from pipeline.gemlite.publish import (RolloutInvalid, build_manifest, clean_stale_temps, make_rollout, publish, route_published,
                                      validate_manifest, validate_rollout, versions, write_rollout)

ROOT = Path(__file__).resolve().parents[2]


def _manifest(tiny_world, model):
    spec = fit_feature_spec(World(tiny_world), [0, 1], ad_buckets=1009, adv_buckets=211, cat_buckets=101)
    return build_manifest("feed-ctr", 1, "feed", "ctr", model, spec,
                          {"method": "identity", "observedRate": 0.02, "predictedRate": 0.021},
                          {"teacherVersion": "t1", "distillation": "kd_aux_adapter", "worldSeed": 3,
                           "trainingWindow": {"fromDay": 0, "toDay": 2}, "metrics": {"auc": 0.7}},
                          {"p01": 0.001, "p10": 0.01, "p50": 0.02, "p90": 0.05, "p99": 0.1})


def _visible(repo, name):
    return sorted(p.name for p in (repo / name).iterdir() if not p.name.startswith("."))


def test_manifest_validates_and_rejects_bad(tiny_world, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really onnx")
    m = _manifest(tiny_world, model)
    validate_manifest(m)
    assert m["history"] == {"maxLength": 256, "buckets": [16, 64, 256]}
    assert [i["name"] for i in m["inputs"]][-1] == "req_idx"
    bad = json.loads(json.dumps(m))
    bad["inputs"][0]["dtype"] = "int32"
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(bad)


def test_publish_versions_and_interrupted_publish(tiny_world, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"bytes of a model")
    m = _manifest(tiny_world, model)
    repo = tmp_path / "repo"
    v1, d1 = publish(repo, "feed-ctr", model, m, {"cases": []})
    v2, _ = publish(repo, "feed-ctr", model, m, {"cases": []})
    assert (v1, v2) == (1, 2) and versions(repo, "feed-ctr") == [1, 2]
    assert json.loads((d1 / "manifest.json").read_text())["version"] == 1

    def boom(tmp):
        assert tmp.name.startswith(".tmp-") and (tmp / "manifest.json").exists()
        raise KeyboardInterrupt("interrupted")

    with pytest.raises(KeyboardInterrupt):
        publish(repo, "feed-ctr", model, m, {"cases": []}, before_rename=boom)
    assert _visible(repo, "feed-ctr") == ["1", "2"]
    assert not list((repo / "feed-ctr").glob(".tmp-*"))


def test_killed_publish_leaves_only_hidden_temp(tiny_world, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"bytes of a model")
    m = _manifest(tiny_world, model)
    (tmp_path / "m.json").write_text(json.dumps(m))
    repo = tmp_path / "repo"
    code = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pipeline.gemlite.publish import publish
        def hang(tmp):
            print("READY", flush=True)
            time.sleep(60)
        publish({str(repo)!r}, "feed-ctr", {str(model)!r}, json.load(open({str(tmp_path / 'm.json')!r})), {{}},
                before_rename=hang)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup handlers run
    proc.wait()
    assert _visible(repo, "feed-ctr") == []
    assert len(list((repo / "feed-ctr").glob(".tmp-*"))) == 1
    assert clean_stale_temps(repo) == []  # too fresh: could be a publish in progress elsewhere
    assert clean_stale_temps(repo, max_age_s=0) and not list((repo / "feed-ctr").glob(".tmp-*"))
    v, _ = publish(repo, "feed-ctr", model, m, {})
    assert v == 2, "the killed publish's number stays claimed: a number is never handed out twice"


def test_rollout_routes(tmp_path):
    r = make_rollout(tmp_path, {"feed-ctr": 1, "stories-ctr": 1, "reels-ctr": 1, "feed-cvr": 1})
    assert r["routes"]["stories"] == {"ctr": "stories-ctr", "cvr": "feed-cvr"}
    assert "marketplace" not in r["routes"]
    path = write_rollout(tmp_path, r)
    schema = json.loads((ROOT / "schemas" / "rollout.schema.json").read_text())
    jsonschema.validate(json.loads(path.read_text()), schema)
    r2 = make_rollout(tmp_path, {"feed-ctr": 2}, r)
    assert r2["models"]["feed-ctr"] == {"stable": 2} and r2["models"]["reels-ctr"] == {"stable": 1}


def test_rollout_keep_publishes_unrouted(tmp_path):
    """A retrain into a watched repository must not route traffic by itself (found by the closed loop)."""
    first = route_published(tmp_path, {"feed-ctr": 1, "feed-cvr": 1}, "keep")
    assert first is not None, "no rollout.json yet: one is written"
    before = (tmp_path / "rollout.json").read_bytes()
    assert route_published(tmp_path, {"feed-ctr": 2}, "keep") is None
    assert (tmp_path / "rollout.json").read_bytes() == before
    promoted = route_published(tmp_path, {"feed-ctr": 2}, "stable")
    assert promoted["models"]["feed-ctr"] == {"stable": 2}
    with pytest.raises(ValueError):
        route_published(tmp_path, {"feed-ctr": 3}, "canary")


def test_rollout_routes_only_models_with_flags_and_refuses_what_the_server_refuses(tmp_path):
    """A partial publish (only feed-ctr, no feed-cvr flags yet) must not route a surface to a model with
    no entry: the server rejects the whole file (ROLLOUT_INVALID) and nothing new goes live."""
    written = route_published(tmp_path, {"feed-ctr": 1}, "stable")
    assert written["models"] == {"feed-ctr": {"stable": 1}}
    assert written["routes"] == {}
    validate_rollout(json.loads((tmp_path / "rollout.json").read_text()))
    both = route_published(tmp_path, {"feed-cvr": 1}, "stable")
    assert both["routes"] == {"feed": {"ctr": "feed-ctr", "cvr": "feed-cvr"}}

    # validate_rollout applies the server's cross-field rules (src/models/rollout.ts validateRollout)
    unrouted = {"salt": "s", "routes": {"feed": {"ctr": "feed-ctr", "cvr": "feed-cvr"}}, "models": {"feed-ctr": {"stable": 1}}}
    with pytest.raises(RolloutInvalid, match='/routes/feed/cvr names "feed-cvr", which has no entry in /models'):
        validate_rollout(unrouted)
    canary_is_stable = {"salt": "s", "routes": {}, "models": {"feed-ctr": {"stable": 2, "canary": {"version": 2, "percent": 5}}}}
    with pytest.raises(RolloutInvalid, match="/models/feed-ctr/canary/version equals stable"):
        validate_rollout(canary_is_stable)
    with pytest.raises(RolloutInvalid):
        write_rollout(tmp_path, unrouted)
    assert json.loads((tmp_path / "rollout.json").read_text()) == both


def test_stable_publish_keeps_existing_routes(tmp_path):
    """An operator's route (PUT /admin/rollout) survives a stable publish of an unrelated model; only a
    surface with no route gets one, once both its models have flags."""
    flags = {"salt": "gemlite-v1",
             "routes": {"feed": {"ctr": "feed-ctr", "cvr": "feed-cvr"},
                        "marketplace": {"ctr": "feed-ctr", "cvr": "feed-cvr"}},
             "models": {"feed-ctr": {"stable": 2}, "feed-cvr": {"stable": 2}, "marketplace-ctr": {"stable": 2}}}
    write_rollout(tmp_path, flags)
    after = route_published(tmp_path, {"feed-cvr": 3, "reels-ctr": 1}, "stable")
    assert after["routes"]["marketplace"] == {"ctr": "feed-ctr", "cvr": "feed-cvr"}
    assert after["routes"]["feed"] == flags["routes"]["feed"]
    assert after["routes"]["reels"] == {"ctr": "reels-ctr", "cvr": "feed-cvr"}
    assert "stories" not in after["routes"]
    assert after["models"]["feed-cvr"] == {"stable": 3}


def test_non_finite_metrics_become_null_and_no_nan_is_ever_written(tiny_world, tmp_path):
    """JSON has no NaN: a bare NaN token makes the server's JSON.parse reject the manifest (or the flags).
    An empty report half gives NaN rates and log-loss; they are published as unknown, not as NaN."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"bytes of a model")
    spec = fit_feature_spec(World(tiny_world), [0, 1], ad_buckets=1009, adv_buckets=211, cat_buckets=101)
    nan, inf = float("nan"), float("inf")
    m = build_manifest("feed-cvr", 1, "feed", "cvr", model, spec,
                       {"method": "identity", "observedRate": nan, "predictedRate": nan},
                       {"distillation": "none", "metrics": {"auc": None, "logloss": nan, "ne": inf, "evalRows": 0}},
                       {"p01": 0.001, "p10": 0.01, "p50": 0.02, "p90": 0.05, "p99": 0.1})
    assert m["calibration"] == {"method": "identity"}  # the schema has no null for the rates: unknown is absent
    assert m["lineage"]["metrics"] == {"auc": None, "logloss": None, "ne": None, "evalRows": 0}
    repo = tmp_path / "repo"
    _, d = publish(repo, "feed-cvr", model, m, {})

    def strict(text):
        return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-JSON token {token}"))

    strict((d / "manifest.json").read_text())

    bad = json.loads(json.dumps(m))
    bad["lineage"]["metrics"]["ne"] = nan
    with pytest.raises(ValueError, match="lineage/metrics/ne"):
        validate_manifest(bad)
    with pytest.raises(ValueError, match="lineage/metrics/ne"):
        publish(repo, "feed-cvr", model, bad, {})
    with pytest.raises(ValueError, match="golden"):
        publish(repo, "feed-cvr", model, m, {"cases": [{"outputs": {"p": {"data": [nan]}}}]})
    assert versions(repo, "feed-cvr") == [1] and _visible(repo, "feed-cvr") == ["1"]
    assert not list((repo / "feed-cvr").glob(".tmp-*"))

    flags = {"salt": "s", "routes": {}, "models": {"feed-cvr": {"stable": 1}}}
    write_rollout(repo, flags)
    with pytest.raises(ValueError, match="percent"):
        write_rollout(repo, {**flags, "models": {"feed-cvr": {"stable": 1, "canary": {"version": 2, "percent": nan}}}})
    assert strict((repo / "rollout.json").read_text()) == flags


def _publish_in_child(args):
    repo, model, m, n = args
    return [publish(repo, "feed-ctr", model, m, {})[0] for _ in range(n)]


def test_concurrent_publishers_take_distinct_versions(tiny_world, tmp_path):
    """Two publishers of one model at once (a run and a reexport) used to both take latest + 1; the slower
    one's rename then died with ENOTEMPTY after training. Each now claims its number exclusively, and a
    version that appears under it anyway (a copy by hand) sends it on to the next number."""
    import multiprocessing

    model = tmp_path / "m.onnx"
    model.write_bytes(b"bytes of a model")
    m = _manifest(tiny_world, model)
    repo = tmp_path / "repo"
    publish(repo, "feed-ctr", model, m, {})
    inner = []
    a, _ = publish(repo, "feed-ctr", model, m, {},
                   before_rename=lambda tmp: inner.append(publish(repo, "feed-ctr", model, m, {})[0]))
    assert (a, inner) == (2, [3])

    def copied_by_hand(tmp):
        taken = repo / "feed-ctr" / tmp.name.split("-")[1]  # .tmp-<claimed version>-<random>
        taken.mkdir()
        (taken / "manifest.json").write_text("{}")

    hooks = iter([copied_by_hand])
    b, d = publish(repo, "feed-ctr", model, m, {}, before_rename=lambda tmp: next(hooks, lambda _: None)(tmp))
    assert b == 5 and d == repo / "feed-ctr" / "5" and (repo / "feed-ctr" / "4" / "manifest.json").read_text() == "{}"

    with multiprocessing.get_context("fork").Pool(4) as pool:
        got = pool.map(_publish_in_child, [(repo, model, m, 3)] * 4)
    taken = sorted(v for vs in got for v in vs)
    assert taken == list(range(6, 18))
    for v in [1, 2, 3, 5] + taken:
        assert json.loads((repo / "feed-ctr" / str(v) / "manifest.json").read_text())["version"] == v
    assert not list((repo / "feed-ctr").glob(".tmp-*"))


def test_removed_version_number_is_never_reused(tiny_world, tmp_path):
    """Flags still naming a removed version (a canary whose folder an operator deleted) would route a new,
    never-promoted model that took its number; so would a server's cached view of the old one."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"bytes of a model")
    m = _manifest(tiny_world, model)
    repo = tmp_path / "repo"
    for _ in range(3):
        publish(repo, "feed-ctr", model, m, {})
    write_rollout(repo, {"salt": "s", "routes": {},
                         "models": {"feed-ctr": {"stable": 2, "canary": {"version": 7, "percent": 10}, "shadow": [5]}}})
    shutil.rmtree(repo / "feed-ctr" / "3")
    assert publish(repo, "feed-ctr", model, m, {})[0] == 8  # above the canary the flags name
    shutil.rmtree(repo / "feed-ctr" / "8")
    (repo / "rollout.json").unlink()
    v, d = publish(repo, "feed-ctr", model, m, {})
    assert v == 9 and json.loads((d / "manifest.json").read_text())["version"] == 9  # the high-water mark
    with pytest.raises(FileExistsError, match="never reused"):
        publish(repo, "feed-ctr", model, m, {}, version=8)
    assert versions(repo, "feed-ctr") == [1, 2, 9]
    (repo / "rollout.json").write_text("{not json")
    with pytest.raises(ValueError, match="rollout.json"):
        publish(repo, "feed-ctr", model, m, {})
    assert versions(repo, "feed-ctr") == [1, 2, 9] and not list((repo / "feed-ctr").glob(".tmp-*"))


def test_failed_publish_keeps_the_high_water_mark(tiny_world, tmp_path):
    # The claim of the newest published version was dropped as soon as the next number was claimed;
    # when that publish then failed and unlinked its own claim, no mark was left, and removing the
    # newest folder let its number be handed out again.
    model = tmp_path / "m.onnx"
    model.write_bytes(b"bytes of a model")
    m = _manifest(tiny_world, model)
    repo = tmp_path / "repo"
    assert publish(repo, "feed-ctr", model, m, {})[0] == 1
    assert publish(repo, "feed-ctr", model, m, {})[0] == 2
    bad = json.loads(json.dumps(m))
    bad["model"]["sha256"] = "0" * 64  # any failure after the claim
    with pytest.raises(RuntimeError):
        publish(repo, "feed-ctr", model, bad, {})
    shutil.rmtree(repo / "feed-ctr" / "2")  # an operator removes the newest version
    assert publish(repo, "feed-ctr", model, m, {})[0] == 3


def test_names_with_a_trailing_newline_are_refused_as_the_server_refuses_them():
    # Python's re lets a pattern's final `$` match before a trailing newline; the server's Ajv does
    # not, and it refused the whole rollout.json that Python had accepted and written.
    flags = {"salt": "s", "routes": {"feed": {"ctr": "feed-ctr\n", "cvr": "feed-cvr"}},
             "models": {"feed-ctr\n": {"stable": 1}, "feed-cvr": {"stable": 1}}}
    with pytest.raises(jsonschema.ValidationError):
        validate_rollout(flags)
    validate_rollout({"salt": "s", "routes": {"feed": {"ctr": "feed-ctr", "cvr": "feed-cvr"}},
                      "models": {"feed-ctr": {"stable": 1}, "feed-cvr": {"stable": 1}}})
