"""The run's results once its folds are done: oof.csv, summary.json and the pictures (main process only)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from foldtrain.config import Config
from foldtrain.data.prepare import PreparedData
from foldtrain.files import write_csv, write_json
from foldtrain.run.folder import RunFolder
from foldtrain.track import report
from foldtrain.track.diagnosis import diagnose
from foldtrain.track.estimates import epoch_curves, estimates, oof_frame, oof_table
from foldtrain.track.intervals import f1_interval, hidden_test_interval, per_class_intervals
from foldtrain.train import metrics
from foldtrain.train.checkpoint import read_result
from foldtrain.train.oof_views import read_oof_views
from foldtrain.train.rules import RULES

PICTURES = ("confusion_matrix.png", "per_class_f1.png", "learning_curves.png")


def write_results(cfg: Config, data: PreparedData, folder: RunFolder, folds: list[int], facts: dict) -> dict:
    """oof.csv (each fold at its kept epoch), summary.json and the pictures; returns the summary.

    Args:
        facts: what the caller knows about the run (world size, device, mixed precision, effective batch, seconds).
    """
    num_classes = len(data.classes)
    results = {f: read_result(folder.fold(f)) for f in folds}
    kept = {f: r["checkpoint_epoch"] for f, r in results.items()}
    oof = oof_table(data, folder, kept)
    write_csv(folder.oof_file, oof)
    labels, preds = oof["label"].to_numpy(), oof["pred"].to_numpy()
    persons = data.frame.set_index("path").loc[oof["path"], "person"].to_numpy()
    interval = partial(f1_interval, num_classes=num_classes, level=cfg.ci.level, resamples=cfg.ci.resamples,
                       seed=cfg.ci.seed)
    in_fold = {f: (oof["fold"] == f).to_numpy() for f in folds}
    fold_f1 = {str(f): metrics.macro_f1(labels[rows], preds[rows], num_classes) for f, rows in in_fold.items()}
    scores = np.array(list(fold_f1.values()))
    # default: the persons of one validation fold, as a hidden test set usually is
    test_persons = cfg.ci.test_persons or max(1, round(pd.Series(persons).nunique() / len(folds)))
    rule_note = RULES[cfg.train.checkpoint].chosen_on_own_rows(results)
    summary = {
        "run_name": cfg.run.name, "folds_trained": folds, "checkpoint": cfg.train.checkpoint, "fold_f1": fold_f1,
        "cv_f1_mean": float(scores.mean()), "cv_f1_std": float(scores.std()),
        "oof_f1": metrics.macro_f1(labels, preds, num_classes), "oof_acc": metrics.accuracy(labels, preds),
        # the rule the kept epochs follow, and why fold k's own rows chose them (None: they chose nothing)
        "oof_rule": cfg.train.checkpoint, "oof_rule_note": rule_note,
        "oof_f1_ci": interval(labels, preds, persons),
        "fold_f1_ci": {str(f): interval(labels[rows], preds[rows], persons[rows]) for f, rows in in_fold.items()},
        "test_persons": test_persons,
        "test_f1_pi": hidden_test_interval(labels, preds, persons, num_classes, test_persons, level=cfg.ci.level,
                                           resamples=cfg.ci.resamples, seed=cfg.ci.seed),
        "ci_level": cfg.ci.level,
        **estimates(data, folder, results, interval),
        "best_epoch": {str(f): r["best_epoch"] for f, r in results.items()},
        "checkpoint_epoch": {str(f): e for f, e in kept.items()},
        "best_val_f1": {str(f): r["best_f1"] for f, r in results.items()},
        "diagnosis": diagnose(epoch_curves(folder, folds), num_classes),
        "num_images": len(oof), "classes": data.classes, "parallel": cfg.cv.parallel, **facts,
    }
    summary |= write_oof_views(cfg, data, folder, folds, interval, dict(zip(oof["path"], persons, strict=True)))
    full = read_result(folder.full)
    if full:
        summary["full_fit"] = full
    write_json(folder.summary_file, summary)
    draw_pictures(cfg, data, folder, folds, labels, preds, persons)
    return summary


def write_oof_views(cfg: Config, data: PreparedData, folder: RunFolder, folds: list[int], interval,
                    person_of: dict) -> dict:
    """oof_tta.csv (as oof.csv, each fold's kept epoch scored with the `cv.oof_tta` views) and its F1, when every
    fold has those scores."""
    views = [read_oof_views(folder.fold(f)) for f in folds]
    if cfg.cv.oof_tta == "none" or any(v is None or v["tta"] != cfg.cv.oof_tta for v in views):
        return {}
    rows = np.concatenate([v["rows"] for v in views])
    table = oof_frame(data, rows, np.concatenate([v["scores"] for v in views]))
    write_csv(folder.oof_tta_file, table)
    labels, preds = table["label"].to_numpy(), table["pred"].to_numpy()
    persons = table["path"].map(person_of).to_numpy()
    return {"oof_tta": cfg.cv.oof_tta, "oof_f1_tta": metrics.macro_f1(labels, preds, len(data.classes)),
            "oof_f1_tta_ci": interval(labels, preds, persons)}


def draw_pictures(cfg: Config, data: PreparedData, folder: RunFolder, folds: list[int], labels: np.ndarray,
                  preds: np.ndarray, persons: np.ndarray) -> None:
    """Confusion matrix, per-class F1 (picture with person-bootstrap error bars, and table) and learning curves."""
    num_classes = len(data.classes)
    f1s = metrics.per_class_f1(labels, preds, num_classes)
    bars = per_class_intervals(labels, preds, persons, num_classes, cfg.ci.level, cfg.ci.resamples, cfg.ci.seed)
    report.plot_confusion(metrics.confusion(labels, preds, num_classes), data.classes,
                          folder / "confusion_matrix.png", f"{cfg.run.name} out-of-fold")
    report.plot_per_class_f1({"out-of-fold": f1s}, data.classes, folder / "per_class_f1.png",
                             f"{cfg.run.name} out-of-fold F1 per class ({cfg.ci.level:.0%} intervals, persons "
                             f"resampled)", intervals=None if bars is None else {"out-of-fold": bars})
    write_csv(folder / "per_class_f1.csv",
              report.per_class_table(f1s, np.bincount(labels, minlength=num_classes), data.classes, bars))
    report.plot_learning_curves(epoch_curves(folder, folds), folder / "learning_curves.png",
                                f"{cfg.run.name} learning curves")


def stage_facts(stages: dict[str, float], mlflow_seconds: float) -> dict:
    """Where the main process's time went, for summary.json: `stage_seconds` (setup: imports, Accelerate and the run
    folder; data: tables, folds and the decoded cache; parent_run: the model's session and the MLflow store and
    parent run; folds: training, validation and the out-of-fold TTA scores; results: oof.csv, intervals, pictures;
    model_logging), `mlflow_seconds` (time spent in MLflow calls during the
    stages before model logging) and `peak_rss_mb` (this process's largest resident memory so far)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    return {"stage_seconds": {k: round(v, 2) for k, v in stages.items()}, "mlflow_seconds": round(mlflow_seconds, 2),
            "peak_rss_mb": round(peak, 1)}


