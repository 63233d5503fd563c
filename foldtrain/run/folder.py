"""The run folder: where each file of a CV run lives, and the checks made before anything is written to it.

Every file name of a run is spelled here, once; the stages and the ensemble tools reach the files through
`RunFolder` (and these names), never by a string of their own.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from foldtrain.files import StorageError, describe_storage_error, read_json

# The run's own files
CONFIG, FOLDS, SUMMARY, TRACKING = "config.yaml", "folds.csv", "summary.json", "tracking.json"
OOF, OOF_TTA, FACE_FALLBACK, LOCK = "oof.csv", "oof_tta.csv", "face_fallback.json", ".lock"
PSEUDO_LABELS, PSEUDO_PROBS = "pseudo_labels.csv", "pseudo_probs.npz"  # a pseudo-label round's pool and its labels
# Each fold's files (`fold<k>/`, and `full/` for the all-data model)
WEIGHTS, SCORES, OOF_VIEWS = "model.safetensors", "val_scores.npz", "oof_views.npz"
METRICS, RESULT, EPOCHS_DIR, STATE_DIR = "metrics.csv", "result.json", "epochs", "state"


class RunFolderError(RuntimeError):
    """The run folder is in use, holds results the run would overwrite, or does not match the run."""


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run: `run.dir/run.name/`."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def fold(self, k: int) -> Path:
        """`fold<k>/`; the all-data model of `cv.full_fit` lives in `full/`."""
        return self.path / f"fold{k}"

    @property
    def full(self) -> Path:
        return self.path / "full"

    def weights(self, k: int) -> Path:
        return self.fold(k) / WEIGHTS

    def metrics(self, k: int) -> Path:
        return self.fold(k) / METRICS

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    @property
    def folds_file(self) -> Path:
        return self.path / FOLDS

    @property
    def oof_file(self) -> Path:
        return self.path / OOF

    @property
    def oof_tta_file(self) -> Path:
        return self.path / OOF_TTA

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY

    @property
    def tracking_file(self) -> Path:
        return self.path / TRACKING

    def tracking(self) -> dict:
        """tracking.json: the run's MLflow parent and fold run ids, store and experiment ({} when untracked)."""
        return read_json(self.tracking_file, {})

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def face_fallback(self) -> dict:
        """The crop a face-crop run gives a photo without a face (`face_fallback.json`, written at its start).

        Raises:
            RunFolderError: the file is missing (a run from before it was recorded).
        """
        fallback = read_json(self.path / FACE_FALLBACK)
        if fallback is None:
            raise RunFolderError(f"{self.path / FACE_FALLBACK} not found: this face-crop run does not record the "
                                 f"crop of photos without a face; retrain it to predict with the same crops")
        return fallback

    def has_results(self) -> bool:
        """True when the folder already holds fold weights or a summary."""
        return self.summary_file.exists() or any(self.path.glob(f"fold*/{WEIGHTS}"))

    def summary(self) -> dict:
        """summary.json of a finished run.

        Raises:
            RunFolderError: the run never finished (no summary.json).
        """
        summary = read_json(self.summary_file)
        if summary is None:
            raise RunFolderError(f"{self.path} has no summary.json: its training did not finish (continue it with "
                                 f"train.resume=true) or it is not a run folder")
        return summary

    def trained_folds(self) -> list[int]:
        """The folds a finished run trained, from its summary, checked against the folds finished on disk.

        Raises:
            RunFolderError: summary.json lacks the list, or lists other folds than those whose result.json says
                finished (an edited or stale summary would otherwise shrink or pad the ensemble silently).
        """
        listed = self.summary().get("folds_trained")
        if not isinstance(listed, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in listed):
            raise RunFolderError(f"{self.summary_file} has no valid folds_trained list; it was edited or is not a "
                                 f"foldtrain summary: continue the run with train.resume=true to write it again")
        finished = sorted(int(p.parent.name[len("fold"):]) for p in self.path.glob(f"fold*/{RESULT}")
                          if p.parent.name[len("fold"):].isdigit() and read_json(p, {}).get("finished"))
        if sorted(listed) != finished:
            raise RunFolderError(f"{self.summary_file} lists folds {sorted(listed)} but folds {finished} finished on "
                                 f"disk: the summary was edited or is stale; run the training command again with "
                                 f"train.resume=true and cv.only listing the folds to keep")
        return listed


def check_writable(folder: Path) -> None:
    """Fail now, before any data preparation, when `folder` cannot be created or written to.

    Raises:
        StorageError: naming the folder and what to do.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as err:
        raise StorageError(err.errno or 0, describe_storage_error(folder, err)) from err


def newest_run(runs_root: str | Path) -> RunFolder:
    """The most recently finished run below `runs_root` (by its summary.json)."""
    summaries = sorted(Path(runs_root).glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    if not summaries:
        raise RunFolderError(f"no finished run (summary.json) below {runs_root}; train first or pass --run")
    return RunFolder(summaries[-1].parent)


def describe_holder(lock_file: Path) -> str:
    """`pid N on host H` from a lock file's content, or what is known."""
    try:
        text = lock_file.read_text().strip()
    except OSError:
        text = ""
    return text or f"another process (pid unknown; lock {lock_file})"


def this_process() -> str:
    return f"pid {os.getpid()} on host {os.uname().nodename}"
