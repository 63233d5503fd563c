"""A failed model logging ends the parent run FAILED with its reason (never left RUNNING), on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from foldtrain.config import build_config
from foldtrain.run.folder import RunFolder
from foldtrain.track import model_logging
from foldtrain.track.mlflow_tracker import MLflowTracker
from foldtrain.track.parent_run import close_parent


def summary() -> dict:
    return {"folds_trained": [0], "cv_f1_mean": 0.5, "cv_f1_std": 0.0, "oof_f1": 0.5, "oof_acc": 0.6,
            "oof_f1_ci": [0.4, 0.6], "oof_rule": "last", "oof_f1_honest": None, "test_f1_pi": [0.3, 0.7],
            "test_persons": 4, "fold_f1": {"0": 0.5}, "fold_f1_ci": {"0": [0.4, 0.6]}, "best_epoch": {"0": 1},
            "checkpoint_epoch": {"0": 1}, "best_val_f1": {"0": 0.5}, "diagnosis": []}


def test_a_failed_model_logging_ends_the_parent_as_failed_with_the_reason(tmp_path: Path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = MLflowTracker("logging", uri)
    parent = tracker.start_run("run", tags={}, params={})
    cfg = build_config([], ["run.name=run"])
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()

    import mlflow.pyfunc

    def broken(*args, **kwargs):
        raise RuntimeError("the artifact store refused the upload")

    monkeypatch.setattr(mlflow.pyfunc, "log_model", broken)
    monkeypatch.setattr(model_logging, "stage_artifacts", lambda *args: tmp_path)
    monkeypatch.setattr(model_logging, "input_example", lambda data: None)
    data = type("Data", (), {"classes": ["a", "b"]})()
    with pytest.raises(model_logging.ModelLoggingError, match="refused the upload"):
        model_logging.log_ensemble_model(tracker, parent, cfg, folder, data, [0], summary())
    close_parent(tracker, parent, cfg, folder, summary(), failure="logging the fold ensemble failed (refused)")
    run = MlflowClient(tracking_uri=uri).get_run(parent)
    assert run.info.status == "FAILED" and "refused" in run.data.tags["foldtrain.failure"]
    assert run.data.metrics["oof_f1_ci_low"] == 0.4 and run.data.metrics["test_f1_pi_high"] == 0.7
    assert "fold_f1_ci_low" not in run.data.metrics  # a fold's figure is the fold run's, not the parent's


def test_a_clean_end_is_finished(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = MLflowTracker("logging", uri)
    parent = tracker.start_run("run", tags={}, params={})
    close_parent(tracker, parent, build_config([], []), RunFolder(tmp_path), summary())
    run = MlflowClient(tracking_uri=uri).get_run(parent)
    assert run.info.status == "FINISHED" and "foldtrain.failure" not in run.data.tags
    assert "honest n/a" in run.data.tags["mlflow.note.content"]
