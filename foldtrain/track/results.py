"""The run's results once its folds are done: oof.csv, summary.json and the pictures (main process only)."""

from __future__ import annotations

import numpy as np

from foldtrain.config import Config
from foldtrain.data.prepare import PreparedData
from foldtrain.files import write_csv, write_json
from foldtrain.run.folder import RunFolder
from foldtrain.track import report
from foldtrain.track.diagnosis import diagnose
from foldtrain.track.estimates import epoch_curves, estimates, oof_table
from foldtrain.train import metrics
from foldtrain.train.checkpoint import read_result

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
    write_csv(folder / "oof.csv", oof)
    labels, preds = oof["label"].to_numpy(), oof["pred"].to_numpy()
    fold_f1 = {str(f): metrics.macro_f1(labels[oof["fold"] == f], preds[oof["fold"] == f], num_classes)
               for f in folds}
    scores = np.array(list(fold_f1.values()))
    summary = {
        "run_name": cfg.run.name, "folds_trained": folds, "checkpoint": cfg.train.checkpoint, "fold_f1": fold_f1,
        "cv_f1_mean": float(scores.mean()), "cv_f1_std": float(scores.std()),
        "oof_f1": metrics.macro_f1(labels, preds, num_classes), "oof_acc": metrics.accuracy(labels, preds),
        **estimates(data, folder, results),
        "best_epoch": {str(f): r["best_epoch"] for f, r in results.items()},
        "checkpoint_epoch": {str(f): e for f, e in kept.items()},
        "best_val_f1": {str(f): r["best_f1"] for f, r in results.items()},
        "diagnosis": diagnose(epoch_curves(folder, folds), num_classes),
        "num_images": len(oof), "classes": data.classes, "parallel": cfg.cv.parallel, **facts,
    }
    full = read_result(folder.full)
    if full:
        summary["full_fit"] = full
    write_json(folder / "summary.json", summary)
    draw_pictures(cfg, data, folder, folds, labels, preds)
    return summary


def draw_pictures(cfg: Config, data: PreparedData, folder: RunFolder, folds: list[int], labels: np.ndarray,
                  preds: np.ndarray) -> None:
    """Confusion matrix, per-class F1 (picture and table) and learning curves."""
    num_classes = len(data.classes)
    f1s = metrics.per_class_f1(labels, preds, num_classes)
    report.plot_confusion(metrics.confusion(labels, preds, num_classes), data.classes,
                          folder / "confusion_matrix.png", f"{cfg.run.name} out-of-fold")
    report.plot_per_class_f1({"out-of-fold": f1s}, data.classes, folder / "per_class_f1.png",
                             f"{cfg.run.name} out-of-fold F1 per class")
    write_csv(folder / "per_class_f1.csv",
              report.per_class_table(f1s, np.bincount(labels, minlength=num_classes), data.classes))
    report.plot_learning_curves(epoch_curves(folder, folds), folder / "learning_curves.png",
                                f"{cfg.run.name} learning curves")