def span(interval: list[float] | None) -> str:
    return f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def headline(summary: dict) -> str:
    """The run's scores in one line, each F1 with its interval, each estimate named by what it is."""
    level = f"{summary.get('ci_level', 0.9):.0%}"
    honest = summary.get("oof_f1_honest")
    parts = [f"oof_f1 {summary['oof_f1']:.4f}{span(summary.get('oof_f1_ci'))} (rule {summary.get('oof_rule', '?')}"
             + (", optimistic" if summary.get("oof_rule_note") else "") + ")",
             f"honest {honest:.4f}{span(summary.get('oof_f1_honest_ci'))}" if honest is not None else "honest n/a",
             f"cv_f1 {summary['cv_f1_mean']:.4f} +- {summary['cv_f1_std']:.4f}"]
    if summary.get("test_f1_pi"):
        parts.append(f"a {summary['test_persons']}-person test set: F1 in{span(summary['test_f1_pi'])}")
    return f"{', '.join(parts)} ({level} intervals, persons resampled)"


def caveats(summary: dict) -> list[str]:
    """Why a figure is optimistic or missing, one line each, for the log."""
    lines = []
    if summary.get("estimates_optimistic"):  # a taught run's leak: no epoch rule of its own undoes it
        lines.append(f"oof_f1 is optimistic: {summary['oof_rule_note']}; so is every estimate of this run")
    elif summary.get("oof_rule_note"):
        lines.append(f"oof_f1 is optimistic: {summary['oof_rule_note']}; trust oof_f1_honest or oof_f1_last")
    if summary.get("pseudo", {}).get("pool_note"):  # what oof_f1 does not say about the pool photos themselves
        lines.append(summary["pseudo"]["pool_note"])
    for key, reason in summary.get("estimate_notes", {}).items():
        lines.append(f"{key} is not reported: {reason}")
    return lines
