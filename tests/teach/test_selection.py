"""Pseudo-label selection by the teacher's out-of-fold precision: per class, down to the confidence at which the
teacher was right often enough on persons it never saw; per head for three-head runs; fold k's thresholds from the
other folds' rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foldtrain.teach.pseudo import ALL_DATA
from foldtrain.teach.selection import keep_precise, precision_thresholds
from tests.teach.test_pseudo import labelled


def two_class_probs(confidence: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    probs = np.zeros((len(confidence), 2))
    probs[np.arange(len(confidence)), predicted] = confidence
    probs[np.arange(len(confidence)), 1 - predicted] = 1 - confidence
    return probs


def test_a_class_keeps_labels_down_to_where_its_out_of_fold_precision_holds():
    # class 0: the ten most confident rows right, the next ten wrong; class 1: only three rows, all right
    conf = np.concatenate([np.linspace(0.99, 0.90, 10), np.linspace(0.89, 0.80, 10), [0.99, 0.98, 0.97]])
    predicted = np.array([0] * 20 + [1] * 3)
    labels = np.array([0] * 10 + [1] * 10 + [1] * 3)
    thresholds = precision_thresholds(two_class_probs(conf, predicted), labels, 0.9)
    assert np.isclose(thresholds[0], 0.90)  # (10 + 1) / (10 + 2) = 0.92; one wrong row more: 11 / 13 = 0.85
    assert np.isinf(thresholds[1])  # three right rows cannot vouch for 0.9: (3 + 1) / (3 + 2) = 0.8
    pool = two_class_probs(np.array([0.95, 0.85, 0.999]), np.array([0, 0, 1]))
    kept, reached = keep_precise(pool, two_class_probs(conf, predicted), labels, 0.9)
    assert kept.tolist() == [True, False, False] and reached == 1.0


def test_three_head_runs_drop_the_head_the_teacher_is_imprecise_on():
    rng = np.random.default_rng(0)
    n = 300

    def joint(mask, gender, age):
        return (mask[:, :, None, None] * gender[:, None, :, None] * age[:, None, None, :]).reshape(len(mask), 18)

    confident = lambda k, c: np.eye(k)[c] * 0.9 + 0.1 / k  # noqa: E731
    mask_c, gender_c, age_c = rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 3, n)
    oof = joint(confident(3, mask_c), confident(2, gender_c), confident(3, age_c))
    truth_age = np.where(age_c == 2, (age_c + 1) % 3, age_c)  # the teacher's ">=60" answers are always wrong
    labels = mask_c * 6 + gender_c * 3 + truth_age
    pool_age = np.array([0, 1, 2, 2])
    pool = joint(confident(3, np.zeros(4, int)), confident(2, np.ones(4, int)), confident(3, pool_age))
    kept, reached = keep_precise(pool, oof, labels, 0.9, (3, 2, 3))
    assert kept.tolist() == [True, True, False, False]
    assert reached == 1.0  # the out-of-fold rows the thresholds keep are the right ones


def test_fold_k_thresholds_are_set_by_the_other_folds_rows_alone(tmp_path: Path):
    # teacher fold 0 labels the pool class 1; its own rows say class 1 is always right, the other folds' rows that
    # it is always wrong: the student's fold 0 must follow the other folds (its own rows score the student)
    def oof(own_right: bool, others_right: bool):
        folds = np.repeat([0, 1, 2], 20)
        right = np.where(folds == 0, own_right, others_right)
        return ([f"o{i}.jpg" for i in range(60)], np.where(right, 1, 0), folds, np.ones(60, int), np.full(60, 8.0))

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    trusted_by_itself, _ = labelled(tmp_path / "a", oof=oof(own_right=True, others_right=False))
    trusted_by_others, _ = labelled(tmp_path / "b", oof=oof(own_right=False, others_right=True))
    fold0 = [pool.table[pool.table["fold"] == 0] for pool in (trusted_by_itself, trusted_by_others)]
    assert not fold0[0]["kept"].any() and fold0[1]["kept"].all()
    assert fold0[1]["oof_precision"].iloc[0] == 1.0
    everyone = trusted_by_others.table[trusted_by_others.table["fold"] == ALL_DATA]
    assert everyone["teacher_folds"].iloc[0] == "0 1 2"  # the all-data fit is calibrated on every row
