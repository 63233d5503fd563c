"""Tuning a blend on out-of-fold predictions: run weights, per-class biases, and an honest nested-CV score.

Pure NumPy on log-probabilities (rows x classes per run). Macro F1 is computed from counts, not with
scikit-learn's general routine, because tuning evaluates it thousands of times.

- `greedy_weights`: forward selection with replacement (Caruana et al., ICML 2004), started from the best single
  run; the blend kept is the best one seen, so it never scores below the best single run.
- `tune_biases`: coordinate ascent over one additive bias per class, each step exact over a bounded grid: for a
  class c, a row is predicted c exactly when its bias exceeds the row's margin, so sorting the margins once gives
  the macro F1 of every candidate bias at the cost of a search.
- `nested_cv`: tune on k-1 folds' rows, predict the held-out fold, pool; the score no tuning has seen.
- `tune_and_estimate`: the blend `ensemble.blend` keeps: biases only where the nested estimate says they carry over
  to rows they were not tuned on. Its score, `nested_f1`, makes that keep-or-drop decision inside the nested loop
  (for each held-out fold, on the other folds alone), so it is not the larger of two held-out scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foldtrain.train.metrics import log_softmax

__all__ = ["Blend", "Estimate", "blend", "greedy_weights", "log_softmax", "macro_f1", "nested_cv", "tune",
           "tune_and_estimate", "tune_biases"]

BIAS_GRID = np.round(np.arange(-3.0, 3.0001, 0.05), 4)  # bounded: a bias beyond +-3 nats flips most rows
ROUNDS = 4
GREEDY_STEPS = 40


def macro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> float:
    """Macro F1 over all classes (a class absent from both counts as 0, as the competition scores)."""
    tp = np.bincount(labels[labels == preds], minlength=num_classes)
    predicted = np.bincount(preds, minlength=num_classes)
    actual = np.bincount(labels, minlength=num_classes)
    return float(np.mean(_f1(tp, predicted, actual)))


def _f1(tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    denominator = predicted + actual
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def blend(logps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum of the runs' log-probabilities: (runs x rows x classes) -> rows x classes."""
    return np.tensordot(weights, logps, axes=1)


def greedy_weights(logps: np.ndarray, labels: np.ndarray, steps: int = GREEDY_STEPS) -> np.ndarray:
    """Non-negative weights summing to 1: forward selection with replacement from the best single run."""
    runs, _, num_classes = logps.shape
    singles = [macro_f1(labels, logps[r].argmax(1), num_classes) for r in range(runs)]
    counts = np.zeros(runs)
    counts[int(np.argmax(singles))] = 1
    total = logps[int(np.argmax(singles))].copy()
    best_counts, best_score = counts.copy(), max(singles)
    for _ in range(steps):
        n = counts.sum()
        trials = [macro_f1(labels, ((total + logps[r]) / (n + 1)).argmax(1), num_classes) for r in range(runs)]
        pick = int(np.argmax(trials))
        counts[pick] += 1
        total += logps[pick]
        if trials[pick] > best_score:
            best_counts, best_score = counts.copy(), trials[pick]
    return best_counts / best_counts.sum()


def tune_biases(logp: np.ndarray, labels: np.ndarray, grid: np.ndarray = BIAS_GRID,
                rounds: int = ROUNDS) -> np.ndarray:
    """One additive bias per class maximising macro F1 of `argmax(logp + bias)`, by coordinate ascent."""
    num_classes = logp.shape[1]
    bias = np.zeros(num_classes)
    best = macro_f1(labels, logp.argmax(1), num_classes)
    for _ in range(rounds):
        improved = False
        for c in range(num_classes):
            value, score = _best_bias(logp + bias, labels, c, bias[c], grid)
            if score > best + 1e-12:
                bias[c], best, improved = value, score, True
        if not improved:
            break
    return bias


def _best_bias(shifted: np.ndarray, labels: np.ndarray, c: int, current: float,
               grid: np.ndarray) -> tuple[float, float]:
    """The grid value for class c's bias with the best macro F1 (others fixed), and that F1; ties go to the value
    nearest zero, so no bias moves without a gain."""
    num_classes = shifted.shape[1]
    base = shifted[:, c] - current  # class c's score without its bias
    others = shifted.copy()
    others[:, c] = -np.inf
    alternative = others.argmax(1)
    margin = others[np.arange(len(labels)), alternative] - base  # the row is predicted c iff bias > margin
    order = np.argsort(margin, kind="stable")
    # Rows predicted c for each grid value: those whose margin lies below it.
    switched = np.searchsorted(margin[order], grid, side="left")
    alt_sorted, label_sorted = alternative[order], labels[order]
    actual = np.bincount(labels, minlength=num_classes)
    # Per class k != c: rows that leave k for c, counted cumulatively along the sorted margins.
    leave = np.zeros((len(labels) + 1, num_classes))
    leave[1:] = np.cumsum(np.eye(num_classes)[alt_sorted], axis=0)
    leave_hit = np.zeros((len(labels) + 1, num_classes))
    leave_hit[1:] = np.cumsum(np.eye(num_classes)[alt_sorted] * (alt_sorted == label_sorted)[:, None], axis=0)
    hits_c = np.concatenate([[0], np.cumsum(label_sorted == c)])
    predicted_alt = np.bincount(alternative, minlength=num_classes)
    tp_alt = np.bincount(alternative[alternative == labels], minlength=num_classes)
    predicted = predicted_alt[None, :] - leave[switched]
    tp = tp_alt[None, :] - leave_hit[switched]
    predicted[:, c] = switched
    tp[:, c] = hits_c[switched]
    f1 = _f1(tp, predicted, actual[None, :]).mean(axis=1)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    pick = best[np.argmin(np.abs(grid[best]))]
    return float(grid[pick]), float(f1[pick])


