"""Ending runs on a real SQLite store: a fold run ended while its parent is open keeps its queued metrics, its end
time and status, and the parent still logs and ends after it."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from foldtrain.track.mlflow_tracker import MLflowTracker


def test_a_child_ended_before_its_parent_keeps_its_metrics_status_and_end_time(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = MLflowTracker("ending", uri)
    parent = tracker.start_run("run")
    children = [tracker.start_run(f"fold{k}", parent_id=parent) for k in range(2)]
    for k, child in enumerate(children):
        for epoch in range(3):
            tracker.log_metrics(child, {"val_f1": 0.1 * epoch + k}, step=epoch)  # queued, asynchronous
        tracker.end_run(child, "FAILED" if k else "FINISHED", end_time=1_700_000_000.0 + k)
    tracker.log_metrics(parent, {"oof_f1": 0.5})
    tracker.end_run(parent)
    assert not tracker.failed and not tracker.open_runs
    client = MlflowClient(tracking_uri=uri)
    for k, child in enumerate(children):
        run = client.get_run(child)
        assert run.info.status == ("FAILED" if k else "FINISHED")
        assert run.info.end_time == (1_700_000_000 + k) * 1000
        assert [m.value for m in client.get_metric_history(child, "val_f1")] == [k, 0.1 + k, 0.2 + k]
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.info.end_time and run.data.metrics["oof_f1"] == 0.5
