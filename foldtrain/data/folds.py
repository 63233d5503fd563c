"""Person-grouped stratified k-fold assignment and the checks that guard it.

Photos of one person are near-duplicates: a person split across folds lets validation see training images,
and validation F1 then reads 0.97 while the test reads 0.70. Folds are therefore grouped by person.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


class FoldError(ValueError):
    """The fold assignment violates an invariant (a person in two folds, a class missing from a fold)."""


def assign_folds(frame: pd.DataFrame, k: int, seed: int) -> pd.Series:
    """Fold number (0..k-1) of every row, stratified by `label` and grouped by `person`.

    Raises:
        FoldError: fewer persons than folds, or an invariant does not hold (see `check_folds`).
    """
    groups = frame["person"].to_numpy()
    if len(np.unique(groups)) < k:
        raise FoldError(f"{len(np.unique(groups))} persons cannot fill {k} folds; lower cv.folds or add data")
    from sklearn.model_selection import StratifiedGroupKFold  # imported here: prediction never splits

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = np.full(len(frame), -1, dtype=int)
    for index, (_, val) in enumerate(splitter.split(np.zeros(len(frame)), frame["label"].to_numpy(), groups)):
        fold[val] = index
    folds = pd.Series(fold, index=frame.index, name="fold")
    for message in check_folds(frame, folds, k):
        log.warning(message)
    return folds


def check_folds(frame: pd.DataFrame, folds: pd.Series, k: int) -> list[str]:
    """Fail loudly on a broken split; return warnings for classes too small to reach every fold.

    Raises:
        FoldError: a row without a fold, a person in two folds, a class with at least k persons missing from
            some fold, or a fold whose count of a class strays from its share by more than the tolerance
            (half the share, or two persons' worth of images when that is more: persons come whole).
    """
    if (folds < 0).any() or (folds >= k).any():
        raise FoldError("some rows have no fold in 0..k-1")
    spread = pd.DataFrame({"person": frame["person"], "fold": folds}).groupby("person")["fold"].nunique()
    if (spread > 1).any():
        raise FoldError(f"persons in two folds: {spread[spread > 1].index.tolist()[:5]}")
    warnings = []
    persons_per_class = frame.groupby("label")["person"].nunique()
    present = pd.crosstab(frame["label"], folds).reindex(columns=range(k), fill_value=0)
    for label, row in present.iterrows():
        absent = [f for f in range(k) if row[f] == 0]
        if not absent:
            continue
        if persons_per_class[label] >= k:
            raise FoldError(f"class {label} ({persons_per_class[label]} persons) is missing from folds {absent}")
        warnings.append(f"class {label} has only {persons_per_class[label]} persons, too few for {k} folds: "
                        f"folds {absent} will not validate it (add data or lower cv.folds)")
    per_person_max = frame.groupby(["label", "person"]).size().groupby("label").max()
    for label, row in present.iterrows():
        if persons_per_class[label] < k:
            continue
        expected = row.sum() / k
        tolerance = max(0.5 * expected, 2 * per_person_max[label])
        for fold_index, count in row.items():
            if abs(count - expected) > tolerance:
                raise FoldError(f"fold {fold_index} holds {count} images of class {label}, expected about "
                                f"{expected:.0f} (tolerance {tolerance:.0f}): the split is not stratified; "
                                f"try another cv.seed")
    return warnings
