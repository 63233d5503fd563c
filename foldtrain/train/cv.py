"""The folds of a CV run, as small strategies around `FoldFit`, run in order by `CrossValidation`.

- `train_folds`: `cv.parallel=ddp` fits each fold with every process together, `folds` gives each process its own
  folds to fit alone;
- `choose_honest_checkpoints`: `train.checkpoint=honest` keeps, for each fold, the epoch the other folds' best
  epochs point to (chosen once every fold is done);
- `fit_all_data`: `cv.full_fit`, one model on every image for as many epochs as the checkpoint rule suggests.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np

from foldtrain.config import fits_all_data
from foldtrain.files import write_json
from foldtrain.run.folder import EPOCHS_DIR, RESULT, WEIGHTS
from foldtrain.train.checkpoint import epoch_weights, read_result
from foldtrain.train.fit import FitSpec, FoldFit, Hooks
from foldtrain.train.oof_views import score_oof_views
from foldtrain.train.placement import Alone, Shared
from foldtrain.train.rules import RULES
from foldtrain.train.session import Session

log = logging.getLogger("foldtrain")


class CrossValidation:
    """The CV sequence of one run, on every process: fit the unfinished folds (`cv.parallel`), replay the fold runs
    other processes fitted to the tracker, settle the kept epochs (`honest`), score the kept epochs' out-of-fold
    views (`cv.oof_tta`), then the all-data model (`cv.full_fit`).

    Args:
        session: the run's shared parts.
        folds: the planned folds (`planned_folds`).
        hooks: the loop's hooks (tracking, progress, Grad-CAM).
        replay: called on the main process with the folds other processes fitted alone (their runs to log).
    """

    def __init__(self, session: Session, folds: list[int], hooks: list[Hooks], replay=None):
        self.session, self.folds, self.hooks, self.replay = session, folds, hooks, replay

    def run(self) -> None:
        session, accelerator, cfg = self.session, self.session.accelerator, self.session.cfg
        todo = unfinished(session, self.folds)
        train_folds(session, todo, self.hooks)
        if self.replay is not None and cfg.cv.parallel == "folds":
            self.replay([f for f in todo if f not in assigned(todo, accelerator)])
        if accelerator.is_main_process:
            if cfg.train.checkpoint == "honest":
                choose_honest_checkpoints(session, self.folds)
            score_oof_views(session, self.folds)
        accelerator.wait_for_everyone()
        if fits_all_data(cfg):
            fit_all_data(session, self.folds, self.hooks)


def planned_folds(session: Session) -> list[int]:
    """The folds this run trains (`cv.only`, else all)."""
    cfg = session.cfg
    return list(cfg.cv.only) if cfg.cv.only is not None else list(range(cfg.cv.folds))


def finished_earlier(session: Session, folds: list[int]) -> list[int]:
    """Folds a resumed run finished before (none unless resuming)."""
    if not session.cfg.train.resume:
        return []
    return [f for f in folds if read_result(session.folder.fold(f)).get("finished")]


def unfinished(session: Session, folds: list[int]) -> list[int]:
    """Folds without a finished result (all of them unless resuming)."""
    done = finished_earlier(session, folds)
    for fold in done:
        log.info("fold %d: finished earlier, kept as is", fold)
    return [f for f in folds if f not in done]


def epochs_ahead(session: Session, folds: list[int]) -> dict[int, int]:
    """The fits this process will run, with their planned epochs (`{fold: epochs}`, -1 the all-data model): what
    the time left of a run is counted on."""
    cfg, accelerator = session.cfg, session.accelerator
    done = finished_earlier(session, folds)
    todo = [f for f in folds if f not in done]
    mine = todo if cfg.cv.parallel == "ddp" else assigned(todo, accelerator)
    ahead = dict.fromkeys(mine, cfg.train.epochs)
    if fits_all_data(cfg) and (cfg.cv.parallel == "ddp" or accelerator.is_main_process):
        ahead[-1] = cfg.train.epochs  # at most: `full_fit_epochs` settles it once the folds are done
    return ahead


def fold_spec(session: Session, fold: int) -> FitSpec:
    train_rows, val_rows = session.data.rows_of(fold)
    return FitSpec(fold, f"fold {fold}", session.folder.fold(fold), train_rows, val_rows, session.cfg.train.epochs,
                   session.cfg.train.seed + fold)


def train_folds(session: Session, folds: list[int], hooks: list[Hooks]) -> None:
    """Fit `folds` as `cv.parallel` says; every process calls this, and returns when all folds are done."""
    accelerator = session.accelerator
    if session.cfg.cv.parallel == "ddp":
        for fold in folds:
            FoldFit(session, fold_spec(session, fold), Shared(accelerator), hooks).run()
        return
    for fold in assigned(folds, accelerator):
        FoldFit(session, fold_spec(session, fold), Alone(accelerator), hooks).run()
    accelerator.wait_for_everyone()


def assigned(folds: list[int], accelerator) -> list[int]:
    """The folds this process fits alone with `cv.parallel=folds`: every W-th, starting at its rank."""
    return folds[accelerator.process_index::accelerator.num_processes]


def choose_honest_checkpoints(session: Session, folds: list[int]) -> None:
    """`train.checkpoint=honest`: make each fold's kept epoch the `honest` rule's choice (main process)."""
    results = {f: read_result(session.folder.fold(f)) for f in folds}
    rule = RULES["honest"]
    chosen = rule.epochs(results)
    reason = rule.chosen_on_own_rows(results)
    if reason:
        log.warning("train.checkpoint=honest: %s", reason)
    for fold, epoch in chosen.items():
        fold_dir = session.folder.fold(fold)
        if results[fold].get("checkpoint_epoch") is None:
            shutil.copyfile(epoch_weights(fold_dir, epoch), fold_dir / WEIGHTS)
            write_json(fold_dir / RESULT, results[fold] | {"checkpoint_epoch": epoch})
        shutil.rmtree(fold_dir / EPOCHS_DIR, ignore_errors=True)
    log.info("honest checkpoints: epochs %s", chosen)


def full_fit_epochs(session: Session, folds: list[int]) -> int:
    """Epochs of the all-data model: the folds' median kept epoch + 1 (their planned epochs for `last`)."""
    if session.cfg.train.checkpoint == "last":
        return session.cfg.train.epochs
    kept = [read_result(session.folder.fold(f))["checkpoint_epoch"] for f in folds]
    return int(np.median(kept)) + 1


def fit_all_data(session: Session, folds: list[int], hooks: list[Hooks]) -> None:
    """`cv.full_fit`: one model on every image, no validation; `full/model.safetensors`."""
    accelerator, cfg = session.accelerator, session.cfg
    epochs = full_fit_epochs(session, folds)
    if accelerator.is_main_process:
        log.info("full fit: all %d images for %d epochs", len(session.data.frame), epochs)
    spec = FitSpec(-1, "full", session.folder.full, np.arange(len(session.data.frame)), np.zeros(0, dtype=np.int64),
                   epochs, cfg.train.seed + cfg.cv.folds)
    if cfg.cv.parallel == "ddp":
        FoldFit(session, spec, Shared(accelerator), hooks).run()
    elif accelerator.is_main_process:
        FoldFit(session, spec, Alone(accelerator), hooks).run()
    accelerator.wait_for_everyone()
