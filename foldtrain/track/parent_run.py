"""The parent MLflow run of a CV run: opened with the run's params, context and data set, closed with its scores."""

from __future__ import annotations

import pandas as pd

from foldtrain.config import Config, flatten
from foldtrain.data.prepare import PreparedData
from foldtrain.run.folder import FOLDS, OOF, OOF_TTA, PSEUDO_LABELS, SUMMARY, RunFolder
from foldtrain.track.mlflow_tracker import MLflowTracker
from foldtrain.track.register import describe
from foldtrain.track.results import PICTURES
from foldtrain.tune.trial import trial_context

SCORES = ("cv_f1_mean", "cv_f1_std", "oof_f1", "oof_acc", "oof_f1_best", "oof_f1_last", "oof_f1_honest")
FOLD_TABLE = "fold_scores.json"  # an MLflow table: the artifact view shows it as one
ARTIFACTS = (SUMMARY, FOLDS, OOF, OOF_TTA, "per_class_f1.csv", PSEUDO_LABELS, *PICTURES)


def open_parent(tracker: MLflowTracker, cfg: Config, folder: RunFolder, data: PreparedData,
                facts: dict, kind_tags: dict[str, str] | None = None) -> str | None:
    """The parent run: reattached on resume, else created with every resolved config value as a param.

    `kind_tags` replace `foldtrain.kind=cv` for a run taught by another (`foldtrain.kind=distill` and the teacher).
    """
    saved = folder.tracking() if cfg.train.resume else {}
    if saved.get("parent_id"):
        return tracker.reattach(saved["parent_id"])
    params = flatten(cfg) | {"mlflow.tracking_uri": tracker.connect()} | facts
    tags = {"run_dir": str(folder.path.resolve()), "foldtrain.kind": "cv"} | (kind_tags or {})
    trial = trial_context() or {}
    if trial:  # a trial of `foldtrain.tune`: a child of the study's run
        tags |= {"foldtrain.study": trial["study"], "foldtrain.trial": str(trial["number"])}
    parent = tracker.start_run(cfg.run.name, tags=tags, params=params, parent_id=trial.get("mlflow_parent"))
    tracker.log_artifact(parent, folder.config_file)
    if cfg.data.label_fixes:
        tracker.log_artifact(parent, cfg.data.label_fixes, "label_fixes")
    name = f"{folder.name}: {len(data.frame)} images, {len(data.classes)} classes"
    tracker.log_dataset(parent, data.frame, str(cfg.data.root), name, "training")
    return parent


def interval_metrics(summary: dict) -> dict[str, float]:
    """`<key>_ci_low` / `<key>_ci_high` of each interval in the summary (`test_f1_pi_low` / `_high`)."""
    out = {}
    for key in (*(f"{k}_ci" for k in SCORES), "test_f1_pi"):
        if summary.get(key):
            out[f"{key}_low"], out[f"{key}_high"] = summary[key]
    return out


def fold_table(summary: dict) -> pd.DataFrame:
    """One row per fold: its F1 at the kept epoch with the interval, and its best and kept epochs (counted from 0,
    as in metrics.csv)."""
    rows = []
    for fold, f1 in summary["fold_f1"].items():
        low, high = (summary.get("fold_f1_ci") or {}).get(fold) or [None, None]
        rows.append({"fold": int(fold), "fold_f1": f1, "fold_f1_ci_low": low, "fold_f1_ci_high": high,
                     "best_epoch": summary["best_epoch"][fold], "kept_epoch": summary["checkpoint_epoch"][fold],
                     "best_val_f1": summary["best_val_f1"][fold]})
    return pd.DataFrame(rows)


def close_parent(tracker: MLflowTracker, parent: str | None, cfg: Config, folder: RunFolder, summary: dict,
                 failure: str | None = None) -> None:
    """Run-level scores (also the logged model's metrics), the folds as a table, description, artifacts, then
    FINISHED (FAILED, with the reason as the tag `foldtrain.failure`, when a step of the run's end such as model
    logging failed). No fold's figure is a metric of the parent: the runs table would show the last fold's value
    as if it were the run's."""
    if not parent:
        return
    tracker.log_metrics(parent, {k: summary[k] for k in SCORES if summary.get(k) is not None}
                        | interval_metrics(summary), model_id=summary.get("model_id"))
    tracker.log_table(parent, fold_table(summary), FOLD_TABLE)
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
