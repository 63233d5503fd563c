"""Fold-aware pruning on constructed curves: the first fold's epochs against earlier trials at the same epoch, then
fold F1s paired with the best trial's; an epoch value is never paired with a fold value."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from foldtrain.tune.pruning import FOLD_STEP, FoldAwarePruner

LR = {"train.lr": FloatDistribution(1e-4, 1e-1, log=True)}


def study_with(finished: list[tuple[float, dict[int, float]]]) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=FoldAwarePruner())
    for value, steps in finished:
        study.add_trial(create_trial(params={"train.lr": 1e-3}, distributions=LR, value=value,
                                     intermediate_values=steps, state=TrialState.COMPLETE))
    return study


def curve(*values: float) -> dict[int, float]:
    return dict(enumerate(values))


def folds(*values: float) -> dict[int, float]:
    return {FOLD_STEP + k: v for k, v in enumerate(values)}


def running(study: optuna.Study, steps: dict[int, float]) -> optuna.trial.Trial:
    trial = study.ask({"train.lr": LR["train.lr"]})
    for step, value in steps.items():
        trial.report(value, step)
    return trial


def test_the_first_fold_curve_is_pruned_below_the_median_of_earlier_trials_at_that_epoch():
    study = study_with([(0.6, curve(0.3, 0.5, 0.6) | folds(0.6, 0.6)), (0.5, curve(0.2, 0.4, 0.5) | folds(0.5, 0.5))])
    assert not running(study, curve(0.05)).should_prune()  # epoch 0 is the warm-up
    assert running(study, curve(0.05, 0.1)).should_prune()  # 0.1 at epoch 1, median there 0.45
    assert not running(study, curve(0.3, 0.5)).should_prune()


def test_no_curve_is_pruned_before_two_trials_have_finished():
    study = study_with([(0.6, curve(0.3, 0.5, 0.6))])
    assert not running(study, curve(0.0, 0.0)).should_prune()


def test_fold_scores_are_paired_with_the_best_trial_on_the_same_folds():
    best = curve(0.3, 0.5) | folds(0.60, 0.62, 0.58, 0.61, 0.59)
    study = study_with([(0.6, best), (0.4, curve(0.2, 0.3) | folds(0.4, 0.4, 0.4, 0.4, 0.4))])
    # a good curve, then every fold below the best's: pruned once the paired test is sure
    assert not running(study, curve(0.3, 0.5) | folds(0.50, 0.52)).should_prune()
    assert running(study, curve(0.3, 0.5) | folds(0.50, 0.52, 0.48, 0.51)).should_prune()
    # folds around the best's are kept, however low this trial's epoch values were (they are not paired)
    assert not running(study, curve(0.29, 0.49) | folds(0.61, 0.60, 0.59, 0.62)).should_prune()


def test_fold_values_only_are_paired_even_when_epoch_values_would_decide():
    # the epoch values of this trial are far below the best's, its fold values above: a test that paired every
    # step would prune it
    best = curve(0.9, 0.9, 0.9, 0.9) | folds(0.5, 0.5, 0.5)
    study = study_with([(0.5, best), (0.4, curve(0.8, 0.8, 0.8, 0.8) | folds(0.4, 0.4, 0.4))])
    assert not running(study, curve(0.1, 0.1, 0.1, 0.1) | folds(0.55, 0.56, 0.57)).should_prune()
