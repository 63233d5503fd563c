"""A blend in MLflow: a run in the first source run's experiment, tagged `foldtrain.kind=blend`, with the source
parent runs, the weights and biases as params, the scores as metrics, and blend.json and its picture."""

from __future__ import annotations

from pathlib import Path

from foldtrain.track.mlflow_tracker import MLflowTracker

SCORES = ("oof_f1", "oof_f1_equal", "nested_cv_f1")


def tracking_of(folder) -> dict:
    return folder.tracking()


def log_blend(runs, out: Path, result: dict) -> dict:
    """Log the blend; returns `{run_id, tracking_uri, experiment}` (empty when the first run was not tracked)."""
    first = tracking_of(runs[0].folder)
    if not first.get("parent_id"):
        return {}
    tracker = MLflowTracker(first["experiment"], first.get("tracking_uri"))
    sources = [tracking_of(run.folder).get("parent_id", "") for run in runs]
    params = {f"weight.{i}.{run.folder.name}": w for i, (run, w) in enumerate(zip(runs, result["weights"],
                                                                                  strict=True))}
    params |= {f"bias.{i}": b for i, b in enumerate(result["class_bias"])} | {"bias_kept": result["bias_kept"]}
    run_id = tracker.start_run(f"blend-{out.resolve().name}", tags={"foldtrain.kind": "blend",
                                                                    "foldtrain.source_runs": ",".join(sources)},
                               params=params)
    tracker.log_metrics(run_id, {k: result[k] for k in SCORES})
    if result.get("nested_cv_f1_ci"):
        low, high = result["nested_cv_f1_ci"]
        tracker.log_metrics(run_id, {"nested_cv_f1_ci_low": low, "nested_cv_f1_ci_high": high})
    for i, (name, f1) in enumerate(result["oof_f1_runs"].items()):
        tracker.log_metrics(run_id, {f"oof_f1_run{i}": f1})
        tracker.set_tags(run_id, {f"foldtrain.run{i}": name})
    for name in ("blend.json", "oof.csv", "per_class_f1.png", "per_class_f1.csv"):
        tracker.log_artifact(run_id, out / name)
    tracker.end_run(run_id)
    return {"run_id": run_id, "tracking_uri": tracker.uri, "experiment": first["experiment"]} if run_id else {}


def log_submission(blend: dict, out: Path) -> None:
    """The submission of `ensemble.predict --blend` as an artifact of the blend's run."""
    mlflow = blend.get("mlflow") or {}
    if mlflow.get("run_id"):
        tracker = MLflowTracker(mlflow["experiment"], mlflow.get("tracking_uri"))
        tracker.log_artifact(mlflow["run_id"], out, "submission")
