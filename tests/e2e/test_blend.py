"""Blending two real runs that share folds, predicting with the blend, and refusing runs split differently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import no_traceback, run_main, run_module

pytestmark = pytest.mark.slow

TINY = ["data.image_size=32", "train.batch_size=16", "cv.folds=3", "train.epochs=2", "data.num_workers=0"]


@pytest.fixture(scope="module")
def runs(demo_root: Path, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("blend")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    made = {}
    for name, extra in (("a", ["model.name=resnet10t", "cv.seed=3"]), ("b", ["model.name=resnet14t", "cv.seed=3"]),
                        ("other", ["model.name=resnet10t", "cv.seed=4"])):
        result = run_main([f"data.root={demo_root}", *TINY, *extra, f"run.name={name}", f"mlflow.tracking_uri={uri}",
                           "mlflow.experiment=blend"], cwd=work)
        assert result.returncode == 0, result.stderr[-3000:]
        made[name] = work / "runs" / name
    return {"work": work, "uri": uri, **made}


def test_blend_tunes_scores_and_predicts(runs: dict, demo_root: Path):
    work, out = runs["work"], runs["work"] / "blend"
    result = run_module("ensemble.blend", ["--run", str(runs["a"]), "--run", str(runs["b"]), "--out", str(out)],
                        cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    blend = json.loads((out / "blend.json").read_text())
    assert sum(blend["weights"]) == pytest.approx(1.0) and min(blend["weights"]) >= 0
    assert len(blend["class_bias"]) == 18
    assert blend["tta"] == "hflip"  # tuned on the views ensemble.predict uses by default
    assert set(blend["oof_f1_runs"]) == {str(runs["a"]), str(runs["b"])}
    low, high = blend["nested_cv_f1_ci"]
    assert low <= blend["nested_cv_f1"] <= high and "oof_f1_equal" in blend
    assert blend["bias_kept"] or blend["class_bias"] == [0.0] * 18  # biases stay only where held-out folds gain
    oof = pd.read_csv(out / "oof.csv")
    assert len(oof) == len(pd.read_csv(runs["a"] / "oof.csv")) and (out / "per_class_f1.png").stat().st_size > 1000

    predicted = run_module("ensemble.predict", ["--blend", str(out / "blend.json")], cwd=work)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    submission = pd.read_csv(out / "submission.csv")
    assert submission["ImageID"].tolist() == pd.read_csv(demo_root / "eval" / "info.csv")["ImageID"].tolist()

    client = MlflowClient(tracking_uri=runs["uri"])
    blends = client.search_runs([client.get_experiment_by_name("blend").experiment_id],
                                "tags.`foldtrain.kind` = 'blend'")
    assert len(blends) == 1 and blends[0].data.metrics["oof_f1"] == pytest.approx(blend["oof_f1"])
    parents = {json.loads((runs[n] / "tracking.json").read_text())["parent_id"] for n in ("a", "b")}
    assert set(blends[0].data.tags["foldtrain.source_runs"].split(",")) == parents
    assert "submission" in {a.path for a in client.list_artifacts(blends[0].info.run_id)}


def test_the_blend_through_the_predict_path_reproduces_its_tuned_oof_f1(runs: dict, tmp_path: Path, monkeypatch):
    """Each fold model predicts its own out-of-fold images as ensemble.predict would (eval folder, cache, TTA views),
    the runs are combined as predict --blend combines them: the tuned out-of-fold F1 comes back."""
    from ensemble.predict import run_config
    from ensemble.tuning import Blend, log_softmax, macro_f1
    from foldtrain.data.eval_set import eval_loader
    from foldtrain.model.fold_ensemble import FoldEnsemble, run_fold_models
    from foldtrain.run.folder import RunFolder

    work, out = runs["work"], runs["work"] / "blend-path"
    result = run_module("ensemble.blend", ["--run", str(runs["a"]), "--run", str(runs["b"]), "--out", str(out)],
                        cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    blend = json.loads((out / "blend.json").read_text())
    tuned = pd.read_csv(out / "oof.csv")  # sorted by path
    monkeypatch.chdir(work)
    logps = []
    for run in blend["runs"]:
        folder = RunFolder(Path(run))
        cfg = run_config(folder)
        folds = pd.read_csv(folder / "folds.csv")
        scores = {}
        for model in run_fold_models(folder):
            fold = int(model.name.split()[-1])
            paths = folds.loc[folds["fold"] == fold, "path"].tolist()
            eval_dir = tmp_path / f"{folder.name}-{fold}"
            (eval_dir / "images").mkdir(parents=True)
            names = [f"{i:04d}{Path(p).suffix}" for i, p in enumerate(paths)]
            for path, name in zip(paths, names, strict=True):
                shutil.copyfile(Path(cfg.data.root) / path, eval_dir / "images" / name)
            pd.DataFrame({"ImageID": names, "ans": 0}).to_csv(eval_dir / "info.csv", index=False)
            table, loader = eval_loader(cfg, eval_dir, model.size_hw, workers=0)
            fold_scores = FoldEnsemble([model], blend["tta"], torch.device("cpu")).predict(loader)
            scores.update(dict(zip(paths, fold_scores, strict=True)))
        logps.append(log_softmax(np.stack([scores[p] for p in tuned["path"]]).astype(np.float64)))
    preds = Blend(np.asarray(blend["weights"]), np.asarray(blend["class_bias"])).predict(np.stack(logps)).argmax(1)
    assert (preds == tuned["pred"].to_numpy()).mean() >= 0.99
    assert macro_f1(tuned["label"].to_numpy(), preds, 18) == pytest.approx(blend["oof_f1"], abs=0.01)


def test_blending_a_run_with_itself_reproduces_its_predictions(runs: dict):
    work, out = runs["work"], runs["work"] / "self"
    result = run_module("ensemble.blend", ["--run", str(runs["a"]), "--run", str(runs["a"]), "--out", str(out),
                                           "--no-bias"], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    blend = json.loads((out / "blend.json").read_text())
    assert blend["class_bias"] == [0.0] * 18
    oof = pd.read_csv(out / "oof.csv")
    own = pd.read_csv(runs["a"] / "oof_tta.csv").sort_values("path", ignore_index=True)
    assert (oof["pred"] == own["pred"]).all()
    for path in (out / "sub.csv", work / "own.csv"):
        source = ["--blend", str(out / "blend.json")] if path.parent == out else ["--run", str(runs["a"])]
        assert run_module("ensemble.predict", [*source, "--out", str(path)], cwd=work).returncode == 0
    assert pd.read_csv(out / "sub.csv").equals(pd.read_csv(work / "own.csv"))


def test_runs_split_differently_are_refused(runs: dict):
    result = run_module("ensemble.blend", ["--run", str(runs["a"]), "--run", str(runs["other"]), "--out",
                                           str(runs["work"] / "bad")], cwd=runs["work"])
    assert result.returncode == 1 and no_traceback(result)
    assert "split differently: cv.seed 3 vs 4" in result.stderr
    assert not (runs["work"] / "bad" / "blend.json").exists()


@pytest.fixture(scope="module")
def blended(runs: dict) -> Path:
    out = runs["work"] / "pinned"
    result = run_module("ensemble.blend", ["--run", str(runs["a"]), "--run", str(runs["b"]), "--out", str(out)],
                        cwd=runs["work"])
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "blend.json"


@pytest.mark.parametrize("tamper, named", [
    (lambda b: b.update(weights=[1.5, 1.5]), "sum to 3"),
    (lambda b: b.update(weights=[float("nan"), 1.0]), "finite and non-negative"),
])
def test_a_tampered_blend_is_refused_before_anything_runs(runs: dict, blended: Path, tmp_path: Path, tamper,
                                                           named: str):
    blend = json.loads(blended.read_text())
    tamper(blend)
    bad = tmp_path / "blend.json"
    bad.write_text(json.dumps(blend))
    result = run_module("ensemble.predict", ["--blend", str(bad), "--out", str(tmp_path / "sub.csv")],
                        cwd=runs["work"])
    assert result.returncode == 1 and no_traceback(result), result.stderr[-2000:]
    line = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert len(line) == 1 and str(bad) in line[0] and named in line[0], result.stderr[-2000:]
    assert not (tmp_path / "sub.csv").exists()


def test_a_source_retrained_in_place_is_refused(runs: dict, blended: Path, demo_root: Path, tmp_path: Path):
    work = runs["work"]
    copy = work / "runs" / "a-copy"
    shutil.copytree(runs["a"], copy)
    out = tmp_path / "blend"
    assert run_module("ensemble.blend", ["--run", str(copy), "--run", str(runs["b"]), "--out", str(out)],
                      cwd=work).returncode == 0
    shutil.rmtree(copy)  # retrained under the same path: other weights (seed 9)
    retrained = run_main([f"data.root={demo_root}", *TINY, "model.name=resnet10t", "cv.seed=3", "train.seed=9",
                          "run.name=a-copy", "mlflow.log_model=false", f"mlflow.tracking_uri={runs['uri']}"], cwd=work)
    assert retrained.returncode == 0, retrained.stderr[-2000:]
    result = run_module("ensemble.predict", ["--blend", str(out / "blend.json")], cwd=work)
    assert result.returncode == 1 and no_traceback(result)
    assert f"run {copy} is not the run" in result.stderr and "fold weights" in result.stderr


def test_runs_on_other_data_roots_are_refused(runs: dict, demo_root: Path, tmp_path: Path):
    twin = tmp_path / "twin"
    shutil.copytree(demo_root, twin)  # the same file names under another root
    made = run_main([f"data.root={twin}", *TINY, "model.name=resnet10t", "cv.seed=3", "run.name=twin",
                     "mlflow.log_model=false", f"mlflow.tracking_uri={runs['uri']}"], cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    result = run_module("ensemble.blend", ["--run", str(runs["a"]), "--run", str(tmp_path / "runs" / "twin"),
                                           "--out", str(tmp_path / "mixed")], cwd=tmp_path)
    assert result.returncode == 1 and no_traceback(result) and "other data roots" in result.stderr


def test_two_predicts_writing_one_file_each_log_their_own_bytes(runs: dict, tmp_path: Path):
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    work = runs["work"]
    own = {}
    for name in ("a", "b"):
        own[name] = tmp_path / f"{name}.csv"
        assert run_module("ensemble.predict", ["--run", str(runs[name]), "--out", str(own[name])],
                          cwd=work).returncode == 0
    assert own["a"].read_bytes() != own["b"].read_bytes()
    shared = tmp_path / "shared.csv"
    procs = [subprocess.Popen([sys.executable, "-m", "ensemble.predict", "--run", str(runs[name]), "--out",
                               str(shared)], cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for name in ("a", "b")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    client = MlflowClient(tracking_uri=runs["uri"])
    for name in ("a", "b"):
        parent = json.loads((runs[name] / "tracking.json").read_text())["parent_id"]
        logged = Path(client.download_artifacts(parent, "submission/shared.csv", str(tmp_path / f"dl-{name}")))
        assert logged.read_bytes() == own[name].read_bytes()
    assert shared.read_bytes() in (own["a"].read_bytes(), own["b"].read_bytes())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shared.csv")]


def test_a_blend_is_audited_on_its_combined_scores(runs: dict, blended: Path):
    result = run_module("ensemble.audit", ["--blend", str(blended)], cwd=runs["work"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "views)" in result.stderr and "blend of 2 runs" in result.stderr
    issues = pd.read_csv(blended.parent / "audit" / "label_issues.csv")
    assert list(issues.columns) == ["person", "kind", "given", "suggested", "score", "images"]
    assert (blended.parent / "audit" / "duplicates.csv").is_file()
