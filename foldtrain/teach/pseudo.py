"""Pseudo-label rounds without leaks: the unlabeled pool of fold k is labelled by the teacher's fold k model only.

That model never saw fold k's validation persons, so a student fold trained on its own rows plus the pool still
scores fold k's rows out of fold. Labelling the pool with the whole teacher ensemble (`pseudo.naive=true`, what hand
scripts usually do) lets every fold's pool carry what the other folds' models learnt from fold k's persons: the
student's out-of-fold score then reads high.

The main process labels the pool once per run (the teacher's TTA views averaged, class probabilities), writes
pseudo_labels.csv (image, fold, class, confidence, kept; every fold's labels) and pseudo_probs.npz (the
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
from foldtrain.teach.teacher_run import TeacherRun

log = logging.getLogger("foldtrain")
ALL_DATA = -1  # the all-data fit's pool (cv.full_fit): labelled by every teacher fold


def keep_per_class(probs: np.ndarray, quantile: float) -> np.ndarray:
    """Which pool rows keep their hard label: per predicted class, those at or above the `quantile` of that class's
    confidences. One threshold for all classes keeps mostly the easy, frequent classes; a per-class quantile keeps
    the same share of each class the teacher predicts, rare ones included."""
    pred, conf = probs.argmax(1), probs.max(1)
    kept = np.zeros(len(probs), dtype=bool)
    for c in np.unique(pred):
        rows = pred == c
        kept[rows] = conf[rows] >= np.quantile(conf[rows], quantile)
    return kept


def keep_per_head(probs: np.ndarray, quantile: float, sizes: tuple[int, ...]) -> np.ndarray:
    """`keep_per_class` on each head's marginal probabilities (three-head runs: mask, gender, age); a pool image
    keeps its label when every head is confident by its own per-class threshold, so a rare age group is judged
    against its own confidences, not against the 18 joint classes'.

    Each head drops 1 - (1 - quantile)^(1/heads) of its images, so that with independent heads the share kept
    overall is still about 1 - quantile, as with one head."""
    grid = probs.reshape(len(probs), *sizes)
    axes = range(1, len(sizes) + 1)
    per_head = 1.0 - (1.0 - quantile) ** (1.0 / len(sizes))
    kept = np.ones(len(probs), dtype=bool)
    for head in axes:
        marginal = grid.sum(axis=tuple(a for a in axes if a != head))
        kept &= keep_per_class(marginal, per_head)
    return kept


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's probabilities to the power 1/temperature, renormalised (below 1 sharpens)."""
    powered = np.power(np.clip(probs, 1e-12, 1.0), 1.0 / temperature)
    return (powered / powered.sum(1, keepdims=True)).astype(np.float32)


@dataclass
class PseudoPool:
    """The labelled pool of a pseudo-label round: its decoded cache at the student's size, and each fit's labels."""

    teacher: TeacherRun
    cfg: Config
    cache_path: Path
    table: pd.DataFrame  # image, row, fold, teacher_folds, class, confidence, kept: a row per image and fit
    probs: dict[int, np.ndarray]  # fit (fold, or ALL_DATA) -> pool x classes probabilities

    def dataset(self, fold: int, labelled: CachedImageDataset, transform, num_classes: int) -> Dataset:
        """The training set of a fit: its labelled rows, then the pool rows its own teacher labelled."""
        mine = self.table[self.table["fold"] == fold]
        rows = mine["row"].to_numpy()
        if self.cfg.pseudo.soft:
            pool = WithTargets(CachedImageDataset(self.cache_path, rows, None, transform),
                               soften(self.probs[fold][rows], self.cfg.pseudo.temperature))
            hard = np.eye(num_classes, dtype=np.float32)[labelled.labels]
            return ConcatDataset([WithTargets(labelled, hard), pool])
        kept = mine[mine["kept"]]
        pool = CachedImageDataset(self.cache_path, kept["row"].to_numpy(), kept["class"].to_numpy(), transform)
        return ConcatDataset([labelled, pool])

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


def select(probs: np.ndarray, quantile: float, heads: str) -> np.ndarray:
    """The hard labels to keep: per head for three-head runs, per class otherwise."""
    return keep_per_head(probs, quantile, MaskHeads.sizes) if heads == MaskHeads.name else keep_per_class(
        probs, quantile)


def write_labels(cfg: Config, teacher: TeacherRun, table: pd.DataFrame, loader, fits: list[int], labels_file: Path,
                 probs_file: Path, device: torch.device, heads: str) -> None:
    rows, probs = [], {}
    for fit in fits:
        models = teacher.models_for(ALL_DATA if cfg.pseudo.naive or fit == ALL_DATA else fit)
        scores = FoldEnsemble(models, cfg.pseudo.tta, device).predict(loader, f"pseudo-labels for fit {fit}")
        p = torch.softmax(torch.from_numpy(scores).double(), dim=1).numpy()
        kept = np.ones(len(p), dtype=bool) if cfg.pseudo.soft else select(p, cfg.pseudo.quantile, heads)
        probs[str(fit)] = p.astype(np.float32)
        rows.append(pd.DataFrame({"image": table["ImageID"], "row": np.arange(len(p)), "fold": fit,
                                  "teacher_folds": " ".join(m.name.removeprefix("fold ") for m in models),
                                  "class": p.argmax(1), "confidence": p.max(1).round(6), "kept": kept}))
        log.info("pseudo-labels for %s: %d of %d pool images kept, from teacher %s",
                 "the all-data fit" if fit == ALL_DATA else f"fold {fit}", kept.sum(), len(p),
                 ", ".join(m.name for m in models))
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
           "soft": p.soft, "quantile": None if p.soft else p.quantile, "temperature": p.temperature if p.soft else None,
           "tta": p.tta, "warm_start": p.warm_start, "naive": p.naive}
    # not clean: a naive pool, or a teacher already optimistic on fold k's rows (main.py marks every estimate)
    out["oof_note"] = summary.get("estimates_optimistic") or (
        "clean: fold k's pool labels came from the teacher's fold k alone, which never saw fold k's validation "
        "persons")
    if not p.naive:
        out["naive_oof_f1"] = None
        out["naive_note"] = ("what a naive round would claim needs a second student trained on labels from the whole "
                             "teacher ensemble (the same cost again): train it with pseudo.naive=true and compare")
    return out
