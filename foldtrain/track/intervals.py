"""Intervals on macro F1 that respect persons: a person's photos are near-duplicates sharing gender and age, so the
unit of sampling is the person (or a csv table's `group`), never the row.

- `f1_interval`: a basic bootstrap over persons (persons drawn with replacement, all of a drawn person's rows
  kept): how far the macro F1 of *these* predictions could move had other persons of the same population been
  photographed. A row bootstrap treats 7 photos of one person as 7 independent draws and is far too narrow.
- `test_f1_interval`: the range the macro F1 of a hidden test set of `m` persons is expected to fall in, by
  drawing `m`-person test sets from the scored persons (the test set's own sampling noise, which dominates for a
  few hundred persons, plus the estimate's).

Each resample is scored from per-person count tables (true positives, true and predicted counts per class), so
1,000 resamples of 2,700 persons cost a few matrix products, not 1,000 sklearn calls. Macro F1 here follows
`train.metrics.macro_f1`: every class counts, a class absent from both labels and predictions scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL = 0.90
RESAMPLES = 1000
SEED = 0


@dataclass(frozen=True)
class PersonCounts:
    """Per-person class counts: true positives, true labels and predictions (persons x classes)."""

    tp: np.ndarray
    true: np.ndarray
    pred: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, preds: np.ndarray, groups: np.ndarray, num_classes: int) -> PersonCounts:
        _, person = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        persons = int(person.max()) + 1 if len(person) else 0

        def table(index: np.ndarray, keep: np.ndarray) -> np.ndarray:
            out = np.zeros((persons, num_classes))
            np.add.at(out, (person[keep], index[keep]), 1)
            return out

        everything = np.ones(len(labels), dtype=bool)
        return cls(table(labels, labels == preds), table(labels, everything), table(preds, everything))

    @property
    def persons(self) -> int:
        return len(self.tp)


def class_f1_of(weights: np.ndarray, counts: PersonCounts) -> np.ndarray:
    """Each class's F1 under each weighting of persons (resamples x persons -> resamples x classes)."""
    tp, true, pred = weights @ counts.tp, weights @ counts.true, weights @ counts.pred
    denominator = true + pred
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def macro_f1_of(weights: np.ndarray, counts: PersonCounts) -> np.ndarray:
    """Macro F1 of each weighting of persons (resamples x persons -> resamples)."""
    return class_f1_of(weights, counts).mean(axis=1)


def person_draws(persons: int, size: int, resamples: int, seed: int) -> np.ndarray:
    """How often each person is drawn in each resample of `size` persons (resamples x persons)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(size, np.full(persons, 1 / persons), size=resamples).astype(float)


def percentile_interval(values: np.ndarray, level: float) -> list[float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def per_class_intervals(labels: np.ndarray, preds: np.ndarray, groups: np.ndarray, num_classes: int,
                        level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray | None:
    """(classes x 2) percentile person-bootstrap intervals of each class's F1 (error bars); None for fewer than two
    persons."""
    counts = PersonCounts.of(labels, preds, groups, num_classes)
    if counts.persons < 2:
        return None
    f1 = class_f1_of(person_draws(counts.persons, counts.persons, resamples, seed), counts)
    tail = (1 - level) / 2 * 100
    return np.percentile(f1, [tail, 100 - tail], axis=0).T


def f1_interval(labels: np.ndarray, preds: np.ndarray, groups: np.ndarray, num_classes: int, level: float = LEVEL,
                resamples: int = RESAMPLES, seed: int = SEED) -> list[float] | None:
    """`[low, high]` of a `level` person-bootstrap interval for the macro F1 of `preds`; None for fewer than two
    persons (nothing to resample).

    The basic (reverse-percentile) bootstrap: macro F1 of a small set is biased low (a class with a few persons
    scores worse on a resample that repeats some and drops others), and reflecting the bootstrap quantiles around
    the estimate moves the interval up by that bias, where the plain percentile interval moves it down. On simulated
    clustered data it covered the truth more often than the percentile and BCa intervals at every size tried
    (benchmarks/bench_intervals.py)."""
    counts = PersonCounts.of(labels, preds, groups, num_classes)
    persons = counts.persons
    if persons < 2:
        return None
    estimate = macro_f1_of(np.ones((1, persons)), counts)[0]
    low, high = percentile_interval(macro_f1_of(person_draws(persons, persons, resamples, seed), counts), level)
    return [float(min(1.0, max(0.0, 2 * estimate - high))), float(min(1.0, max(0.0, 2 * estimate - low)))]


def hidden_test_interval(labels: np.ndarray, preds: np.ndarray, groups: np.ndarray, num_classes: int, test_persons: int,
                     level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> list[float] | None:
    """`[low, high]`: where the macro F1 on a hidden test set of `test_persons` persons like these should fall with
    probability `level`; None for fewer than two persons."""
    counts = PersonCounts.of(labels, preds, groups, num_classes)
    if counts.persons < 2 or test_persons < 1:
        return None
    return percentile_interval(macro_f1_of(person_draws(counts.persons, test_persons, resamples, seed), counts),
                               level)
