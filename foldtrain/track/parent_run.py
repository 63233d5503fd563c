"""The parent MLflow run of a CV run: opened with the run's params, context and data set, closed with its scores."""

from __future__ import annotations

from foldtrain.config import Config, flatten
from foldtrain.data.prepare import PreparedData
from foldtrain.run.folder import FOLDS, OOF, OOF_TTA, SUMMARY, RunFolder
from foldtrain.track.mlflow_tracker import MLflowTracker
from foldtrain.track.results import PICTURES, headline

SCORES = ("cv_f1_mean", "cv_f1_std", "oof_f1", "oof_acc", "oof_f1_best", "oof_f1_last", "oof_f1_honest")
ARTIFACTS = (SUMMARY, FOLDS, OOF, OOF_TTA, "per_class_f1.csv", *PICTURES)


def open_parent(tracker: MLflowTracker, cfg: Config, folder: RunFolder, data: PreparedData,
                facts: dict) -> str | None:
    """The parent run: reattached on resume, else created with every resolved config value as a param."""
    saved = folder.tracking() if cfg.train.resume else {}
    if saved.get("parent_id"):
        return tracker.reattach(saved["parent_id"])
    params = flatten(cfg) | {"mlflow.tracking_uri": tracker.connect()} | facts
    parent = tracker.start_run(cfg.run.name, tags={"run_dir": str(folder.path.resolve()), "foldtrain.kind": "cv"},
                               params=params)
    tracker.log_artifact(parent, folder.config_file)
    if cfg.data.label_fixes:
        tracker.log_artifact(parent, cfg.data.label_fixes, "label_fixes")
    name = f"{folder.name}: {len(data.frame)} images, {len(data.classes)} classes"
    tracker.log_dataset(parent, data.frame, str(cfg.data.root), name, "training")
    return parent


def describe(cfg: Config, summary: dict) -> str:
    """The parent's one-line description."""
    return (f"{cfg.model.name} at {cfg.data.image_size} px, {len(summary['folds_trained'])} of {cfg.cv.folds} folds: "
            f"{headline(summary)}")


def interval_metrics(summary: dict) -> dict[str, float]:
    """`<key>_ci_low` / `<key>_ci_high` of each interval in the summary (`test_f1_pi_low` / `_high`)."""
    out = {}
    for key in (*(f"{k}_ci" for k in SCORES), "test_f1_pi"):
        if summary.get(key):
            out[f"{key}_low"], out[f"{key}_high"] = summary[key]
    return out


def close_parent(tracker: MLflowTracker, parent: str | None, cfg: Config, folder: RunFolder, summary: dict,
                 failure: str | None = None) -> None:
    """Scores (per fold with step = fold), description, artifacts, then FINISHED (FAILED, with the reason as the
    tag `foldtrain.failure`, when a step of the run's end such as model logging failed)."""
    if not parent:
        return
    tracker.log_metrics(parent, {k: summary[k] for k in SCORES if summary.get(k) is not None}
                        | interval_metrics(summary))
    for fold, f1 in summary["fold_f1"].items():
        ci = (summary.get("fold_f1_ci") or {}).get(fold) or [None, None]
        per_fold = {"fold_f1": f1, "best_epoch": summary["best_epoch"][fold], "fold_f1_ci_low": ci[0],
                    "fold_f1_ci_high": ci[1]}
        tracker.log_metrics(parent, {k: v for k, v in per_fold.items() if v is not None}, step=int(fold))
    tracker.set_tags(parent, {"mlflow.note.content": describe(cfg, summary),
                              "foldtrain.diagnosis": ", ".join(d["kind"] for d in summary["diagnosis"]) or "ok",
                              # what oof_f1 is: its epoch rule, and whether a fold's own rows chose the epochs
                              "foldtrain.oof_rule": summary.get("oof_rule", "?") + (
                                  f" (optimistic: {summary['oof_rule_note']})" if summary.get("oof_rule_note") else
                                  " (honest: no fold's own rows chose its epoch)")})
    for name in ARTIFACTS:
        tracker.log_artifact(parent, folder / name)
    if failure:
        tracker.set_tags(parent, {"foldtrain.failure": failure})
    tracker.end_run(parent, "FAILED" if failure else "FINISHED")
