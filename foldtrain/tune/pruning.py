"""Fold-aware pruning: k folds give k learning curves, and Optuna's pruners expect one.

A trial reports two kinds of intermediate values into its one Optuna curve, kept apart by step:

- the first fold's validation F1 after each epoch, at step `epoch` (a learning curve): pruned like Optuna's
  `MedianPruner`, against earlier trials at the same epoch;
- each fold's F1 once the fold ends, at step `FOLD_STEP + fold` (one value per fold, paired across trials because
  every trial of a study shares its folds): pruned like Optuna's `WilcoxonPruner`, a signed-rank test of this
  trial's fold F1s against the best trial's on the same folds.

Each stage's Optuna pruner sees only its own steps, so an epoch value is never paired with a fold value.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

from optuna.exceptions import ExperimentalWarning
from optuna.pruners import BasePruner, MedianPruner, WilcoxonPruner

FOLD_STEP = 100_000  # fold k's F1 is reported at FOLD_STEP + k; the first fold's epoch e at step e


def is_fold_step(step: int) -> bool:
    return step >= FOLD_STEP


def _fold_values(trial) -> SimpleNamespace:
    """A view of a trial with its fold steps only (what WilcoxonPruner reads: number and intermediate values)."""
    values = {s: v for s, v in trial.intermediate_values.items() if is_fold_step(s)}
    return SimpleNamespace(number=trial.number, intermediate_values=values)


class FoldAwarePruner(BasePruner):
    """Median pruning on the first fold's epochs, then a paired Wilcoxon test on fold F1s between folds.

    Args:
        n_startup_trials: finished trials before the epoch stage prunes anything.
        n_warmup_epochs: epochs of the first fold before its curve can be pruned.
        p_threshold: the fold stage prunes when this trial's fold F1s are below the best trial's at this p-value
            (one-sided signed-rank test; with 5 folds and this default, every fold so far must be worse).
        n_startup_folds: folds before the fold stage tests anything.
    """

    def __init__(self, n_startup_trials: int = 2, n_warmup_epochs: int = 1, p_threshold: float = 0.1,
                 n_startup_folds: int = 2):
        self.settings = {"n_startup_trials": n_startup_trials, "n_warmup_epochs": n_warmup_epochs,
                         "p_threshold": p_threshold, "n_startup_folds": n_startup_folds}
        self.curve = MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_epochs)
        with warnings.catch_warnings():  # "experimental since 3.6": the interface is what this module relies on
            warnings.simplefilter("ignore", ExperimentalWarning)
            self.folds = WilcoxonPruner(p_threshold=p_threshold, n_startup_steps=n_startup_folds)

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        if not is_fold_step(step):
            return self.curve.prune(study, trial)
        try:
            best = study.best_trial
        except ValueError:  # no finished trial yet: nothing to pair with
            return False
        view = SimpleNamespace(best_trial=_fold_values(best), direction=study.direction)
        return self.folds.prune(view, _fold_values(trial))
