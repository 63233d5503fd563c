"""Images to predict, prepared exactly as validation images were: same face crops, decode, resize and cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foldtrain.config import Config, cache_root
from foldtrain.data.cache import build_cache, decode_resized
from foldtrain.data.loaders import CachedImageDataset, build_loader, default_workers
from foldtrain.data.tables import read_eval
from foldtrain.data.transforms import build_eval_transform, working_size


def eval_loader(cfg: Config, data_dir: Path, size_hw: tuple[int, int], batch_size: int = 64,
                workers: int | None = None, gpu: bool = False,
                face_fallback: dict | None = None) -> tuple[pd.DataFrame, object]:
    """(the eval table, a loader of its uint8 images in table order) for a run trained with `cfg`.

    The eval folder is face-cropped with the run's `facecrop` settings when the run trained on crops, a photo
    without a face cut with the run's `face_fallback` (the training images' mean face crop).
    """
    from foldtrain.data.prepare import source_root  # its fold splitting pulls in scikit-learn: not at start-up

    table = read_eval(source_root(cfg, Path(data_dir), face_fallback), cfg.data.follow_symlinks)
    cache = build_cache([Path(p) for p in table["path"]], working_size(size_hw), cache_root(cfg))
    dataset = CachedImageDataset(cache, np.arange(len(table)), None, build_eval_transform(size_hw))
    workers = default_workers(1, gpu) if workers is None else workers
    return table, build_loader(dataset, batch_size, False, workers, pin_memory=gpu)


def input_view(source: Path | bytes, size_hw: tuple[int, int], name: str | None = None) -> torch.Tensor:
    """One image file (or its bytes) as the model sees it: uint8 CHW after the decode and both resizes that
    validation and prediction apply (the cache's working size, then the model input)."""
    array = decode_resized(source, working_size(size_hw), name=name)
    return build_eval_transform(size_hw)(torch.from_numpy(array.copy()).permute(2, 0, 1))
