"""Which pseudo-labels a round keeps.

When the pool is the test set itself, a student fits the labels it is given: on a kept pool image it will answer
what the teacher said. A kept label therefore helps only when it is more often right than the student would be
without it, so the question is how precise the kept labels are, class by class.

- `precision` (the default): per predicted class, the lowest confidence at which the teacher's out-of-fold rows
  predicted as that class, at or above it, were right at least `pseudo.precision` of the time. The teacher's
  out-of-fold rows are images of persons its models never saw, as the pool's are, so their precision is an estimate
  of the pool labels' precision. Fold k's thresholds come from the other folds' rows only: fold k's rows are the
  ones the student's out-of-fold score reads, and must not choose anything. A weak teacher keeps few labels, a
  strong one many; a class the teacher is never precise on keeps none.
- `quantile`: per predicted class, the most confident (1 - `pseudo.quantile`) of the pool, whatever the teacher's
  precision: a fixed share of every class, rare ones included.

Three-head runs (mask, gender, age) select on each head's marginal probabilities, and keep an image when every head
passes; each head's share or precision is set so that the overall one is about the asked one.
"""

from __future__ import annotations

import numpy as np


def head_marginals(probs: np.ndarray, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """Each head's probabilities from the joint ones (class = the heads' indices in C order)."""
    grid = probs.reshape(len(probs), *sizes)
    axes = range(1, len(sizes) + 1)
    return [grid.sum(axis=tuple(a for a in axes if a != head)) for head in axes]


def keep_per_class(probs: np.ndarray, quantile: float) -> np.ndarray:
    """Which pool rows keep their hard label: per predicted class, those at or above the `quantile` of that class's
    confidences. One threshold for all classes keeps mostly the easy, frequent classes; a per-class quantile keeps
    the same share of each class the teacher predicts, rare ones included."""
    pred, conf = probs.argmax(1), probs.max(1)
    kept = np.zeros(len(probs), dtype=bool)
    for c in np.unique(pred):
        rows = pred == c
        kept[rows] = conf[rows] >= np.quantile(conf[rows], quantile)
    return kept


def keep_per_head(probs: np.ndarray, quantile: float, sizes: tuple[int, ...]) -> np.ndarray:
    """`keep_per_class` on each head's marginal probabilities; each head drops 1 - (1 - quantile)^(1/heads) of its
    images, so that with independent heads the share kept overall is still about 1 - quantile."""
    per_head = 1.0 - (1.0 - quantile) ** (1.0 / len(sizes))
    kept = np.ones(len(probs), dtype=bool)
    for marginal in head_marginals(probs, sizes):
        kept &= keep_per_class(marginal, per_head)
    return kept


def precision_thresholds(probs: np.ndarray, labels: np.ndarray, target: float) -> np.ndarray:
    """Per class, the lowest confidence at which the rows predicted as that class, at or above it, reach `target`
    precision; inf for a class that never does. The precision is shrunk, (right + 1) / (rows + 2), so that a class
    needs several right rows before a lucky few can vouch for it."""
    pred, conf = probs.argmax(1), probs.max(1)
    thresholds = np.full(probs.shape[1], np.inf)
    for c in np.unique(pred):
        rows = np.flatnonzero(pred == c)
        order = rows[np.argsort(-conf[rows], kind="stable")]
        right = np.cumsum(labels[order] == c)
        precise = np.flatnonzero((right + 1) / (np.arange(1, len(order) + 1) + 2) >= target)
        if len(precise):
            thresholds[c] = conf[order[precise[-1]]]
    return thresholds


def keep_above(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Rows whose confidence reaches their predicted class's threshold."""
    return probs.max(1) >= thresholds[probs.argmax(1)]


def keep_precise(pool: np.ndarray, oof: np.ndarray, oof_labels: np.ndarray, target: float,
                 sizes: tuple[int, ...] | None = None) -> tuple[np.ndarray, float | None]:
    """Which pool rows keep their hard label under per-class thresholds of `target` precision on the teacher's
    out-of-fold rows (`oof` probabilities, their true `oof_labels`), per head when `sizes` are the heads'; and the
    precision those thresholds reached on the out-of-fold rows they kept (None when they kept none)."""
    if sizes is None:
        thresholds = precision_thresholds(oof, oof_labels, target)
        kept, oof_kept = keep_above(pool, thresholds), keep_above(oof, thresholds)
    else:
        per_head = target ** (1.0 / len(sizes))  # independent heads: the joint precision is about the product
        kept, oof_kept = np.ones(len(pool), dtype=bool), np.ones(len(oof), dtype=bool)
        head_labels = np.unravel_index(oof_labels, sizes)
        for pool_m, oof_m, labels_m in zip(head_marginals(pool, sizes), head_marginals(oof, sizes), head_labels,
                                           strict=True):
            thresholds = precision_thresholds(oof_m, labels_m, per_head)
            kept &= keep_above(pool_m, thresholds)
            oof_kept &= keep_above(oof_m, thresholds)
    reached = float((oof.argmax(1)[oof_kept] == oof_labels[oof_kept]).mean()) if oof_kept.any() else None
    return kept, reached


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's probabilities to the power 1/temperature, renormalised (below 1 sharpens)."""
    powered = np.power(np.clip(probs, 1e-12, 1.0), 1.0 / temperature)
    return (powered / powered.sum(1, keepdims=True)).astype(np.float32)
