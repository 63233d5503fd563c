"""Reading the folds' learning curves: under-trained, over-fitting, or never better than chance, with what to do.

A fold is
- under-trained when its best validation F1 came in the last tenth of its epochs (the last epoch for runs of up to
  ten) and validation F1 was still rising: the mean of its last quarter of epochs (at least two) above the mean of
  the quarter before;
- over-fitting when its validation loss ended well above its lowest point while the training loss kept falling and
  validation F1 ended below its best (a loss that rises while F1 still climbs is confidence, not over-fitting);
- at chance when its best validation F1 never got clear of 1 / classes (guessing by the class shares).
A kind shared by at least half the folds is a warning for the run, with the advice a user needs.
"""

from __future__ import annotations

import math

import pandas as pd

RISE = 0.01  # validation F1 gain, last quarter against the quarter before, that counts as still rising
LOSS_RISE = 0.10  # relative rise of validation loss above its minimum that counts as over-fitting
CHANCE_MARGIN = 0.02


def fold_findings(history: pd.DataFrame, num_classes: int) -> list[str]:
    """The kinds (`under-trained`, `over-fitting`, `at chance`) one fold's metrics.csv shows."""
    if "val_f1" not in history or history["val_f1"].isna().all():
        return []
    f1, epochs = history["val_f1"].to_numpy(), len(history)
    findings = []
    tail = max(1, math.ceil(epochs / 10))
    window = max(epochs // 4, min(2, epochs // 2))
    rising = epochs >= 2 * window and f1[-window:].mean() - f1[-2 * window:-window].mean() > RISE
    if int(f1.argmax()) >= epochs - tail and rising:
        findings.append("under-trained")
    val_loss, train_loss = history["val_loss"].to_numpy(), history["train_loss"].to_numpy()
    low = int(val_loss.argmin())
    declined = f1[-1] < f1.max() - RISE / 2
    if low < epochs - 1 and val_loss[-1] > val_loss[low] * (1 + LOSS_RISE) and train_loss[-1] < train_loss[low] \
            and declined:
        findings.append("over-fitting")
    if f1.max() <= 1 / num_classes + CHANCE_MARGIN:
        findings.append("at chance")
    return findings


def advice(kind: str, folds: list[int], total: int, history: dict[int, pd.DataFrame]) -> str:
    count = f"{len(folds)} of {total} folds"
    if kind == "under-trained":
        return (f"{count} peaked in their last epochs with validation F1 still rising: raise train.epochs (about 2x) "
                f"or use train.early_stopping with more epochs")
    if kind == "over-fitting":
        return (f"{count} over-fit (validation loss rose while training loss fell): stronger augmentation (aug.*), "
                f"train.label_smoothing or fewer train.epochs; keep train.checkpoint=best or honest")
    best = max(float(history[f]["val_f1"].max()) for f in folds)
    return (f"{count} never beat chance (best validation F1 {best:.3f}): check the labels and images, or lower "
            f"train.lr")


def diagnose(history: dict[int, pd.DataFrame], num_classes: int) -> list[dict]:
    """`[{kind, folds, advice}]` for each kind that at least half the folds show (any fold, for `at chance`)."""
    found: dict[str, list[int]] = {}
    for fold, frame in history.items():
        for kind in fold_findings(frame, num_classes):
            found.setdefault(kind, []).append(fold)
    total = len(history)
    return [{"kind": kind, "folds": folds, "advice": advice(kind, folds, total, history)}
            for kind, folds in found.items() if kind == "at chance" or 2 * len(folds) >= total]
