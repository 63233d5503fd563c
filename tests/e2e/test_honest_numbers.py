"""Every number means what its name says, through the real CLI: stored scores match the epochs run after a restart,
an estimate a fold's own rows chose is not called honest, every F1 has a person-level interval, and a resume that
would half-apply a changed setting is refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foldtrain.demo import generate_demo
from tests.conftest import REPO, cli_env, no_traceback, run_main

pytestmark = pytest.mark.slow

TRAIN = ["model.name=resnet10t", "data.image_size=32", "train.batch_size=16", "cv.folds=3", "data.num_workers=0",
         "train.epochs=4"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("honest")
    generate_demo(work / "data", persons=15, seed=11)
    return work


def args(work: Path, name: str, *extra: str) -> list[str]:
    return [f"data.root={work / 'data'}", *TRAIN, f"run.name={name}", f"mlflow.tracking_uri=sqlite:///{work}/m.db",
            "mlflow.log_model=false", *extra]


def kill_in_fold0(work: Path, name: str) -> Path:
    """Start a run and SIGTERM it once fold 0 has saved its first resume state (and its first scores)."""
    run = work / "runs" / name
    process = subprocess.Popen([sys.executable, str(REPO / "foldtrain" / "main.py"), *args(work, name)], cwd=work,
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "fold0" / "state" / "state.json").exists():
        assert process.poll() is None and time.time() < deadline, "the run never saved a resume state"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert (run / "fold0" / "val_scores.npz").is_file() and not (run / "summary.json").exists()
    return run


@pytest.fixture(scope="module")
def uninterrupted(work: Path) -> Path:
    result = run_main(args(work, "straight", "ci.level=0.8", "ci.resamples=300", "ci.test_persons=5", "ci.seed=3"),
                      cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "runs" / "straight"


def stored_epochs(run: Path, fold: int) -> np.ndarray:
    with np.load(run / f"fold{fold}" / "val_scores.npz", allow_pickle=False) as saved:
        return saved["scores"]


def check_scores_match(run: Path, reference: Path) -> None:
    for fold in range(3):
        result = json.loads((run / f"fold{fold}" / "result.json").read_text())
        scores = stored_epochs(run, fold)
        assert len(scores) == result["epochs_run"] == len(pd.read_csv(run / f"fold{fold}" / "metrics.csv"))
        np.testing.assert_allclose(scores, stored_epochs(reference, fold), rtol=1e-4, atol=1e-4)
    ours, theirs = pd.read_csv(run / "oof.csv"), pd.read_csv(reference / "oof.csv")
    assert (ours["pred"] == theirs["pred"]).mean() > 0.98


def test_a_run_killed_in_fold_0_and_started_again_stores_only_its_own_epochs(work, uninterrupted):
    run = kill_in_fold0(work, "killed")
    result = run_main(args(work, "killed"), cwd=work)  # the same command again: no weights yet, so allowed
    assert result.returncode == 0, result.stderr[-3000:]
    check_scores_match(run, uninterrupted)


def test_restarting_a_fold_by_deleting_its_state_starts_a_fresh_history(work, uninterrupted):
    run = kill_in_fold0(work, "restarted")
    shutil.rmtree(run / "fold0" / "state")  # the advice a broken state's message gives
    result = run_main(args(work, "restarted", "train.resume=true"), cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    check_scores_match(run, uninterrupted)


def test_the_summary_carries_person_level_intervals(uninterrupted):
    summary = json.loads((uninterrupted / "summary.json").read_text())
    low, high = summary["oof_f1_ci"]
    assert low <= summary["oof_f1"] <= high and high > low
    assert summary["oof_rule"] == "last" and summary["oof_rule_note"] is None
    assert summary["ci_level"] == 0.8 and summary["test_persons"] == 5
    pi_low, pi_high = summary["test_f1_pi"]
    assert pi_high - pi_low > high - low  # five persons' F1 varies more than the whole set's estimate
    for fold, (f_low, f_high) in summary["fold_f1_ci"].items():
        assert f_low <= summary["fold_f1"][fold] <= f_high
    assert summary["oof_f1_honest"] is not None and len(summary["oof_f1_honest_ci"]) == 2
    # the kept epochs scored again through the prediction path with hflip views
    assert summary["oof_tta"] == "hflip" and len(pd.read_csv(uninterrupted / "oof_tta.csv")) == len(
        pd.read_csv(uninterrupted / "oof.csv"))


def test_one_trained_fold_gives_no_honest_number(work):
    result = run_main(args(work, "lone", "cv.only=[0]", "cv.oof_tta=none"), cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((work / "runs" / "lone" / "summary.json").read_text())
    assert "oof_tta" not in summary and not (work / "runs" / "lone" / "oof_tta.csv").exists()
    assert summary["oof_f1_honest"] is None and "one trained fold" in summary["estimate_notes"]["oof_f1_honest"]
    assert "honest n/a" in result.stderr and "oof_f1_honest is not reported: one trained fold" in result.stderr


def test_early_stopping_makes_the_last_epoch_estimate_say_so(work):
    result = run_main(args(work, "early", "train.epochs=8", "train.early_stopping=1", "train.lr=0.03"), cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    run = work / "runs" / "early"
    summary = json.loads((run / "summary.json").read_text())
    results = [json.loads((run / f"fold{k}" / "result.json").read_text()) for k in range(3)]
    stopped = [r["fold"] for r in results if r["stopped_early"]]
    assert stopped, "with patience 1 over 8 epochs some fold should stop early"
    assert summary["oof_f1_last"] is None and str(stopped) in summary["estimate_notes"]["oof_f1_last"]
    assert summary["oof_rule_note"] and "oof_f1 is optimistic" in result.stderr  # the kept epochs are the last ones
    assert summary["oof_f1_best"] is not None


def folder_digest(run: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in run.rglob("*") if p.is_file() and p.name != ".lock"):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_a_resume_with_another_learning_rate_is_refused_and_changes_nothing(work):
    run = kill_in_fold0(work, "changed")
    before = folder_digest(run)
    result = run_main(args(work, "changed", "train.resume=true", "train.lr=0.01"), cwd=work)
    assert result.returncode != 0 and no_traceback(result)
    line = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert len(line) == 1 and "train.lr: 0.003 in the run, 0.01 now" in line[0]
    assert folder_digest(run) == before
