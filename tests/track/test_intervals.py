"""Person-level intervals on macro F1: they cover the truth as often as they say, where a row bootstrap does not."""

from __future__ import annotations

import numpy as np
import pytest

from foldtrain.track.intervals import PersonCounts, f1_interval, hidden_test_interval, macro_f1_of
from foldtrain.train.metrics import macro_f1


def population(rng: np.random.Generator, persons: int, classes: int, photos: int = 7):
    """Clustered predictions: each person has one label and a skill; their photos are right or wrong together
    (a person the model gets wrong is wrong on most photos, towards one wrong class)."""
    label = rng.integers(0, classes, persons)
    wrong = (label + rng.integers(1, classes, persons)) % classes
    skill = np.sqrt(rng.beta(3, 1.5, persons)) * (rng.random(persons) < 0.85)
    right = rng.random((persons, photos)) < skill[:, None]
    labels = np.repeat(label, photos)
    preds = np.where(right.ravel(), labels, np.repeat(wrong, photos))
    return labels, preds, np.repeat(np.arange(persons), photos)


def test_counts_give_sklearns_macro_f1():
    rng = np.random.default_rng(0)
    labels, preds, groups = population(rng, 50, 6)
    counts = PersonCounts.of(labels, preds, groups, 8)  # two classes absent from both: scored 0, as sklearn does
    assert np.isclose(macro_f1_of(np.ones((1, counts.persons)), counts)[0], macro_f1(labels, preds, 8))
    twice = np.full((1, counts.persons), 2.0)  # every person drawn twice: the same F1
    assert np.isclose(macro_f1_of(twice, counts)[0], macro_f1(labels, preds, 8))


@pytest.mark.slow  # a million bootstrap draws (about a minute): a statistical check, not a unit
def test_the_90_percent_interval_covers_the_truth_where_a_row_bootstrap_does_not():
    rng = np.random.default_rng(1)
    classes, sample = 6, 200
    labels, preds, groups = population(rng, 200_000, classes)
    counts = PersonCounts.of(labels, preds, groups, classes)
    truth = macro_f1_of(np.ones((1, counts.persons)), counts)[0]
    by_person = labels.reshape(-1, 7), preds.reshape(-1, 7)
    persons_hit = rows_hit = 0
    trials = 500
    for trial in range(trials):
        chosen = rng.choice(counts.persons, sample, replace=False)
        y, p = by_person[0][chosen].ravel(), by_person[1][chosen].ravel()
        g = np.repeat(np.arange(sample), 7)
        low, high = f1_interval(y, p, g, classes, level=0.9, resamples=1000, seed=trial)
        persons_hit += low <= truth <= high
        low, high = f1_interval(y, p, np.arange(len(y)), classes, level=0.9, resamples=1000, seed=trial)
        rows_hit += low <= truth <= high
    assert persons_hit / trials >= 0.87, persons_hit / trials
    assert rows_hit / trials <= 0.75, rows_hit / trials


def test_a_test_set_interval_is_wider_for_fewer_persons_and_none_without_persons():
    rng = np.random.default_rng(2)
    labels, preds, groups = population(rng, 300, 6)
    small = hidden_test_interval(labels, preds, groups, 6, test_persons=30)
    large = hidden_test_interval(labels, preds, groups, 6, test_persons=300)
    assert small[1] - small[0] > large[1] - large[0] > 0
    assert small[0] <= macro_f1(labels, preds, 6) <= small[1]
    assert f1_interval(labels[:7], preds[:7], groups[:7], 6) is None  # one person: nothing to resample


def test_per_class_intervals_hold_each_class_f1():
    from foldtrain.track.intervals import per_class_intervals
    from foldtrain.train.metrics import per_class_f1

    rng = np.random.default_rng(3)
    labels, preds, groups = population(rng, 150, 6)
    bars = per_class_intervals(labels, preds, groups, 6)
    f1 = per_class_f1(labels, preds, 6)
    assert bars.shape == (6, 2) and (bars[:, 0] <= f1 + 1e-9).all() and (f1 <= bars[:, 1] + 1e-9).all()
    assert (bars[:, 1] - bars[:, 0] > 0).all()
