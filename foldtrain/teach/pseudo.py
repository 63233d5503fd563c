"""Pseudo-label rounds without leaks: the unlabeled pool of fold k is labelled by the teacher's fold k model only.

That model never saw fold k's validation persons, so a student fold trained on its own rows plus the pool still
scores fold k's rows out of fold. Labelling the pool with the whole teacher ensemble (`pseudo.naive=true`, what hand
scripts usually do) lets every fold's pool carry what the other folds' models learnt from fold k's persons: the
student's out-of-fold score then reads high.

The main process labels the pool once per run (the teacher's TTA views averaged, class probabilities), writes
pseudo_labels.csv (image, fold, class, confidence, kept, oof_precision; every fold's labels) and pseudo_probs.npz (the
probabilities, for soft targets), and every process reads them; a resumed run reuses them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import ConcatDataset, Dataset

from foldtrain.config import Config, cache_root
from foldtrain.data.cache import build_cache
from foldtrain.data.eval_set import eval_loader
from foldtrain.data.loaders import CachedImageDataset, WithTargets
from foldtrain.data.transforms import working_size
from foldtrain.files import atomic_path, read_csv, write_csv
from foldtrain.model.fold_ensemble import FoldEnsemble
from foldtrain.model.heads import MaskHeads
from foldtrain.run.folder import PSEUDO_LABELS, PSEUDO_PROBS, RunFolder, RunFolderError
from foldtrain.teach.selection import keep_per_class, keep_per_head, keep_precise, soften
from foldtrain.teach.teacher_run import TeacherError, TeacherRun

log = logging.getLogger("foldtrain")
ALL_DATA = -1  # the all-data fit's pool (cv.full_fit): labelled by every teacher fold


@dataclass
class PseudoPool:
    """The labelled pool of a pseudo-label round: its decoded cache at the student's size, and each fit's labels."""

    teacher: TeacherRun
    cfg: Config
    cache_path: Path
    table: pd.DataFrame  # image, row, fold, teacher_folds, class, confidence, kept: a row per image and fit
    probs: dict[int, np.ndarray]  # fit (fold, or ALL_DATA) -> pool x classes probabilities

    def dataset(self, fold: int, labelled: CachedImageDataset, transform, num_classes: int) -> Dataset:
        """The training set of a fit: its labelled rows, then the pool rows its own teacher labelled.

        `pseudo.weight` w scales the pool rows' target vectors to sum to w: the loss (a weighted mean over the
        targets' mass, or a plain mean of per-row sums) then counts each pool row w times a labelled one, and CutMix
        / Mixup mix those masses with the images."""
        mine = self.table[self.table["fold"] == fold]
        weight = self.cfg.pseudo.weight
        if not self.cfg.pseudo.soft and weight == 1.0:
            kept = mine[mine["kept"]]
            pool = CachedImageDataset(self.cache_path, kept["row"].to_numpy(), kept["class"].to_numpy(), transform)
            return ConcatDataset([labelled, pool])
        if self.cfg.pseudo.soft:
            rows = mine["row"].to_numpy()
            targets = soften(self.probs[fold][rows], self.cfg.pseudo.temperature)
        else:
            rows = mine.loc[mine["kept"], "row"].to_numpy()
            targets = np.eye(num_classes, dtype=np.float32)[mine.loc[mine["kept"], "class"].to_numpy()]
        pool = WithTargets(CachedImageDataset(self.cache_path, rows, None, transform),
                           (targets * weight).astype(np.float32))
        hard = np.eye(num_classes, dtype=np.float32)[labelled.labels]
        return ConcatDataset([WithTargets(labelled, hard), pool])

    def kept_share(self, classes: list[str]) -> dict:
        """Per fit, the share of the pool images predicted as each class that keep a label (1 with soft targets)."""
        out = {}
        for fold, rows in self.table.groupby("fold"):
            shares = rows.groupby("class")["kept"].mean()
            out[str(fold)] = {classes[int(c)]: round(float(v), 4) for c, v in shares.items()}
        return out


def pool_dir(cfg: Config) -> Path:
    """`pseudo.data`, else data.root/eval (the teacher's images: the split check compared them row by row)."""
    return (Path(cfg.pseudo.data) if cfg.pseudo.data else Path(cfg.data.root) / "eval").resolve()


def label_pool(cfg: Config, teacher: TeacherRun, folder: RunFolder, fits: list[int], size_hw: tuple[int, int],
               face_fallback: dict | None, accelerator, heads: str = "single") -> PseudoPool:
    """The pool labelled for each fit in `fits` (folds, and ALL_DATA for the all-data fit), on every process;
    `heads` is the student's (`multi`: hard labels selected per head)."""
    source = pool_dir(cfg)
    with accelerator.main_process_first():  # the main process labels, the others read what it wrote
        table, loader = eval_loader(cfg, source, teacher.models_for(ALL_DATA)[0].size_hw,
                                    face_fallback=face_fallback)
        cache = build_cache([Path(p) for p in table["path"]], working_size(size_hw), cache_root(cfg),
                            check_every_row=accelerator.is_main_process)
        labels_file, probs_file = folder / PSEUDO_LABELS, folder / PSEUDO_PROBS
        if accelerator.is_main_process and not (labels_file.is_file() and probs_file.is_file()):
            write_labels(cfg, teacher, table, loader, fits, labels_file, probs_file, accelerator.device, heads)
    labelled = read_csv(labels_file)
    with np.load(probs_file) as saved:
        probs = {int(k): saved[k] for k in saved.files}
    missing = [f for f in fits if f not in probs]
    if missing or len(next(iter(probs.values()))) != len(table):
        raise RunFolderError(f"{labels_file} does not label this pool for fits {missing or fits} (another pool or "
                             f"cv.only): delete {labels_file} and {probs_file} to label it again")
    return PseudoPool(teacher, cfg, cache, labelled, probs)


def calibration_rows(teacher_folds: np.ndarray, fit: int, naive: bool) -> np.ndarray:
    """The teacher's out-of-fold rows that may set fit `fit`'s thresholds: the other folds' (fold k's rows are the
    ones the student's out-of-fold score reads); every row for the all-data fit and a naive round."""
    return np.ones(len(teacher_folds), dtype=bool) if naive or fit == ALL_DATA else teacher_folds != fit


def check_calibration(cfg: Config, teacher: TeacherRun, fits: list[int]) -> None:
    """`pseudo.select=precision` needs, for every fit, out-of-fold rows of the teacher's other folds.

    Raises:
        TeacherError: the teacher has no out-of-fold table, or only fold k's rows for a fit of fold k.
    """
    if cfg.pseudo.soft or cfg.pseudo.select != "precision":
        return
    _, _, folds = teacher.oof
    for fit in fits:
        if not calibration_rows(folds, fit, cfg.pseudo.naive).any():
            raise TeacherError(f"pseudo.select=precision sets fold {fit}'s thresholds on the teacher's other folds' "
                               f"out-of-fold rows, and {teacher.folder.path} scored only fold {fit}: train more "
                               f"teacher folds or set pseudo.select=quantile")


def select(cfg: Config, teacher: TeacherRun, probs: np.ndarray, fit: int, heads: str) -> tuple[np.ndarray,
                                                                                              float | None]:
    """The hard labels fit `fit` keeps (per head for three-head runs, per class otherwise), and the precision its
    thresholds reached on the teacher's out-of-fold rows (`select=precision`; None otherwise)."""
    sizes = MaskHeads.sizes if heads == MaskHeads.name else None
    if cfg.pseudo.select == "quantile":
        kept = keep_per_head(probs, cfg.pseudo.quantile, sizes) if sizes else keep_per_class(probs,
                                                                                            cfg.pseudo.quantile)
        return kept, None
    oof, labels, folds = teacher.oof
    rows = calibration_rows(folds, fit, cfg.pseudo.naive)
    return keep_precise(probs, oof[rows], labels[rows], cfg.pseudo.precision, sizes)


def write_labels(cfg: Config, teacher: TeacherRun, table: pd.DataFrame, loader, fits: list[int], labels_file: Path,
                 probs_file: Path, device: torch.device, heads: str) -> None:
    rows, probs = [], {}
    for fit in fits:
        models = teacher.models_for(ALL_DATA if cfg.pseudo.naive or fit == ALL_DATA else fit)
        scores = FoldEnsemble(models, cfg.pseudo.tta, device).predict(loader, f"pseudo-labels for fit {fit}")
        p = torch.softmax(torch.from_numpy(scores).double(), dim=1).numpy()
        kept, reached = (np.ones(len(p), dtype=bool), None) if cfg.pseudo.soft else select(cfg, teacher, p, fit,
                                                                                           heads)
        probs[str(fit)] = p.astype(np.float32)
        rows.append(pd.DataFrame({"image": table["ImageID"], "row": np.arange(len(p)), "fold": fit,
                                  "teacher_folds": " ".join(m.name.removeprefix("fold ") for m in models),
                                  "class": p.argmax(1), "confidence": p.max(1).round(6), "kept": kept,
                                  "oof_precision": np.nan if reached is None else round(reached, 4)}))
        log.info("pseudo-labels for %s: %d of %d pool images kept, from teacher %s%s",
                 "the all-data fit" if fit == ALL_DATA else f"fold {fit}", kept.sum(), len(p),
                 ", ".join(m.name for m in models),
                 "" if reached is None else f" (their thresholds were right on {reached:.1%} of the teacher's "
                                            f"out-of-fold rows they kept)")
    with atomic_path(probs_file, suffix=".npz") as tmp:
        np.savez(tmp, **probs)
    write_csv(labels_file, pd.concat(rows, ignore_index=True))


def pseudo_summary(cfg: Config, pool: PseudoPool, classes: list[str], summary: dict) -> dict:
    """summary.json's `pseudo`: the teacher, the pool, what each fit kept, and what the student's figures mean."""
    p = cfg.pseudo
    per_fit = pool.table.groupby("fold")["kept"].sum()
    out = {"teacher": str(pool.teacher.folder.path), "teacher_run_id": pool.teacher.run_id,
           "teacher_oof_f1": pool.teacher.summary.get("oof_f1"), "pool": str(pool_dir(cfg)),
           "pool_images": int((pool.table["fold"] == pool.table["fold"].iloc[0]).sum()),
           "kept": {str(k): int(v) for k, v in per_fit.items()}, "kept_share_per_class": pool.kept_share(classes),
           "soft": p.soft, "select": None if p.soft else p.select,
           "precision": p.precision if not p.soft and p.select == "precision" else None,
           "quantile": p.quantile if not p.soft and p.select == "quantile" else None,
           "temperature": p.temperature if p.soft else None, "weight": p.weight, "tta": p.tta,
           "warm_start": p.warm_start, "naive": p.naive}
    if "oof_precision" in pool.table and pool.table["oof_precision"].notna().any():
        # per fit: how often the teacher's out-of-fold rows that its thresholds keep were right
        out["kept_oof_precision"] = {str(k): float(v) for k, v in
                                     pool.table.groupby("fold")["oof_precision"].first().dropna().items()}
    if per_fit.sum():
        reached = out.get("kept_oof_precision")
        right = (f", right about {np.mean(list(reached.values())):.0%} of the time (the teacher's out-of-fold "
                 f"precision)" if reached else "")
        out["pool_note"] = (f"the student trained on the kept pool photos with its teacher's labels and will mostly "
                            f"answer those on them{right}; oof_f1 estimates its score on persons it never saw, which "
                            f"on a pool that is the test set are the photos it did not keep")
    # not clean: a naive pool, or a teacher already optimistic on fold k's rows (main.py marks every estimate)
    out["oof_note"] = summary.get("estimates_optimistic") or (
        "clean: fold k's pool labels came from the teacher's fold k alone, which never saw fold k's validation "
        "persons")
    if not p.naive:
        out["naive_oof_f1"] = None
        out["naive_note"] = ("what a naive round would claim needs a second student trained on labels from the whole "
                             "teacher ensemble (the same cost again): train it with pseudo.naive=true and compare")
    return out
