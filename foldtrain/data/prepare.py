"""The data stage of a CV run: the table, its folds, face crops if asked, and the decoded image cache.

Run once, on the main process first (`main_process_first`): the others then read what it wrote. folds.csv in the
run folder is the split every later step uses (training, the out-of-fold table, blending, explaining).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from accelerate import Accelerator

from foldtrain.config import Config, cache_root, image_hw
from foldtrain.data.cache import build_cache
from foldtrain.data.folds import FoldError, assign_folds, check_folds
from foldtrain.data.tables import read_table
from foldtrain.data.transforms import working_size
from foldtrain.files import read_csv, write_csv

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """The training table with folds, and where its decoded images live."""

    root: Path
    frame: pd.DataFrame
    classes: list[str]
    format: str
    cache_path: Path
    size_hw: tuple[int, int]
    face_fallback: dict | None = None  # face-crop runs: the crop of a photo without a face, learnt from training's

    def rows_of(self, fold: int) -> tuple:
        """(training rows, validation rows) of a fold as row indices of `frame`."""
        in_fold = (self.frame["fold"] == fold).to_numpy()
        return (~in_fold).nonzero()[0], in_fold.nonzero()[0]


def source_root(cfg: Config, root: Path, fallback: dict | None = None) -> Path:
    """`root`, or its cached face-cropped copy when `data.face_crop` is on (built on first use); images without a
    face get the `fallback` crop when given (a trained run's own, for the images it predicts)."""
    if not cfg.data.face_crop:
        return root
    from foldtrain.facecrop import ensure_face_crops  # the face-crop tool: loaded only when asked for
    from foldtrain.facecrop.settings import from_config

    cropped = ensure_face_crops(root, from_config(cfg.facecrop), cache_root(cfg) / "faces", fallback=fallback,
                                follow_symlinks=cfg.data.follow_symlinks)
    log.info("using face crops of %s in %s", root, cropped)
    return cropped


def prepare_data(cfg: Config, folds_csv: Path, accelerator: Accelerator) -> PreparedData:
    """Read the table, assign folds (or check them against folds.csv on resume) and build the decoded cache."""
    size_hw = image_hw(cfg.data.image_size)
    with accelerator.main_process_first():
        root = source_root(cfg, Path(cfg.data.root))
        table = read_table(root, cfg.data.format, tuple(cfg.data.age_bins), cfg.data.label_fixes,
                           cfg.data.follow_symlinks)
        if table.fixes_applied:
            log.info("label fixes from %s applied to %d persons", cfg.data.label_fixes, table.fixes_applied)
        frame = table.frame.copy()
        if accelerator.is_main_process:
            frame["fold"] = assign_folds(frame, cfg.cv.folds, cfg.cv.seed).to_numpy()
            if folds_csv.exists():
                check_same_split(frame, read_csv(folds_csv), folds_csv)
            write_csv(folds_csv, frame)
        else:
            frame = read_csv(folds_csv)
            check_folds(frame, frame["fold"], cfg.cv.folds)
        # The main process checks every row; the others open what it checked a moment before.
        cache_path = build_cache([root / p for p in frame["path"]], working_size(size_hw), cache_root(cfg),
                                 check_every_row=accelerator.is_main_process)
    return PreparedData(root, frame, table.classes, table.format, cache_path, size_hw,
                        training_fallback(cfg, root) if cfg.data.face_crop else None)


def training_fallback(cfg: Config, cropped: Path) -> dict:
    """The fallback crop the training images were cut with (learnt from every face detected under `data.root`):
    prediction and the served model crop a faceless photo with it, as training did, instead of learning another
    from the photos they are given."""
    from foldtrain.facecrop.geometry import fallback_of
    from foldtrain.facecrop.settings import REPORT_NAME

    return fallback_of(pd.read_csv(cropped / REPORT_NAME), cfg.facecrop.fallback_scale)


def check_same_split(new: pd.DataFrame, old: pd.DataFrame, path: Path) -> None:
    """A resumed run must see the same images, labels and folds as the run it continues."""
    same = len(new) == len(old) and all(
        column in old.columns and (new[column].to_numpy() == old[column].to_numpy()).all()
        for column in ("path", "label", "fold"))
    if not same:
        raise FoldError(f"the data, labels or split differ from {path}: resume needs the same data set, cv.folds, "
                        f"cv.seed and label settings as the interrupted run")
