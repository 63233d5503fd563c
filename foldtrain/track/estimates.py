"""Out-of-fold predictions at a chosen epoch per fold, and the CV estimates built from them.

Each epoch rule (`train.rules`) gives one estimate, `oof_f1_<rule>`. `oof_f1_best` is always the optimistic one, as
its name says; `oof_f1_last` and `oof_f1_honest` are None, with the reason in `estimate_notes`, whenever a fold's
own validation rows chose its epoch under that rule (early stopping, a lone fold): a number never carries a name it
does not deserve.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from foldtrain.data.prepare import PreparedData
from foldtrain.files import read_csv
from foldtrain.run.folder import RunFolder
from foldtrain.train import metrics
from foldtrain.train.checkpoint import read_val_scores
from foldtrain.train.rules import RULES


def rule_epochs(results: dict[int, dict], rule: str) -> dict[int, int]:
    """The epoch each fold is read at under `rule`."""
    return RULES[rule].epochs(results)


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
    return oof_frame(data, rows, scores)


def oof_frame(data: PreparedData, rows: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """`path, label, fold, pred, logit_<i>...` of `rows` with their class scores, sorted by path."""
    table = data.frame.iloc[rows][["path", "label", "fold"]].reset_index(drop=True)
    table["pred"] = scores.argmax(1)
    logits = pd.DataFrame(scores, columns=[f"logit_{i}" for i in range(scores.shape[1])])
    return pd.concat([table, logits], axis=1).sort_values("path", kind="stable", ignore_index=True)


def estimates(data: PreparedData, folder: RunFolder, results: dict[int, dict],
              interval: Callable | None = None) -> dict:
    """`oof_f1_best`, `oof_f1_last`, `oof_f1_honest` (None where a fold's own rows chose its epoch),
    `estimate_notes` (why each None), and with `interval(labels, preds, groups)` each figure's `..._ci`."""
    labels, groups = data.frame["label"].to_numpy(), data.frame["person"].to_numpy()
    out: dict = {}
    notes = {}
    for name, rule in RULES.items():
        key = f"oof_f1_{name}"
        reason = rule.chosen_on_own_rows(results) if name != "best" else None
        if reason:
            out[key], notes[key] = None, reason
            continue
        rows, scores = oof_scores(folder, rule.epochs(results))
        out[key] = metrics.macro_f1(labels[rows], scores.argmax(1), len(data.classes))
        if interval is not None:
            out[f"{key}_ci"] = interval(labels[rows], scores.argmax(1), groups[rows])
    out["estimate_notes"] = notes
    return out


def epoch_curves(folder: RunFolder, folds: list[int]) -> dict[int, pd.DataFrame]:
    """Each fold's metrics.csv (its per-epoch train and validation numbers)."""
    return {f: read_csv(folder.metrics(f)) for f in folds}
