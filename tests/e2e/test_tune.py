"""`python -m foldtrain.tune` through the real CLIs: a study killed during its first trial continues with the same
command run as two workers on one storage, a trial is pruned on its first fold's curve, and study.json, best.yaml
and MLflow say what happened."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from foldtrain.config import build_config
from foldtrain.tune.pruning import FOLD_STEP
from tests.conftest import cli_env, no_traceback, run_module

pytestmark = pytest.mark.slow

BASE = ["cv.folds=2", "train.epochs=2", "data.image_size=32", "train.batch_size=16", "mlflow.log_model=false",
        "ci.resamples=100"]
SPACE = {"train.lr": FloatDistribution(1e-3, 1e-2, log=True), "aug.scale_min": FloatDistribution(0.5, 0.9)}


def test_a_killed_study_continues_prunes_and_reports(tmp_path: Path, demo_root: Path):
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {log: [1.0e-3, 1.0e-2]}\naug.scale_min: {float: [0.5, 0.9]}\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--space", str(space), "--study", "s", f"data.root={demo_root}", f"mlflow.tracking_uri={uri}", *BASE]
    out = tmp_path / "runs" / "s"

    # 1. killed while its first trial trains
    first = subprocess.Popen([sys.executable, "-m", "foldtrain.tune", "--trials", "2", "--no-prune", *args],
                             cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "trial000" / "config.yaml").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert first.poll() is None, "the study ended before its first trial started"
    first.kill()
    first.wait(30)

    # 2. the same command continues, here as two workers on the one storage started together: the orphaned trial
    #    is failed and its parameters run again, and the workers run different trials
    workers = [subprocess.Popen([sys.executable, "-m", "foldtrain.tune", "--trials", "3", "--no-prune", *args],
                                cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-1500:] for _, err in outputs]
    assert not any("Traceback" in out + err for out, err in outputs)
    said = "".join(out for out, _ in outputs)
    assert said.count("marked FAIL and queued again") == 1 and "its worker" in said
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"  # beside the MLflow store
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.trials[0].state == TrialState.FAIL
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) >= 3 and len({t.user_attrs["worker"] for t in done}) == 2  # both workers ran trials
    assert len({t.user_attrs["run_dir"] for t in done}) == len(done)
    assert len({tuple(t.params.values()) for t in done}) == len(done)  # no two trials drew the same values
    assert study.trials[0].params in [t.params for t in done]  # the killed trial's values ran again

    # 3. more finished trials than real ones that no real trial can match (F1 0.99 at every step): the next trial is
    #    pruned on its first fold's second epoch, below the median of the finished trials there
    fakes = len(done) + 1
    for _ in range(fakes):
        study.add_trial(create_trial(params={"train.lr": 3e-3, "aug.scale_min": 0.7}, distributions=SPACE, value=0.99,
                                     intermediate_values={0: 0.99, 1: 0.99, FOLD_STEP: 0.99, FOLD_STEP + 1: 0.99}))
    total = len(done) + fakes + 1
    pruned_run = run_module("foldtrain.tune", ["--trials", str(total), "--then-blend", "2", *args], tmp_path,
                            timeout=600)
    assert pruned_run.returncode == 0 and no_traceback(pruned_run), pruned_run.stderr[-2000:]
    blend = json.loads((out / "blend" / "blend.json").read_text())  # the best two trials share folds: blended
    assert len(blend["weights"]) == 2
    report = json.loads((out / "study.json").read_text())
    states = Counter(t["state"] for t in report["trials"])
    assert states == {"FAIL": 1, "COMPLETE": len(done) + fakes, "PRUNED": 1}
    pruned = next(t for t in report["trials"] if t["state"] == "PRUNED")
    assert "pruned by study 's'" in pruned["pruned"] and "epoch 1" in pruned["pruned"]
    assert pruned["fold_epochs"] == 2  # the first fold's two epochs; the second fold never started
    assert not (Path(pruned["run_dir"]) / "summary.json").exists()  # never scored as a complete run

    # the honest answer: the best real trial, and the choice corrected for selection
    real = [t for t in report["trials"] if t["state"] == "COMPLETE" and t["run_dir"]]
    assert len(real) == len(done)
    best = report["best"]
    assert best["number"] in {t["number"] for t in real}
    assert best["oof_f1_honest"] == max(t["oof_f1_honest"] for t in real)
    assert report["selection_corrected_f1"] <= best["oof_f1_honest"]
    assert report["fold_epochs"] == sum(t["fold_epochs"] or 0 for t in report["trials"])
    rerun = build_config([best["config"]])  # best.yaml is a config a run takes as is
    assert rerun.train.lr == pytest.approx(best["params"]["train.lr"]) and rerun.run.name is None

    # MLflow: one study run, each trial's run its child, the pruned one KILLED and marked
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("foldtrain").experiment_id], max_results=100)
    studies = [r for r in runs if r.data.tags.get("foldtrain.kind") == "study"]
    assert len(studies) == 1 and studies[0].info.status == "FINISHED"
    assert studies[0].data.metrics["trials_pruned"] == 1
    trial_runs = {r.data.tags["foldtrain.trial"]: r for r in runs if "foldtrain.trial" in r.data.tags}
    assert all(r.data.tags["mlflow.parentRunId"] == studies[0].info.run_id for r in trial_runs.values())
    marked = trial_runs[str(pruned["number"])]
    assert marked.info.status == "KILLED" and "pruned" in marked.data.tags["foldtrain.pruned"]

