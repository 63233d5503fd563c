"""The training side of a study's trial: `foldtrain.tune` starts each trial as a normal run with `FOLDTRAIN_TRIAL`
set, and this hook reports to the trial and stops the run when the study's pruner says so.

`FOLDTRAIN_TRIAL` is JSON: `{"storage", "study", "trial_id", "number", "pruner": {...}, "mlflow_parent"}`. The
main process opens the study's storage, reports the first fold's validation F1 after each epoch and each fold's F1
when it ends (see `pruning`), and asks the pruner; under DDP the decision is shared with every process. A pruned
run raises `TrialPruned`: it ends with exit status `PRUNED_EXIT`, its MLflow runs KILLED and tagged
`foldtrain.pruned`, and no results (its finished folds are never averaged as if the run were complete).
"""

from __future__ import annotations

import json
import os

ENV = "FOLDTRAIN_TRIAL"
PRUNED_EXIT = 3
PRUNED_PREFIX = "pruned by study"


class TrialPruned(Exception):  # noqa: N818 - reads as what happened
    """The study's pruner stopped this trial; the message says where."""


def trial_context() -> dict | None:
    """The trial this process trains for, or None for a plain run."""
    raw = os.environ.get(ENV)
    return json.loads(raw) if raw else None


def fold_score(progress, result: dict) -> float | None:
    """The fold's F1 as its checkpoint rule keeps it: the best epoch's for `best`, else the last epoch's (the
    `honest` rule picks its epochs only when every fold is done)."""
    if result.get("checkpoint_epoch") is not None and result["checkpoint_epoch"] == progress.best_epoch:
        return progress.best_f1
    return progress.history[-1].val_f1 if progress.history else None


class TrialReport:
    """A fold-loop hook (every process) reporting to the study's trial and raising `TrialPruned`.

    Args:
        first_fold: the fold whose epochs make the learning curve.
        shared: every process fits the same folds (`cv.parallel=ddp`), so the main process's decision is broadcast;
            with `folds`, the main process alone stops and the launcher stops the others.
    """

    def __init__(self, context: dict, accelerator, first_fold: int, shared: bool):
        self.context, self.accelerator, self.first_fold, self.shared = context, accelerator, first_fold, shared
        self.trial = None
        if accelerator.is_main_process:
            import optuna

            from foldtrain.tune.pruning import FoldAwarePruner

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            settings = context.get("pruner")  # None: `--no-prune`, values are reported only
            pruner = FoldAwarePruner(**settings) if settings is not None else optuna.pruners.NopPruner()
            study = optuna.load_study(study_name=context["study"], storage=context["storage"], pruner=pruner)
            self.trial = optuna.trial.Trial(study, int(context["trial_id"]))

    def fold_started(self, spec, progress) -> None:
        pass

    def epoch_ended(self, spec, progress) -> None:
        rec = progress.history[-1]
        if spec.fold == self.first_fold and rec.val_f1 is not None:
            self._check(rec.val_f1, rec.epoch, f"fold {spec.fold} epoch {rec.epoch} (the first fold's curve)")

    def fold_ended(self, spec, progress, result: dict) -> None:
        from foldtrain.tune.pruning import FOLD_STEP

        score = fold_score(progress, result) if spec.fold >= 0 else None
        if score is not None:
            self._check(score, FOLD_STEP + spec.fold, f"fold {spec.fold} (fold F1s against the best trial)")

    def _check(self, value: float, step: int, where: str) -> None:
        prune = False
        if self.trial is not None:
            self.trial.report(float(value), step)
            prune = self.trial.should_prune()
        if self.accelerator.num_processes > 1 and self.shared:
            from accelerate.utils import broadcast_object_list

            decision = [prune]
            broadcast_object_list(decision)
            prune = decision[0]
        if prune:
            raise TrialPruned(f"{PRUNED_PREFIX} {self.context['study']!r} (trial {self.context.get('number')}) "
                              f"after {where}")
