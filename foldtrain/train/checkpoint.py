"""What a fold keeps on disk, owned by one object called once per epoch (as timm's `CheckpointSaver`).

- `model.safetensors`: the weights `train.checkpoint` picks (`last` epoch, written when the fold ends; `best`
  validation F1; or `honest`: the epoch the other folds' best epochs point to, chosen when every fold is done);
- `epoch<e>_f1_<score>.safetensors` for every epoch at or above `train.save_above`;
- `val_scores.npz`: every epoch's validation class scores (rows x classes per epoch), from which the out-of-fold
  table and the honest estimate are built;
- `metrics.csv` (one row per epoch) and, at the end, `result.json`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foldtrain.files import atomic_path, read_json, write_csv, write_json
from foldtrain.model.weights import save_weights
from foldtrain.run.folder import EPOCHS_DIR, METRICS, RESULT, SCORES, WEIGHTS
from foldtrain.train.progress import FoldProgress
from foldtrain.train.state import StateError


@dataclass
class ValScores:
    """One epoch's validation predictions: class scores by table row."""

    rows: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def read_val_scores(fold_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores of shape epochs x rows x classes) of a fold, or empty arrays when it never validated."""
    path = fold_dir / SCORES
    if not path.is_file():
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0, 0), dtype=np.float32)
    try:
        with np.load(path, allow_pickle=False) as saved:
            return saved["rows"], saved["scores"]
    except (OSError, ValueError, KeyError, EOFError) as err:  # truncated, pickled or foreign content: never loaded
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StateError(f"{path} is not a validation-score file foldtrain wrote ({first}); delete {fold_dir} to "
                         f"train that fold again") from err


def epoch_weights(fold_dir: Path, epoch: int) -> Path:
    """Where the `honest` rule keeps an epoch's weights until the CV run picks one."""
    return fold_dir / EPOCHS_DIR / f"epoch{epoch:03d}.safetensors"


class CheckpointPolicy:
    """Keeps a fold's weights and scores as `train.checkpoint` and `train.save_above` say.

    Args:
        fold_dir: the fold's folder.
        rule: `best`, `last` or `honest`.
        save_above: keep a copy of every epoch at or above this validation F1 (None: off).
        meta: what the weights' metadata records (model, heads, classes, image size, normalisation, fold).
    """

    def __init__(self, fold_dir: Path, rule: str, save_above: float | None, meta: dict):
        self.fold_dir, self.rule, self.save_above, self.meta = fold_dir, rule, save_above, meta
        # A fold that starts at epoch 0 starts a fresh score history: scores left by an earlier start (a run killed
        # before its first resume state, or a state deleted to restart the fold) belong to other weights.
        self.rows, self.history = np.zeros(0, dtype=np.int64), []

    def resume(self, progress: FoldProgress) -> None:
        """Take the stored scores of the epochs the resumed state has run, and forget later ones (written before a
        kill cut the epoch's state).

        Raises:
            StateError: the stored scores do not cover the resumed epochs.
        """
        rows, history = read_val_scores(self.fold_dir)
        if progress.next_epoch and len(history) < progress.next_epoch:
            raise StateError(f"{self.fold_dir / SCORES} holds {len(history)} epochs of validation scores but the "
                             f"resume state has run {progress.next_epoch}; delete {self.fold_dir} to restart the fold")
        self.rows, self.history = rows, list(history[:progress.next_epoch])

    def after_epoch(self, progress: FoldProgress, improved: bool, weights: Callable[[], dict[str, torch.Tensor]],
                    val: ValScores | None) -> None:
        """Write what this epoch adds (writer process only)."""
        rec = progress.history[-1]
        write_csv(self.fold_dir / METRICS, pd.DataFrame(
            [{"epoch": r.epoch, **r.metrics(), "started": r.started, "ended": r.ended, "seconds": r.seconds}
             for r in progress.history]))
        if val is not None:
            if self.history and not np.array_equal(self.rows, val.rows):
                # every stored epoch must score the same rows in the same order, or reading an epoch mixes images
                raise StateError(f"{self.fold_dir / SCORES}: epoch {rec.epoch} validated other rows than the "
                                 f"stored epochs; delete {self.fold_dir} to restart the fold")
            self.rows = val.rows
            self.history.append(val.scores.astype(np.float32))
            with atomic_path(self.fold_dir / SCORES, suffix=".npz") as tmp:
                np.savez(tmp, rows=self.rows, scores=np.stack(self.history))
        meta = self.meta | {"epoch": rec.epoch, "val_f1": rec.val_f1}
        state = None
        if self.rule == "best" and improved:
            state = weights()
            save_weights(state, self.fold_dir / WEIGHTS, meta)
        if self.rule == "honest":
            state = state or weights()
            save_weights(state, epoch_weights(self.fold_dir, rec.epoch), meta)
        if self.save_above is not None and rec.val_f1 is not None and rec.val_f1 >= self.save_above:
            save_weights(state or weights(), self.fold_dir / f"epoch{rec.epoch:03d}_f1_{rec.val_f1:.4f}.safetensors",
                         meta)

    def finish(self, progress: FoldProgress, ended: float, weights: Callable[[], dict[str, torch.Tensor]]) -> dict:
        """Write and return result.json: best score and epoch, epochs run, the kept epoch (None until `honest`
        picks one) and the fold's start and end times. The `last` rule writes its weights here, once."""
        kept = {"best": progress.best_epoch, "last": progress.last_epoch}.get(self.rule)
        if self.rule == "last":
            rec = progress.history[-1]
            save_weights(weights(), self.fold_dir / WEIGHTS, self.meta | {"epoch": rec.epoch, "val_f1": rec.val_f1})
        result = {"fold": progress.fold, "best_f1": progress.best_f1, "best_epoch": progress.best_epoch,
                  "epochs_run": progress.next_epoch, "epochs_planned": progress.epochs,
                  "stopped_early": progress.next_epoch < progress.epochs,
                  "checkpoint": self.rule, "checkpoint_epoch": kept,
                  "started": progress.started, "ended": ended, "finished": True}
        write_json(self.fold_dir / RESULT, result)
        return result


def weights_at_fold_end(fold_dir: Path, result: dict) -> tuple[Path, int]:
    """(the weights file of the epoch a just-finished fold keeps, that epoch): its kept weights, or under `honest`,
    whose epoch is chosen only when every fold is done, its best epoch's weights."""
    if result.get("checkpoint_epoch") is not None:
        return fold_dir / WEIGHTS, result["checkpoint_epoch"]
    return epoch_weights(fold_dir, result["best_epoch"]), result["best_epoch"]


def read_result(fold_dir: Path) -> dict:
    """A fold's result.json, or {} when the fold has not finished."""
    return read_json(fold_dir / RESULT, {})
