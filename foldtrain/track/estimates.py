"""Out-of-fold predictions at a chosen epoch per fold, and the CV estimates built from them.

Every fold keeps every epoch's validation scores, so the out-of-fold table can be read at any epoch rule:
- `best`: each fold's best epoch by its own validation F1. Choosing the epoch on the same rows that score it is
  optimistic: the max of noisy epoch scores is biased upward.
- `last`: each fold's last epoch; nothing is chosen on the validation rows, so it is an honest score of the last
  weights.
- `honest`: each fold at the median best epoch of the *other* folds (`train.cv.honest_epochs`); its own rows
  play no part in the choice, so it is an honest score of a best-epoch-like rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from foldtrain.data.prepare import PreparedData
from foldtrain.run.folder import RunFolder
from foldtrain.train import metrics
from foldtrain.train.checkpoint import read_val_scores
from foldtrain.train.cv import honest_epochs

RULES = ("best", "last", "honest")


def rule_epochs(results: dict[int, dict], rule: str) -> dict[int, int]:
    """The epoch each fold is read at under `rule`."""
    if rule == "best":
        return {f: r["best_epoch"] for f, r in results.items()}
    if rule == "last":
        return {f: r["epochs_run"] - 1 for f, r in results.items()}
    return honest_epochs({f: r["best_epoch"] for f, r in results.items()},
                         {f: r["epochs_run"] for f, r in results.items()})


def oof_scores(folder: RunFolder, epochs: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, class scores) of every validation image, each fold at its epoch in `epochs`."""
    rows, scores = [], []
    for fold, epoch in epochs.items():
        fold_rows, fold_scores = read_val_scores(folder.fold(fold))
        rows.append(fold_rows)
        scores.append(fold_scores[epoch])
    return np.concatenate(rows), np.concatenate(scores)


def oof_table(data: PreparedData, folder: RunFolder, epochs: dict[int, int]) -> pd.DataFrame:
    """`path, label, fold, pred` and one score column per class, every validation image once, sorted by path."""
    rows, scores = oof_scores(folder, epochs)
    table = data.frame.iloc[rows][["path", "label", "fold"]].reset_index(drop=True)
    table["pred"] = scores.argmax(1)
    logits = pd.DataFrame(scores, columns=[f"logit_{i}" for i in range(scores.shape[1])])
    return pd.concat([table, logits], axis=1).sort_values("path", kind="stable", ignore_index=True)


def estimates(data: PreparedData, folder: RunFolder, results: dict[int, dict]) -> dict[str, float]:
    """`oof_f1_best`, `oof_f1_last` and `oof_f1_honest`: the out-of-fold macro F1 under each epoch rule."""
    labels = data.frame["label"].to_numpy()
    out = {}
    for rule in RULES:
        rows, scores = oof_scores(folder, rule_epochs(results, rule))
        out[f"oof_f1_{rule}"] = metrics.macro_f1(labels[rows], scores.argmax(1), len(data.classes))
    return out


def epoch_curves(folder: RunFolder, folds: list[int]) -> dict[int, pd.DataFrame]:
    """Each fold's metrics.csv (its per-epoch train and validation numbers)."""
    return {f: pd.read_csv(folder.fold(f) / "metrics.csv") for f in folds}
