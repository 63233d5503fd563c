"""What the person at the terminal reads while a run trains: one line per epoch with the time left.

`fold 2/5 epoch 4/10: train_loss 1.93 val_f1 0.41 (2.8s) | 0:31 in, fold ~0:19 left, run ~2:41 left`

Folds and epochs count from 1 here, as a person counts (the folder of fold 2/5 is `fold1`); files and MLflow steps
keep counting from 0. The time left is measured, not guessed: the seconds this process has spent per epoch so far
(everything in between included: validation, checkpoints, building the next fold), times the epochs it has yet to
run. Early stopping can only make it shorter.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("foldtrain")


def clock(seconds: float) -> str:
    """`h:mm:ss`, or `m:ss` under an hour."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def fit_label(spec, folds: int) -> str:
    """`fold 2/5` (the folder `fold1`), or `full fit` for the all-data model."""
    return "full fit" if spec.fold < 0 else f"fold {spec.fold + 1}/{folds}"


class ConsoleProgress:
    """A fold-loop hook (main process) that logs each epoch's scores with the time left for the fold and the run.

    Args:
        folds: the number of folds of the CV (the `/5` of `fold 2/5`).
        planned: the epochs of every fit this process will run, in order (`{fold: epochs}`, fold -1 the all-data
            model), those already done excluded.
        quiet: leave the per-epoch lines out (`--quiet`).
    """

    def __init__(self, folds: int, planned: dict[int, int], quiet: bool = False):
        self.folds, self.remaining, self.quiet = folds, dict(planned), quiet
        self.started: float | None = None  # when this process began its first epoch
        self.epochs_done = 0
        self.fold_began = 0.0
        self.fold_epochs_done = 0

    def fold_started(self, spec, progress) -> None:
        now = time.time()
        self.started = self.started or now
        self.fold_began, self.fold_epochs_done = now, 0
        # a resumed fold has fewer epochs left than planned
        self.remaining[spec.fold] = spec.epochs - progress.next_epoch
        if not self.quiet:
            log.info("%s (%s): %d training and %d validation images, epochs %d-%d of %d", fit_label(spec, self.folds),
                     spec.out_dir.name, len(spec.train_rows), len(spec.val_rows), progress.next_epoch + 1,
                     spec.epochs, spec.epochs)

    def epoch_ended(self, spec, progress) -> None:
        now = time.time()
        self.epochs_done += 1
        self.fold_epochs_done += 1
        self.remaining[spec.fold] = max(0, self.remaining.get(spec.fold, 0) - 1)
        if self.quiet:
            return
        rec = progress.history[-1]
        scores = " ".join(f"{k} {v:.4f}" for k, v in rec.metrics().items() if k != "lr")
        fold_left = (now - self.fold_began) / self.fold_epochs_done * self.remaining[spec.fold]
        run_left = (now - self.started) / self.epochs_done * sum(self.remaining.values())
        log.info("%s epoch %d/%d: %s (%.1fs) | %s in, fold ~%s left, run ~%s left", fit_label(spec, self.folds),
                 rec.epoch + 1, spec.epochs, scores, rec.seconds, clock(now - self.started), clock(fold_left),
                 clock(run_left))

    def fold_ended(self, spec, progress, result: dict) -> None:
        self.remaining.pop(spec.fold, None)