@dataclass
class Blend:
    """Tuned weights (one per run) and biases (one per class)."""

    weights: np.ndarray
    bias: np.ndarray

    def predict(self, logps: np.ndarray) -> np.ndarray:
        """Blended, biased log-probabilities of (runs x rows x classes)."""
        return blend(logps, self.weights) + self.bias


def tune(logps: np.ndarray, labels: np.ndarray, weights: bool = True, biases: bool = True) -> Blend:
    """Weights (greedy, or equal with `weights=False`), then biases on the weighted blend (zeros without)."""
    runs, _, num_classes = logps.shape
    w = greedy_weights(logps, labels) if weights else np.full(runs, 1.0 / runs)
    b = tune_biases(blend(logps, w), labels) if biases else np.zeros(num_classes)
    return Blend(w, b)


def nested_cv(logps: np.ndarray, labels: np.ndarray, folds: np.ndarray, weights: bool = True,
              biases: bool = True) -> tuple[float, np.ndarray]:
    """(macro F1 of the pooled held-out predictions, those predictions): each fold's rows predicted by a blend
    tuned on the other folds' rows only."""
    preds = np.empty(len(labels), dtype=np.int64)
    for fold in np.unique(folds):
        held = folds == fold
        tuned = tune(logps[:, ~held], labels[~held], weights, biases)
        preds[held] = tuned.predict(logps[:, held]).argmax(1)
    return macro_f1(labels, preds, logps.shape[2]), preds


def biases_carry_over(logps: np.ndarray, labels: np.ndarray, folds: np.ndarray, weights: bool) -> bool:
    """True when per-class biases raise the nested-CV score of these rows."""
    if len(np.unique(folds)) < 2:
        return False
    return nested_cv(logps, labels, folds, weights, True)[0] > nested_cv(logps, labels, folds, weights, False)[0]


def nested_cv_choosing_biases(logps: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                              weights: bool = True) -> tuple[float, np.ndarray]:
    """Like `nested_cv`, with the keep-or-drop decision on biases also made for each held-out fold on the other
    folds' rows alone: the honest score of the whole procedure `tune_and_estimate` runs."""
    preds = np.empty(len(labels), dtype=np.int64)
    for fold in np.unique(folds):
        held = folds == fold
        keep = biases_carry_over(logps[:, ~held], labels[~held], folds[~held], weights)
        preds[held] = tune(logps[:, ~held], labels[~held], weights, keep).predict(logps[:, held]).argmax(1)
    return macro_f1(labels, preds, logps.shape[2]), preds


@dataclass
class Estimate:
    """The kept blend, its honest score and held-out predictions, and the two nested-CV scores its bias decision
    compared (each chosen on the rows it scores, so neither is the estimate)."""

    blend: Blend
    nested_f1: float
    nested_preds: np.ndarray
    nested_f1_no_bias: float
    nested_f1_bias: float | None

    @property
    def bias_kept(self) -> bool:
        return self.nested_f1_bias is not None and self.nested_f1_bias > self.nested_f1_no_bias


def tune_and_estimate(logps: np.ndarray, labels: np.ndarray, folds: np.ndarray, weights: bool = True,
                      biases: bool = True) -> Estimate:
    """Tune the blend and score it honestly; per-class biases are kept only when they raise the nested-CV score.

    Eighteen biases fitted to a few hundred out-of-fold rows can chase single images of a rare class: the in-sample
    F1 always rises, so only held-out rows can tell whether they carry over (on a 60-person set they did not).
    """
    plain, plain_preds = nested_cv(logps, labels, folds, weights, biases=False)
    if not biases:
        return Estimate(tune(logps, labels, weights, False), plain, plain_preds, plain, None)
    biased = nested_cv(logps, labels, folds, weights, biases=True)[0]
    honest, preds = nested_cv_choosing_biases(logps, labels, folds, weights)
    return Estimate(tune(logps, labels, weights, biased > plain), honest, preds, plain, biased)
