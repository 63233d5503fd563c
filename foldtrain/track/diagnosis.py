"""Reading the folds' learning curves: under-trained, over-fitting, or never better than chance, with what to do.

A fold is
- under-trained when its training loss was still falling steeply at the end (over its last quarter of epochs, at
  least one, it fell at no less than `STILL_FALLING` times its average rate over the whole run) and its validation
  F1 had not turned down (its best epoch among the last quarter of epochs, at least the last two, and the later half
  of the curve above the earlier half). Validation F1 on a fold of a dozen persons is too noisy to carry the verdict
  alone (a 4-epoch run whose folds peak at the second-to-last epoch is still plainly short), while the training
  loss, averaged over every training image, is not;
- over-fitting when its validation loss ended well above its lowest point while the training loss kept falling and
  validation F1 ended below its best (a loss that rises while F1 still climbs is confidence, not over-fitting);
- at chance when its best validation F1 never got clear of 1 / classes (guessing by the class shares).
A kind shared by at least half the folds is a warning for the run, with the advice a user needs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

RISE = 0.01  # validation F1 gain that counts as rising
STILL_FALLING = 0.4  # the training loss's late fall rate, relative to its whole-run average, that counts as steep
LOSS_RISE = 0.10  # relative rise of validation loss above its minimum that counts as over-fitting
CHANCE_MARGIN = 0.02


def fold_findings(history: pd.DataFrame, num_classes: int) -> list[str]:
    """The kinds (`under-trained`, `over-fitting`, `at chance`) one fold's metrics.csv shows."""
    if "val_f1" not in history or history["val_f1"].isna().all():
        return []
    f1, epochs = history["val_f1"].to_numpy(), len(history)
    val_loss, train_loss = history["val_loss"].to_numpy(), history["train_loss"].to_numpy()
    findings = []
    if loss_still_falling(train_loss) and validation_not_turned(f1):
        findings.append("under-trained")
    low = int(val_loss.argmin())
    declined = f1[-1] < f1.max() - RISE / 2
    if low < epochs - 1 and val_loss[-1] > val_loss[low] * (1 + LOSS_RISE) and train_loss[-1] < train_loss[low] \
            and declined:
        findings.append("over-fitting")
    if f1.max() <= 1 / num_classes + CHANCE_MARGIN:
        findings.append("at chance")
    return findings


def loss_still_falling(train_loss) -> bool:
    """The training loss fell over its last quarter of epochs (at least one) at `STILL_FALLING` times its average
    rate over the run or more."""
    epochs = len(train_loss)
    if epochs < 2 or not np.isfinite(train_loss).all():
        return False
    window = max(1, epochs // 4)
    course = (train_loss[0] - train_loss[-1]) / (epochs - 1)
    recent = (train_loss[-1 - window] - train_loss[-1]) / window
    return bool(course > 0 and recent >= STILL_FALLING * course)


def validation_not_turned(f1) -> bool:
    """Validation F1 peaked in the last quarter of epochs (at least the last two) and its later half is above its
    earlier half."""
    epochs = len(f1)
    if epochs < 2:
        return False
    late = max(2, math.ceil(epochs / 4))
    half = epochs // 2
    rising = f1[epochs - half:].mean() - f1[:half].mean() > RISE
    return bool(int(np.nanargmax(f1)) >= epochs - late and rising)


def advice(kind: str, folds: list[int], total: int, history: dict[int, pd.DataFrame]) -> str:
    count = f"{len(folds)} of {total} folds"
    if kind == "under-trained":
        return (f"{count} ended under-trained (training loss still falling steeply, validation F1 still near its "
                f"best): raise train.epochs (about 2x)")
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
