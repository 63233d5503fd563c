"""The teacher of a run: a finished run folder whose folds are the student's folds.

Fold k's student may learn only from the teacher's fold k model: that model never saw fold k's validation persons,
so the student's out-of-fold scores stay out of fold. This holds only when both runs hold the same images with the
same labels in the same folds, which is checked row by row before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from foldtrain.config import Config, build_config
from foldtrain.files import read_csv
from foldtrain.model.fold_ensemble import FoldModel, run_fold_models
from foldtrain.run.folder import RunFolder
from foldtrain.train.metrics import log_softmax
from foldtrain.user_error import UserError


class TeacherError(UserError):
    """The teacher run cannot teach this run (unfinished, other folds, other classes); the message says which."""


@dataclass(frozen=True)
class TeacherRun:
    """A finished run whose fold models teach a student run (`key` is the config key that named it)."""

    folder: RunFolder
    cfg: Config
    summary: dict
    key: str

    @property
    def run_id(self) -> str | None:
        """The teacher's parent MLflow run id (None when it was not tracked)."""
        return self.folder.tracking().get("parent_id")

    def tags(self, kind: str) -> dict[str, str]:
        """The student's parent-run tags: what kind of taught run it is, and which run taught it."""
        tags = {"foldtrain.kind": kind, "foldtrain.teacher_dir": str(self.folder.path)}
        if self.run_id:
            tags["foldtrain.teacher_run_id"] = self.run_id
        return tags

    def optimism(self) -> str | None:
        """Why the teacher's fold k model already knows fold k's validation rows (its kept epoch was chosen on them,
        or it learnt from a leaky teacher or pool itself), or None. A student fold that learns from it inherits
        this: its labels or weights carry that choice onto the rows the student's out-of-fold score reads."""
        note = self.summary.get("oof_rule_note")
        if not note:
            return None
        return (f"the teacher {self.folder.path} is itself optimistic on its validation rows ({note}) and fold k "
                f"learnt from its fold k; teach with a clean run (train.checkpoint=last or honest, no early stopping, "
                f"no naive round)")

    @cached_property  # read once: the check and every fit's selection use it
    def oof(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The teacher's out-of-fold class probabilities (scored with its prediction views when it kept them,
        oof_tta.csv, else oof.csv), their true labels and their folds: how right its models were on persons they
        never saw.

        Raises:
            TeacherError: the teacher kept no out-of-fold table.
        """
        path = self.folder.oof_tta_file if self.folder.oof_tta_file.is_file() else self.folder.oof_file
        if not path.is_file():
            raise TeacherError(f"{self.key} {self.folder.path} has no {self.folder.oof_file.name}: it cannot vouch "
                               f"for its labels' precision; set pseudo.select=quantile")
        table = read_csv(path)
        scores = table[[f"logit_{i}" for i in range(len(self.summary["classes"]))]].to_numpy(np.float64)
        return np.exp(log_softmax(scores)), table["label"].to_numpy(), table["fold"].to_numpy()

    def models_for(self, fold: int) -> list[FoldModel]:
        """The models that may teach the student's fit of `fold`: the teacher's same fold alone, or every fold for
        the all-data fit (fold -1), whose training rows are every row anyway.

        Raises:
            TeacherError: the teacher did not train that fold.
        """
        models = run_fold_models(self.folder)
        if fold < 0:
            return models
        own = [m for m in models if m.path == self.folder.weights(fold)]
        if not own:
            trained = self.folder.trained_folds()
            raise TeacherError(f"{self.key} {self.folder.path} trained folds {trained}, not fold {fold}: only the "
                               f"teacher's fold {fold} may teach the student's fold {fold}; set cv.only={trained}")
        return own


def open_teacher(path: str | Path, key: str) -> TeacherRun:
    """The finished run at `path` (its summary, config and weights must be there).

    Raises:
        TeacherError: not a finished run folder.
    """
    folder = RunFolder(Path(path).expanduser().resolve())
    if not folder.path.is_dir():
        raise TeacherError(f"{key}: {folder.path} is not a folder; name a finished run folder (runs/<name>)")
    try:
        summary = folder.summary()
        cfg = build_config([folder.config_file])
    except (OSError, ValueError, RuntimeError) as err:
        raise TeacherError(f"{key}: {folder.path} cannot teach: {err}") from err
    return TeacherRun(folder, cfg, summary, key)


def check_taught_folds(teacher: TeacherRun, folds: list[int]) -> None:
    """Every fold the student trains must have its teacher fold.

    Raises:
        TeacherError: naming the first fold the teacher lacks.
    """
    trained = teacher.folder.trained_folds()
    lacking = [k for k in folds if k not in trained]
    if lacking:
        raise TeacherError(f"{teacher.key} {teacher.folder.path} trained folds {trained}, not fold {lacking[0]}: "
                           f"only the teacher's fold k may teach the student's fold k; set cv.only={trained}")


def check_same_split_settings(teacher: TeacherRun, cfg: Config) -> None:
    """The split settings, checked before the student claims a folder or reads its data.

    Raises:
        TeacherError: naming the first differing key and the teacher's value.
    """
    for name in ("folds", "seed"):
        mine, theirs = getattr(cfg.cv, name), getattr(teacher.cfg.cv, name)
        if mine != theirs:
            raise TeacherError(f"{teacher.key} {teacher.folder.path} was split with cv.{name}={theirs}, this run "
                               f"with cv.{name}={mine}: a student must share its teacher's folds (set "
                               f"cv.{name}={theirs})")


def check_same_folds(teacher: TeacherRun, cfg: Config, frame: pd.DataFrame, classes: list[str]) -> None:
    """The student (config, table with folds, classes) must split exactly as the teacher did, row by row.

    Raises:
        TeacherError: naming the first difference and what to change.
    """
    who = f"{teacher.key} {teacher.folder.path}"
    check_same_split_settings(teacher, cfg)
    if list(teacher.summary.get("classes", [])) != list(classes):
        raise TeacherError(f"{who} has classes {teacher.summary.get('classes')}, this run {classes}: the teacher "
                           f"must be trained on the same labels")
    theirs = read_csv(teacher.folder.folds_file, usecols=["path", "label", "fold"]).sort_values(
        "path", kind="stable", ignore_index=True)
    mine = frame[["path", "label", "fold"]].sort_values("path", kind="stable", ignore_index=True)
    only = sorted(set(mine["path"]) ^ set(theirs["path"]))
    if only:
        side = "this run" if only[0] in set(mine["path"]) else "the teacher"
        raise TeacherError(f"{who} holds other images: {only[0]} is only in {side}'s table ({len(only)} differ); "
                           f"train the student on the teacher's data.root and label settings")
    for column in ("label", "fold"):
        differs = mine[column].to_numpy() != theirs[column].to_numpy()
        if differs.any():
            row = int(np.argmax(differs))
            raise TeacherError(f"{who} split differently: {mine['path'][row]} has {column} {theirs[column][row]} "
                               f"there and {mine[column][row]} here; train the student with the teacher's data, "
                               f"label settings, cv.folds and cv.seed")
